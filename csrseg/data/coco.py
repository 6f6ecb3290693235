"""COCO-format instance segmentation datasets: parsing, validation, decoding.

The annotation file is checked once, up front, so bad input fails with a line
naming the file and the entry instead of a stack trace in the middle of an epoch:

- not JSON / not a COCO instances file / an image entry without id, file name or
  size / an annotation whose ``image_id`` or ``category_id`` is unknown, or whose
  RLE size differs from its image: :class:`DatasetError`.
- image files missing on disk: :class:`DatasetError` naming the first and the count.
- polygon parts with fewer than 3 points: dropped (an annotation left with no part
  is skipped), counted in ``warnings`` - training can sensibly go on.
- ``iscrowd`` instances: never positives in training (COCOeval ignores them).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from csrseg.data.io import ImageReadError, read_image
from csrseg.data.transforms import Transform, crop_window
from csrseg.errors import CsrsegError


class DatasetError(CsrsegError, ValueError):
    """An annotation file, image folder or entry that cannot be used."""


@dataclass
class CocoIndex:
    """A validated COCO instances file.

    ``cat_ids``: the ids that get an output class, sorted; label ``i`` is ``cat_ids[i]``.
    ``categories``: every category the file declares, ``id -> name``; ``unused_cat_ids``:
    those of them without a single annotation in this file (a Roboflow export's id 0
    parent category), which get no output class unless ``cat_ids`` was given.
    """

    path: Path
    images: list[dict]
    anns_by_image: dict[int, list[dict]]
    cat_ids: list[int]
    class_names: list[str]
    warnings: Counter = field(default_factory=Counter)
    categories: dict[int, str] = field(default_factory=dict)
    unused_cat_ids: list[int] = field(default_factory=list)

    def num_targets(self) -> int:
        """How many annotations are of an output class (``cat_ids``) and not crowd regions: what a model
        learns from and COCOeval scores."""
        wanted = set(self.cat_ids)
        return sum(a["category_id"] in wanted and not a.get("iscrowd") for anns in self.anns_by_image.values() for a in anns)


def warn_if_unscorable(index: CocoIndex) -> None:
    """Say so when a split to evaluate on has no annotation of the model's classes: COCOeval then
    has nothing to score, and every AP it reports is -1 (shown as 0.0), whatever the model does."""
    if not index.num_targets():
        logging.getLogger("csrseg").warning(
            "warning: %s: none of its %d images has an annotation (not crowd) of the model's %d classes: there is "
            "nothing to score, and its AP says nothing about the model", index.path, len(index.images), len(index.cat_ids))


def _fail(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{path}: {what}")


def load_coco_json(path: str | Path, cat_ids: list[int] | None = None) -> CocoIndex:
    """Read and validate ``path``.

    ``cat_ids``: the categories that get output classes (another split's, or a
    checkpoint's; see :func:`with_classes`). By default: the declared categories with
    at least one annotation (all of them when the file has no annotation).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(path, "not a COCO instances file (top level is not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"not a COCO instances file (no '{key}' list)")

    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise _fail(path, f"categories[{i}] has no integer 'id'")
        categories[cat["id"]] = str(cat.get("name", cat["id"]))
    declared = sorted(categories)

    images: list[dict] = []
    sizes: dict[int, tuple[int, int]] = {}
    for i, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and isinstance(img.get("id"), int) and isinstance(img.get("file_name"), str)
        ok = ok and all(isinstance(img.get(k), int) and img[k] > 0 for k in ("height", "width"))
        if not ok:
            raise _fail(path, f"images[{i}] needs integer 'id', 'height', 'width' and a 'file_name'")
        if img["id"] in sizes:
            raise _fail(path, f"image id {img['id']} appears twice")
        sizes[img["id"]] = (img["height"], img["width"])
        images.append(img)

    warnings: Counter = Counter()
    anns_by_image: dict[int, list[dict]] = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        name = f"annotation {ann.get('id', f'#{i}')}" if isinstance(ann, dict) else f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise _fail(path, f"{name} is not an object")
        if ann.get("image_id") not in sizes:
            raise _fail(path, f"{name}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in categories:
            raise _fail(path, f"{name}: category_id {ann.get('category_id')!r} is not in 'categories'")
        segm = _check_segmentation(path, name, ann.get("segmentation"), sizes[ann["image_id"]], warnings)
        if segm is None:
            warnings["annotations without a usable segmentation skipped"] += 1
            continue
        anns_by_image[ann["image_id"]].append(dict(ann, segmentation=segm))
    used = {a["category_id"] for anns in anns_by_image.values() for a in anns}
    unused = [c for c in declared if c not in used]
    default_ids = [c for c in declared if c in used] if used else declared
    index = CocoIndex(path, images, dict(anns_by_image), default_ids, [categories[c] for c in default_ids], warnings,
                      categories, unused)
    return index if cat_ids is None else with_classes(index, cat_ids)


def annotations_outside(index: CocoIndex, cat_ids: list[int]) -> Counter:
    """How many annotations of ``index`` each category outside ``cat_ids`` has (``{category_id: count}``)."""
    wanted = set(cat_ids)
    return Counter(a["category_id"] for anns in index.anns_by_image.values() for a in anns
                   if a["category_id"] not in wanted)


def with_classes(index: CocoIndex, cat_ids: list[int]) -> CocoIndex:
    """``index`` with ``cat_ids`` (each declared in it) as its output classes.

    Annotations of other declared categories stay (COCOeval scores them) but are not
    training targets; they are counted in ``warnings``.
    """
    unknown = [c for c in cat_ids if c not in index.categories]
    if unknown:
        raise _fail(index.path, f"category id(s) {unknown[:5]} of the model's classes are not in 'categories'")
    outside = sum(annotations_outside(index, cat_ids).values())
    warnings = Counter(index.warnings)
    if outside:
        warnings["annotations of categories without an output class ignored"] += outside
    return dataclasses.replace(index, cat_ids=list(cat_ids), class_names=[index.categories[c] for c in cat_ids],
                               warnings=warnings)


def _check_segmentation(path: Path, name: str, segm: object, size: tuple[int, int], warnings: Counter):
    if isinstance(segm, list):
        parts = []
        for part in segm:
            if not isinstance(part, list) or not all(isinstance(v, (int, float)) for v in part):
                raise _fail(path, f"{name}: polygon is not a list of numbers")
            if len(part) < 6 or len(part) % 2:
                warnings["polygons with fewer than 3 points dropped"] += 1
                continue
            parts.append([float(v) for v in part])
        return parts or None
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != list(size):
            raise _fail(path, f"{name}: RLE size {segm['size']} differs from its image's {list(size)}")
        if not isinstance(segm["counts"], (str, list)):
            raise _fail(path, f"{name}: RLE counts must be a string or a list")
        return segm
    raise _fail(path, f"{name}: segmentation is neither polygons nor RLE")


def decode_segmentation(segm: list | dict, height: int, width: int) -> np.ndarray:
    """COCO polygons / uncompressed RLE / compressed RLE -> ``(H, W)`` uint8 mask."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = dict(size=segm["size"], counts=segm["counts"].encode("ascii"))
    return mask_utils.decode(rle)


def resolve_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """``root/annotations/instances_{split}.json`` and ``root/{split}``.

    ``split`` may be ``train``/``val`` or COCO 2017's ``train2017``/``val2017``; for
    ``train``/``val`` the ``2017`` names are tried when the plain ones are absent.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    for name in (split, f"{split}2017"):
        ann = root / "annotations" / f"instances_{name}.json"
        if ann.is_file():
            return ann, root / name
    raise DatasetError(f"{root}: no annotations/instances_{split}.json (or instances_{split}2017.json)")


class CocoInstances(Dataset):
    """A COCO-format split as samples for :func:`csrseg.data.transforms.collate`.

    Each sample: ``image (3, H, W)`` normalised, ``masks (N, H, W)`` uint8,
    ``labels (N,)`` int64 contiguous, ``image_id``, ``orig_size (H0, W0)`` and
    ``input_size (H, W)`` (before padding). Crowd instances are left out. ``transform=None``: for
    :meth:`load` alone (raw images, e.g. for an ONNX model that resizes in its graph).
    Randomness (flip, scale) comes from ``(seed, epoch, index)``, so an epoch is the
    same whatever the worker count and after a resume.
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, transform: Transform | None, seed: int = 0,
                 check_files: bool = True, cat_ids: list[int] | None = None,
                 same_categories_as: CocoIndex | None = None) -> None:
        self.index = load_coco_json(ann_file)
        if same_categories_as is not None:  # a val split: the train split's categories and classes
            check_same_categories(same_categories_as, self.index)
            cat_ids = same_categories_as.cat_ids
        if cat_ids is not None:
            self.index = with_classes(self.index, cat_ids)
        self.image_dir = Path(image_dir)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        if check_files:
            missing = [img["file_name"] for img in self.index.images if not (self.image_dir / img["file_name"]).is_file()]
            if missing:
                raise DatasetError(
                    f"{self.index.path}: {len(missing)} image file(s) missing from {self.image_dir}, e.g. {missing[0]}"
                )
        self.cat_to_label = {c: i for i, c in enumerate(self.index.cat_ids)}

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    @property
    def cat_ids(self) -> list[int]:
        return self.index.cat_ids

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index.images)

    def image(self, idx: int) -> tuple[np.ndarray, dict]:
        """Raw ``(H, W, 3)`` image ``idx`` and its entry, checked against the entry's size (no mask
        decoded: what inference on the raw images needs)."""
        info = self.index.images[idx]
        path = self.image_dir / info["file_name"]
        try:
            image = read_image(path, exif=False)
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from None
        height, width = info["height"], info["width"]
        if image.shape[:2] != (height, width):
            raise DatasetError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but the annotations say {width}x{height}")
        return image, info

    def load(self, idx: int, window: tuple[int, int, int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Raw ``(H, W, 3)`` image, ``(N, H, W)`` masks, ``(N,)`` labels of non-crowd instances; with
        ``window`` ``(y0, x0, y1, x1)``, the part of each inside it (an instance outside it left out)."""
        image, info = self.image(idx)
        height, width = info["height"], info["width"]
        anns = [a for a in self.index.anns_by_image.get(info["id"], [])
                if not a.get("iscrowd", 0) and a["category_id"] in self.cat_to_label]
        y0, x0, y1, x1 = window or (0, 0, height, width)
        if window is not None:  # only the objects meeting the crop are decoded, then cut to it
            anns = [a for a in anns if _box_meets(a.get("bbox"), window)]
            image = image[y0:y1, x0:x1]
        masks = np.zeros((len(anns), y1 - y0, x1 - x0), dtype=np.uint8)
        for i, ann in enumerate(anns):
            masks[i] = decode_segmentation(ann["segmentation"], height, width)[y0:y1, x0:x1]
        labels = np.array([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
        return image, masks, labels, info

    def _window(self, idx: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """A training crop's window in image ``idx`` (None: the transform takes the whole image)."""
        cfg = getattr(self.transform, "cfg", None)
        if cfg is None or not cfg.crop or not getattr(self.transform, "train", False):
            return None
        info = self.index.images[idx]
        boxes = np.array([a["bbox"] for a in self.index.anns_by_image.get(info["id"], [])
                          if a.get("bbox") and not a.get("iscrowd", 0) and a["category_id"] in self.cat_to_label],
                         dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        return crop_window(info["height"], info["width"], cfg, boxes, rng)

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        window = self._window(idx, rng)
        image, masks, labels, info = self.load(idx, window)
        image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        image_t, masks_t = self.transform(image_t, torch.from_numpy(masks), rng)
        keep = masks_t.flatten(1).amax(1) > 0 if masks_t.shape[0] else torch.zeros(0, dtype=torch.bool)
        return dict(
            image=image_t,
            masks=masks_t[keep],
            labels=torch.from_numpy(labels)[keep],
            image_id=info["id"],
            orig_size=(info["height"], info["width"]),
            input_size=tuple(image_t.shape[-2:]),
        )


def _box_meets(bbox: list | None, window: tuple[int, int, int, int]) -> bool:
    """Whether a COCO ``[x, y, w, h]`` box overlaps ``window`` ``(y0, x0, y1, x1)`` (no box: assume so)."""
    if not bbox:
        return True
    x, y, w, h = bbox
    y0, x0, y1, x1 = window
    return x < x1 and x + w > x0 and y < y1 and y + h > y0


def check_same_categories(reference: CocoIndex, other: CocoIndex) -> None:
    """Raise a one-line :class:`DatasetError` when ``other`` declares other categories than ``reference``."""
    if other.categories == reference.categories:
        return
    only_ref = sorted(set(reference.categories) - set(other.categories))
    only_other = sorted(set(other.categories) - set(reference.categories))
    renamed = sorted(c for c in set(reference.categories) & set(other.categories)
                     if reference.categories[c] != other.categories[c])
    parts = []
    if only_other:
        parts.append(f"ids only here {only_other[:5]}")
    if only_ref:
        parts.append(f"ids missing here {only_ref[:5]}")
    if renamed:
        c = renamed[0]
        parts.append(f"id {c} is {other.categories[c]!r} here but {reference.categories[c]!r} there")
    raise DatasetError(f"{other.path}: categories differ from {reference.path}'s ({'; '.join(parts)})")
