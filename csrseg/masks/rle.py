"""Masks as COCO compressed RLE (JSON-ready ``counts``): a full-size mask, a crop within its box (the
same bytes, at the crop's cost), or a whole image's masks in one call."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from torch import Tensor

from csrseg.masks.crops import MaskCrops


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
    :class:`~csrseg.masks.crops.MaskCrops` is encoded crop by crop (:func:`encode_crop`)."""
    if isinstance(masks, MaskCrops):
        return [encode_crop(crop, (x0, y0), masks.size) for crop, (x0, y0, _, _) in zip(masks.numpy(), masks.int_boxes())]
    if isinstance(masks, Tensor):
        masks = masks.cpu().numpy()
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_json_rle(rle) for rle in rles]
