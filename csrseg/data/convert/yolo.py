"""Ultralytics YOLO segmentation datasets -> COCO.

Layout (Ultralytics' ``segment`` format)::

    SRC/data.yaml            names: [cat, dog] (or {0: cat, 1: dog}); train: images/train; val: images/val
    SRC/images/train/a.jpg   SRC/labels/train/a.txt    one line per object:
                                                     class x1 y1 x2 y2 ... (normalised to 0..1)

Label folders are found as Ultralytics finds them: the last ``images`` component of an
image folder replaced by ``labels``. A line with four numbers is a box (``xc yc w h``)
and becomes a rectangle; an image without a label file has no objects. A label file
without its image (or an image that is a broken link) is skipped and counted, as the
other converters count images their annotations name but the folder lacks.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from csrseg.data.convert import (ConvertError, ImageRecord, Instance, image_size, rectangle, report_missing_images,
                                  shown_name)
from csrseg.data.io import IMAGE_SUFFIXES


def read_yolo(src: str | Path) -> tuple[dict[str, list[ImageRecord]], list[str], Counter]:
    """Splits (``train``, ``val``, ``test`` as the YAML names them), class names and counts of what
    was skipped (label files without their image) of the YOLO-seg set ``src`` (its folder or its
    data.yaml): the three values :func:`~csrseg.data.convert.labelme.read_labelme` returns too."""
    src = Path(src)
    yaml_path = src if src.is_file() else src / "data.yaml"
    if not yaml_path.is_file():
        raise ConvertError(f"{src}: no data.yaml (YOLO datasets name their classes there)")
    try:
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConvertError(f"{yaml_path}: not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(spec, dict) or "names" not in spec:
        raise ConvertError(f"{yaml_path}: needs 'names' (a list of class names or a mapping id: name)")
    names = _names(yaml_path, spec["names"])
    root = yaml_path.parent / spec["path"] if spec.get("path") else yaml_path.parent
    splits: dict[str, list[Path]] = {}
    missing: list[str] = []
    for split in ("train", "val", "test"):
        entry = spec.get(split)
        if entry is None:
            continue
        if not isinstance(entry, str):
            raise ConvertError(f"{yaml_path}: {split} must be an image folder (lists and .txt files are not read)")
        image_dir = root / entry
        if not image_dir.is_dir():
            raise ConvertError(f"{yaml_path}: {split}: image folder {image_dir} not found")
        images = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        missing += [shown_name(path, root) for path in images if not path.is_file()]  # broken links
        missing += [shown_name(path, root) for path in _labels_without_image(image_dir, images)]
        splits[split] = [path for path in images if path.is_file()]
    if "train" not in splits:
        raise ConvertError(f"{yaml_path}: no train image folder given")
    skipped: Counter = Counter()
    report_missing_images(missing, len(missing) + sum(map(len, splits.values())), root, skipped,
                          "images named by label files")
    # the image files are checked before their labels are read: a missing one never reaches image_size
    return {split: [_record(path, names) for path in images] for split, images in splits.items()}, names, skipped


def _names(path: Path, names: object) -> list[str]:
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict) and all(isinstance(k, int) for k in names) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    raise ConvertError(f"{path}: names must be a list or a mapping 0..K-1: name")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: ``.../images/x/a.jpg`` -> ``.../labels/x/a.txt``."""
    parts = list(image.parts)
    if "images" not in parts:
        return image.with_suffix(".txt")
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")


def _labels_without_image(image_dir: Path, images: list[Path]) -> list[Path]:
    """The label files in ``image_dir``'s label folder that none of ``images`` has. None where the
    labels lie beside the images: other .txt files there need not be labels."""
    label_dir = label_path(image_dir / "image.jpg").parent
    if label_dir == image_dir or not label_dir.is_dir():
        return []
    labelled = {label_path(image) for image in images}
    return sorted(path for path in label_dir.glob("*.txt") if path not in labelled)


def _record(image: Path, names: list[str]) -> ImageRecord:
    labels = label_path(image)
    record = ImageRecord(image)
    if not labels.is_file():
        return record
    height, width = record.size = image_size(image)
    for number, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise ConvertError(f"{labels}:{number}: not numbers: {line.strip()[:60]!r}") from None
        cls, coords = values[0], values[1:]
        if cls != int(cls) or not 0 <= cls < len(names):
            raise ConvertError(f"{labels}:{number}: class {values[0]:g} is not one of the {len(names)} in data.yaml")
        if len(coords) % 2 or len(coords) < 4:
            raise ConvertError(f"{labels}:{number}: expected class x1 y1 x2 y2 ... (pairs), got {len(coords)} numbers")
        if any(not -0.01 <= v <= 1.01 for v in coords):
            raise ConvertError(f"{labels}:{number}: coordinates must be normalised to 0..1")
        if len(coords) == 4:  # a detection box: xc yc w h
            xc, yc, w, h = coords
            polygon = rectangle((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height)
        else:
            polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(coords)]
        record.instances.append(Instance(names[int(cls)], [polygon]))
    return record
