"""Converters from other annotation formats to a COCO dataset in the ROOT layout.

One file per format (:mod:`.yolo`, :mod:`.labelme`, :mod:`.via`); each reads its
format into :class:`ImageRecord` lists per split, leaving out (and counting) the images
its annotations name but the folder lacks, and :func:`write_coco_root` writes
``OUT/annotations/instances_<split>.json`` and ``OUT/<split>/`` (images linked, or
copied with ``copy=True``), then reads the result back with the same validation as
training does. csrseg has one loader (COCO); the converters never add a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pycocotools import mask as mask_utils

from csrseg.data.coco import DatasetError, load_coco_json


class ConvertError(DatasetError):
    """Input of a converter that cannot be read; the message names the file."""


@dataclass
class Instance:
    """One object: its class name and polygons ``[x0, y0, x1, y1, ...]`` in pixels."""

    class_name: str
    polygons: list[list[float]]


@dataclass
class ImageRecord:
    """One image file and its instances; ``size`` ``(height, width)`` when the format gives it."""

    path: Path
    instances: list[Instance] = field(default_factory=list)
    size: tuple[int, int] | None = None


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header (EXIF rotation not applied, as COCO)."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path}: not a readable image ({exc})") from None


MISSING_SHOWN = 3  # missing images named in a report: enough to see a pattern, few enough for one line


def without_missing_images(records: list[ImageRecord], folder: Path, skipped: Counter) -> list[ImageRecord]:
    """``records`` less those whose image file is not on disk, in their order.

    ``folder``: the folder the user gave (names in messages are relative to it). The missing
    images are counted in ``skipped`` under one entry naming the first few (see
    :func:`report_missing_images`): a dataset with a few images deleted still converts. An
    image that is there but cannot be read is not dropped here; reading its size names it.
    """
    present = [r.path.is_file() for r in records]
    missing = [shown_name(r.path, folder) for r, ok in zip(records, present) if not ok]
    report_missing_images(missing, len(records), folder, skipped)
    return [r for r, ok in zip(records, present) if ok]


def report_missing_images(missing: list[str], named: int, folder: Path, skipped: Counter,
                          what: str = "images named by the annotations") -> None:
    """Count ``missing`` (names of the images absent of the ``named`` the annotations name) in
    ``skipped``, the entry reading ``"<what> but missing from <folder>, skipped (first: a.jpg, ...)"``.
    ConvertError when all ``named`` are missing: the wrong folder, most likely, not a few lost files."""
    if not missing:
        return
    if len(missing) == named:
        raise ConvertError(f"{folder}: none of the {named} {what} is there (first missing: {missing[0]}); "
                           "is this the folder that holds the images?")
    skipped[f"{what} but missing from {folder}, skipped (first: {', '.join(missing[:MISSING_SHOWN])})"] += len(missing)


def shown_name(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` where it is inside it, else in full: short names for messages."""
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def split_by_name(records: list[ImageRecord], val_fraction: float) -> dict[str, list[ImageRecord]]:
    """``{"train": [...], "val": [...]}`` of ``records``: the same split on every machine, whatever
    the order of the files on disk.

    The rule: rank the records by the SHA-1 of their image's file name (ties by the name). Of
    ``n`` records the first ``k = max(1, round(n * val_fraction))`` are val (Python's ``round``:
    halves to even), the rest train; ``k`` is at most ``n - 1``, so that at least one image
    trains. So 10 images at 0.2 give 2 val, 3 at 0.2 give 1; one image is train only (it cannot
    be both, and a dataset has to train on something); ``val_fraction == 0`` gives no val. A
    file's rank depends on its name alone: adding files never reorders the old ones, and an old
    file leaves val only when new files rank before it. Each split keeps the order of ``records``.
    """
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction must be from 0 to 1, got {val_fraction}")
    n = len(records)
    num_val = 0 if val_fraction == 0 or n < 2 else min(n - 1, max(1, round(n * val_fraction)))
    ranked = sorted(records, key=lambda r: (hashlib.sha1(r.path.name.encode("utf-8")).digest(), r.path.name))
    val = {id(r) for r in ranked[:num_val]}
    return {"train": [r for r in records if id(r) not in val], "val": [r for r in records if id(r) in val]}


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_coco_root(out: str | Path, splits: dict[str, list[ImageRecord]], class_names: list[str],
                    copy: bool = False) -> Path:
    """Write ``splits`` as a COCO ROOT dataset under ``out``; category ids are 1..K in ``class_names``
    order. Returns ``out``. Polygons with fewer than 3 points are dropped (COCO cannot hold them)."""
    out = Path(out)
    cat_of = {name: i + 1 for i, name in enumerate(class_names)}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        image_dir = out / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations, names = [], [], set()
        for image_id, record in enumerate(records, start=1):
            if record.path.name in names:
                raise ConvertError(f"{record.path}: a second image named {record.path.name} in split {split}")
            names.add(record.path.name)
            height, width = record.size or image_size(record.path)
            images.append(dict(id=image_id, file_name=record.path.name, height=height, width=width))
            _place(record.path, image_dir / record.path.name, copy)
            for inst in record.instances:
                polygons = [p for p in inst.polygons if len(p) >= 6]
                if not polygons:
                    continue
                rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=cat_of[inst.class_name],
                    segmentation=[[round(float(v), 2) for v in p] for p in polygons], iscrowd=0,
                    area=float(mask_utils.area(rle)), bbox=[float(v) for v in mask_utils.toBbox(rle)]))
        categories = [dict(id=i, name=name, supercategory="object") for name, i in cat_of.items()]
        ann_file = out / "annotations" / f"instances_{split}.json"
        ann_file.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories),
                                       ensure_ascii=False), encoding="utf-8")
        load_coco_json(ann_file)  # the same checks training makes: a converter never writes what cannot be read
    return out


def _place(src: Path, dst: Path, copy: bool) -> None:
    if not src.is_file():
        raise ConvertError(f"{src}: image file not found")
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)

