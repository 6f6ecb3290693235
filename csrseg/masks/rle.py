"""Masks as COCO compressed RLE (JSON-ready ``counts``): a full-size mask, a crop within its box (the
same bytes, at the crop's cost), or a whole image's masks in one call."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from torch import Tensor

from csrseg.masks.crops import MaskCrops
from csrseg.masks.packed import PackedCrop


def encode_mask(mask: np.ndarray | Tensor) -> dict:
    """``(H, W)`` bool -> COCO compressed RLE with a JSON-ready string ``counts``."""
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
    return _json_rle(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def _json_rle(rle: dict) -> dict:
    return dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii"))


def encode_crop(crop: np.ndarray | PackedCrop, origin: tuple[int, int], size: tuple[int, int]) -> dict:
    """A mask given by its crop -> :func:`encode_mask` of the full-size mask, byte for byte, at the
    cost of a pass over the crop's packed rows (a bool crop is packed first).

    ``crop``: ``(h, w)`` bool (or packed), the mask within a box whose top-left pixel is ``origin``
    ``(x0, y0)`` in an image of ``size`` ``(H, W)``; outside the box the mask is empty. COCO's RLE
    counts the image's pixels column by column (alternating runs of 0s and 1s, 0s first): the crop's
    runs, placed in the image, with the 0s between them.
    """
    height, width = size
    packed = crop if isinstance(crop, PackedCrop) else PackedCrop.pack(crop)
    bounds = _run_bounds(packed, origin, height)
    counts = np.diff(np.concatenate([[0], bounds, [height * width]]))
    if len(counts) > 1 and counts[-1] == 0:  # a mask ending in 1s ends with its run of 1s
        counts = counts[:-1]
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return _json_rle(rle)


def _run_bounds(crop: PackedCrop, origin: tuple[int, int], height: int) -> np.ndarray:
    """Column-major positions in the image where each run of 1s starts and ends (exclusive), sorted:
    ``[start0, end0, start1, end1, ...]``.

    A run starts or ends where a pixel differs from the one above it, and at the crop's first and
    last rows: found on the packed rows, a byte (8 pixels) at a time, and only then sorted into
    column order. The changes are few (about two a column for a smooth mask), so a full-frame mask
    costs a pass over its bits, not a transpose of its pixels (a tenth of the time at 24 MP).
    """
    h, w = crop.shape
    if not h or not w:  # an empty crop: no run
        return np.zeros(0, dtype=np.int64)
    x0, y0 = origin
    bits = crop.bits
    per_row = bits.shape[1]
    changed = np.bitwise_xor(bits[1:], bits[:-1])
    where = np.flatnonzero(changed)
    byte_row, byte_col = np.divmod(where, per_row)
    hit, bit = np.nonzero(np.unpackbits(changed.ravel()[where][:, None], axis=1))  # bit 0: the high one
    first, last = np.flatnonzero(crop.unpack(0, 1)[0]), np.flatnonzero(crop.unpack(h - 1, h)[0])
    rows = np.concatenate([byte_row[hit] + 1, np.zeros(len(first), np.int64), np.full(len(last), h)])
    cols = np.concatenate([byte_col[hit] * 8 + bit, first, last])
    bounds = np.sort((x0 + cols.astype(np.int64)) * height + y0 + rows)
    # a run reaching a column's last image row goes on at the next column's first: one run
    joined = np.flatnonzero(bounds[1:-1:2] == bounds[2::2])
    return np.delete(bounds, np.concatenate([2 * joined + 1, 2 * joined + 2]))


def encode_masks(masks: np.ndarray | Tensor | MaskCrops) -> list[dict]:
    """``(N, H, W)`` bool -> N COCO compressed RLEs (:func:`encode_mask`'s), in one pass: one copy
    off the GPU and one pycocotools call for the image, not one per mask. A
    :class:`~csrseg.masks.crops.MaskCrops` is encoded crop by crop (:func:`encode_crop`)."""
    if isinstance(masks, MaskCrops):
        return [encode_crop(crop, (x0, y0), masks.size) for crop, (x0, y0, _, _) in zip(masks.crops, masks.int_boxes())]
    if isinstance(masks, Tensor):
        masks = masks.cpu().numpy()
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_json_rle(rle) for rle in rles]
