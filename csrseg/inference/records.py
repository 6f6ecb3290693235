"""Predictions as COCO-style rows: RLE-encoded masks, one row per instance, streamed to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from torch import Tensor


def encode_mask(mask: np.ndarray | Tensor) -> dict:
    """``(H, W)`` bool -> COCO compressed RLE with a JSON-ready string ``counts``."""
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
    return _json_rle(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def _json_rle(rle: dict) -> dict:
    return dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii"))


def encode_masks(masks: np.ndarray | Tensor) -> list[dict]:
    """``(N, H, W)`` bool -> N COCO compressed RLEs (:func:`encode_mask`'s), in one pass: one copy
    off the GPU and one pycocotools call for the image, not one per mask."""
    if isinstance(masks, Tensor):
        masks = masks.cpu().numpy()
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_json_rle(rle) for rle in rles]


def instance_records(file_name: str, instances: list, **extra: object) -> list[dict]:
    """COCO-style result rows (xywh ``bbox``, RLE ``segmentation``) for one image or video frame's
    :class:`~csrseg.inference.predictor.Instance` list."""
    rows = []
    for inst in instances:
        x0, y0, x1, y1 = inst.box
        rows.append(dict(file_name=file_name, **extra, category_id=inst.category_id, category=inst.class_name,
                         score=round(inst.score, 5), bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                         segmentation=encode_mask(inst.mask)))
    return rows


class RecordWriter:
    """Writes result rows to a JSON array as they come, so memory stays flat over long runs.

    The array goes to a hidden temporary file beside ``path``, renamed onto ``path`` only when
    every row is written: an interrupted run never leaves a truncated ``predictions.json``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.count = 0
        self._file = self.tmp.open("w")
        self._file.write("[")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self._file.write((",\n" if self.count else "\n") + json.dumps(row))
            self.count += 1

    def close(self) -> Path:
        self._file.write("\n]\n")
        self._file.close()
        self.tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)


