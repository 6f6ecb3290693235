"""LabelMe JSON folders -> COCO.

One ``<image>.json`` per image (LabelMe's own format): ``shapes`` with ``label``,
``points`` and ``shape_type``; ``imagePath`` relative to the JSON; ``imageHeight`` /
``imageWidth``. Polygons and rectangles are read (circles as 32-gons); shapes sharing a
``label`` and a non-null ``group_id`` are one object. Lines and points cannot be masks and
are counted as skipped. ``SRC/train`` and ``SRC/val`` subfolders are kept as splits;
otherwise ``val_fraction`` of the images become val, chosen by a hash of their names
(:func:`csrseg.data.convert.split_by_name` states the rule).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from csrseg.data.convert import ConvertError, ImageRecord, Instance, rectangle, split_by_name, without_missing_images


def read_labelme(src: str | Path, val_fraction: float = 0.2) -> tuple[dict[str, list[ImageRecord]], list[str], Counter]:
    """Splits, class names (sorted) and counts of what was skipped (shapes without area, images a
    .json names that are not on disk) of the LabelMe folder ``src``.

    ``val_fraction``: without ``train/`` and ``val/`` subfolders, the share of the images that
    becomes val (see :func:`csrseg.data.convert.split_by_name`).
    """
    src = Path(src)
    if not src.is_dir():
        raise ConvertError(f"{src}: LabelMe folder not found")
    skipped: Counter = Counter()
    subfolders = (src / "train").is_dir() and (src / "val").is_dir()
    found = {s: _records(src / s, skipped) for s in ("train", "val")} if subfolders else {"all": _records(src, skipped)}
    if not any(found.values()):
        raise ConvertError(f"{src}: no LabelMe .json files")
    # missing images are counted over the whole folder: it is refused only when every image is missing
    present = {id(r) for r in without_missing_images([r for rs in found.values() for r in rs], src, skipped)}
    found = {s: [r for r in rs if id(r) in present] for s, rs in found.items()}
    splits = found if subfolders else split_by_name(found["all"], val_fraction)
    names = sorted({inst.class_name for records in splits.values() for r in records for inst in r.instances})
    return splits, names, skipped


def _records(folder: Path, skipped: Counter) -> list[ImageRecord]:
    """The records of the .json files of ``folder``, in name order."""
    return [_record(path, skipped) for path in sorted(folder.glob("*.json"))]


def _record(path: Path, skipped: Counter) -> ImageRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or not isinstance(data.get("imagePath"), str):
        raise ConvertError(f"{path}: not a LabelMe file (needs 'shapes' and 'imagePath')")
    image = path.parent / data["imagePath"].replace("\\", "/")
    size = None
    if isinstance(data.get("imageHeight"), int) and isinstance(data.get("imageWidth"), int):
        size = (data["imageHeight"], data["imageWidth"])
    groups: dict[tuple[str, int], Instance] = {}
    instances: list[Instance] = []
    for i, shape in enumerate(data["shapes"]):
        label, points = shape.get("label"), shape.get("points")
        if not isinstance(label, str) or not isinstance(points, list):
            raise ConvertError(f"{path}: shapes[{i}] needs a 'label' and 'points'")
        polygon = _polygon(path, i, shape.get("shape_type") or "polygon", points, skipped)
        if polygon is None:
            continue
        group = shape.get("group_id")
        if group is not None and (label, group) in groups:
            groups[(label, group)].polygons.append(polygon)
            continue
        inst = Instance(label, [polygon])
        instances.append(inst)
        if group is not None:
            groups[(label, group)] = inst
    return ImageRecord(image, instances, size)


def _polygon(path: Path, i: int, kind: str, points: list, skipped: Counter) -> list[float] | None:
    try:
        xy = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        raise ConvertError(f"{path}: shapes[{i}] points must be [x, y] pairs") from None
    if kind == "polygon" and len(xy) >= 3:
        return [v for point in xy for v in point]
    if kind == "rectangle" and len(xy) == 2:
        (x0, y0), (x1, y1) = xy
        return rectangle(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if kind == "circle" and len(xy) == 2:
        (cx, cy), (ex, ey) = xy
        r = math.hypot(ex - cx, ey - cy)
        return [v for k in range(32) for v in (cx + r * math.cos(2 * math.pi * k / 32), cy + r * math.sin(2 * math.pi * k / 32))]
    skipped[f"{kind} shapes (no area) skipped"] += 1
    return None
