"""Ultralytics YOLO segmentation datasets -> COCO.

Layout (Ultralytics' ``segment`` format)::

    SRC/data.yaml            names: [cat, dog] (or {0: cat, 1: dog}); train: images/train; val: images/val
    SRC/images/train/a.jpg   SRC/labels/train/a.txt    one line per object:
                                                     class x1 y1 x2 y2 ... (normalised to 0..1)

Label folders are found as Ultralytics finds them: the last ``images`` component of an
image folder replaced by ``labels``. A line with four numbers is a box (``xc yc w h``)
and becomes a rectangle; an image without a label file has no objects.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from csrseg.data.convert import ConvertError, ImageRecord, Instance, image_size, rectangle
from csrseg.data.io import IMAGE_SUFFIXES


def read_yolo(src: str | Path) -> tuple[dict[str, list[ImageRecord]], list[str]]:
    """Splits (``train``, ``val``, ``test`` as the YAML names them) and class names of a YOLO-seg set."""
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
    splits = {}
    for split in ("train", "val", "test"):
        entry = spec.get(split)
        if entry is None:
            continue
        if not isinstance(entry, str):
            raise ConvertError(f"{yaml_path}: {split} must be an image folder (lists and .txt files are not read)")
        image_dir = root / entry
        if not image_dir.is_dir():
            raise ConvertError(f"{yaml_path}: {split}: image folder {image_dir} not found")
        splits[split] = [_record(path, names) for path in sorted(image_dir.iterdir())
                         if path.suffix.lower() in IMAGE_SUFFIXES]
    if "train" not in splits:
        raise ConvertError(f"{yaml_path}: no train image folder given")
    return splits, names


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
