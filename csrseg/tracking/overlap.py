"""How much tracks and detections overlap: box IoU and mask IoU matrices, the association's cost.

Boxes are ``x0, y0, x1, y1`` with inclusive pixel corners (as :class:`~csrseg.inference.predictor.Instance`
holds them). Masks are crops placed in the image (:class:`PlacedMask`), so a pair's IoU costs the
pixels of the two crops' overlap, not of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlacedMask:
    """A mask given by its crop: ``crop`` ``(h, w)`` bool whose top-left pixel is at ``(x0, y0)``."""

    crop: np.ndarray
    x0: int
    y0: int

    def shifted(self, dx: int, dy: int) -> PlacedMask:
        """The same mask moved by ``(dx, dy)`` pixels."""
        return PlacedMask(self.crop, self.x0 + dx, self.y0 + dy)

    @property
    def area(self) -> int:
        return int(self.crop.sum())


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``(N, 4)`` and ``(M, 4)`` inclusive corners -> ``(N, M)`` IoU in [0, 1]."""
    a, b = np.asarray(boxes_a, np.float64).reshape(-1, 4), np.asarray(boxes_b, np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def pair_mask_iou(a: PlacedMask, b: PlacedMask) -> float:
    """IoU of two placed masks (0 when both are empty)."""
    x0, y0 = max(a.x0, b.x0), max(a.y0, b.y0)
    x1 = min(a.x0 + a.crop.shape[1], b.x0 + b.crop.shape[1])
    y1 = min(a.y0 + a.crop.shape[0], b.y0 + b.crop.shape[0])
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int((a.crop[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
                     & b.crop[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]).sum())
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def mask_iou(masks_a: list[PlacedMask], masks_b: list[PlacedMask]) -> np.ndarray:
    """``N`` and ``M`` placed masks -> ``(N, M)`` mask IoU; pairs whose crops do not meet are 0
    without looking at a pixel."""
    out = np.zeros((len(masks_a), len(masks_b)))
    for i, a in enumerate(masks_a):
        for j, b in enumerate(masks_b):
            out[i, j] = pair_mask_iou(a, b)
    return out
