"""Predictions as COCO-style rows: RLE-encoded masks, one row per instance, streamed to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from torch import Tensor

from csrseg.models.heads.paste import MaskCrops


def encode_mask(mask: np.ndarray | Tensor) -> dict:
    """``(H, W)`` bool -> COCO compressed RLE with a JSON-ready string ``counts``."""
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
    return _json_rle(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def _json_rle(rle: dict) -> dict:
    return dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii"))


def encode_crop(crop: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> dict:
    """A mask given by its crop -> :func:`encode_mask` of the full-size mask, byte for byte, at the
    cost of the crop.

    ``crop``: ``(h, w)`` bool, the mask within a box whose top-left pixel is ``origin`` ``(x0, y0)``
    in an image of ``size`` ``(H, W)``; outside the box the mask is empty. COCO's RLE counts the
    image's pixels column by column (alternating runs of 0s and 1s, 0s first): the crop's runs,
    placed in the image, with the 0s between them.
    """
    height, width = size
    bounds = _run_bounds(np.asarray(crop, dtype=bool), origin, height)
    counts = np.diff(np.concatenate([[0], bounds, [height * width]]))
    if len(counts) > 1 and counts[-1] == 0:  # a mask ending in 1s ends with its run of 1s
        counts = counts[:-1]
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return _json_rle(rle)


def _run_bounds(crop: np.ndarray, origin: tuple[int, int], height: int) -> np.ndarray:
    """Column-major positions in the image where each run of 1s starts and ends (exclusive), sorted:
    ``[start0, end0, start1, end1, ...]``."""
    h, w = crop.shape
    x0, y0 = origin
    # each crop column between two 0 rows, so every run starts and ends within its column
    framed = np.zeros((w, h + 2), dtype=np.int8)
    framed[:, 1:-1] = crop.T
    change = np.flatnonzero(np.diff(framed.ravel())) + 1
    column, row = np.divmod(change, h + 2)
    bounds = (x0 + column) * height + y0 + row - 1
    # a run reaching a column's last image row goes on at the next column's first: one run
    joined = np.flatnonzero(bounds[1:-1:2] == bounds[2::2])
    return np.delete(bounds, np.concatenate([2 * joined + 1, 2 * joined + 2]))


def encode_masks(masks: np.ndarray | Tensor | MaskCrops) -> list[dict]:
    """``(N, H, W)`` bool -> N COCO compressed RLEs (:func:`encode_mask`'s), in one pass: one copy
    off the GPU and one pycocotools call for the image, not one per mask. A
    :class:`~csrseg.models.heads.paste.MaskCrops` is encoded crop by crop (:func:`encode_crop`)."""
    if isinstance(masks, MaskCrops):
        return [encode_crop(crop, (x0, y0), masks.size) for crop, (x0, y0, _, _) in zip(masks.numpy(), masks.int_boxes())]
    if isinstance(masks, Tensor):
        masks = masks.cpu().numpy()
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_json_rle(rle) for rle in rles]


def instance_records(file_name: str, instances: list, track_ids: list[int] | None = None, **extra: object) -> list[dict]:
    """COCO-style result rows (xywh ``bbox``, RLE ``segmentation``) for one image or video frame's
    :class:`~csrseg.inference.predictor.Instance` list; with ``track_ids`` (one per instance), each
    row's ``track_id``."""
    rows = []
    for k, inst in enumerate(instances):
        x0, y0, x1, y1 = inst.box
        tracked = {} if track_ids is None else {"track_id": int(track_ids[k])}
        rows.append(dict(file_name=file_name, **extra, **tracked, category_id=inst.category_id, category=inst.class_name,
                         score=round(inst.score, 5), bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                         segmentation=encode_crop(inst.crop, inst.origin, inst.image_size)))
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

    def flush(self) -> None:
        """What is written so far onto the disk (a stream's rows, frame by frame)."""
        self._file.flush()

    def close(self) -> Path:
        self._file.write("\n]\n")
        self._file.close()
        self.tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)


