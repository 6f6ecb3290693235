"""VGG Image Annotator (VIA 2) polygon exports -> COCO.

``SRC`` is the exported JSON (or a folder holding one JSON), images beside it. Both the
"export annotations as JSON" file (``{key: {filename, regions, ...}}``) and a saved
project (the same under ``_via_img_metadata``) are read. Each region's class is its
region attribute named by ``class_attr``; polygons and rectangles are read (other
shapes are counted as skipped). Splits as for LabelMe:
``val_fraction`` of the images by a hash of their names (:func:`csrseg.data.convert.split_by_name`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from csrseg.data.convert import ConvertError, ImageRecord, Instance, rectangle, split_by_name, without_missing_images


def read_via(src: str | Path, class_attr: str, val_fraction: float = 0.2) -> tuple[dict[str, list[ImageRecord]], list[str], Counter]:
    """Splits, class names (sorted) and counts of what was skipped (regions that are not polygons or
    rectangles, images the export names that are not beside it) of the VIA export ``src``.

    ``class_attr``: the region attribute holding each region's class. ``val_fraction``: the share
    of the images that becomes val (see :func:`csrseg.data.convert.split_by_name`).
    """
    src = Path(src)
    if src.is_dir():
        candidates = sorted(src.glob("*.json"))
        if len(candidates) != 1:
            raise ConvertError(f"{src}: expected one VIA .json export in the folder, found {len(candidates)}")
        src = candidates[0]
    if not src.is_file():
        raise ConvertError(f"{src}: VIA export not found")
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{src}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        data = data["_via_img_metadata"]
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "filename" in v for v in data.values()):
        raise ConvertError(f"{src}: not a VIA export (entries need 'filename' and 'regions')")
    skipped: Counter = Counter()
    records = [_record(src, entry, class_attr, skipped) for entry in data.values()]
    records = without_missing_images(records, src.parent, skipped)
    names = sorted({inst.class_name for r in records for inst in r.instances})
    return split_by_name(records, val_fraction), names, skipped


def _record(src: Path, entry: dict, class_attr: str, skipped: Counter) -> ImageRecord:
    regions = entry.get("regions") or []
    if isinstance(regions, dict):  # VIA 1 stored regions by index
        regions = list(regions.values())
    record = ImageRecord(src.parent / entry["filename"])
    for region in regions:
        shape = region.get("shape_attributes") or {}
        attrs = region.get("region_attributes") or {}
        label = attrs.get(class_attr)
        if isinstance(label, dict):  # a checkbox attribute: {option: true}
            label = next((k for k, v in label.items() if v), None)
        if not isinstance(label, str) or not label:
            raise ConvertError(f"{src}: a region of {entry['filename']} has no region attribute {class_attr!r} "
                               f"(it has {sorted(attrs)}); choose one with --class-attr")
        polygon = _polygon(shape, skipped)
        if polygon is not None:
            record.instances.append(Instance(label, [polygon]))
    return record


def _polygon(shape: dict, skipped: Counter) -> list[float] | None:
    kind = shape.get("name")
    if kind == "polygon":
        xs, ys = shape.get("all_points_x") or [], shape.get("all_points_y") or []
        if len(xs) == len(ys) and len(xs) >= 3:
            return [float(v) for xy in zip(xs, ys) for v in xy]
    elif kind == "rect":
        x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
        return rectangle(x, y, x + w, y + h)
    skipped[f"{kind} regions skipped (not a polygon or rectangle)"] += 1
    return None
