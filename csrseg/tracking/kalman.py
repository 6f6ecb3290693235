"""A constant-velocity Kalman filter on one box: where a track is expected in the next frame.

The state is ``(cx, cy, w, h, vcx, vcy, vw, vh)``: the box's centre and size and their change per
frame; a detection measures the first four. This is the filter of SORT and ByteTrack, with the box's
width kept in place of its aspect ratio (as BoT-SORT does: a mask's box changes its width and height
independently as the object turns). The noise scales with the box's height, so a large box near the
camera may move more pixels per frame than a small one far away.
"""

from __future__ import annotations

import numpy as np

# standard deviations per frame as shares of the box's height (ByteTrack's values)
POSITION_NOISE = 1 / 20
VELOCITY_NOISE = 1 / 160

_MOTION = np.eye(8) + np.eye(8, k=4)  # x' = x + v (one frame)
_MEASURE = np.eye(4, 8)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    """``(4,)`` corners ``x0, y0, x1, y1`` (inclusive pixels) -> ``(4,)`` centre and size."""
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0 + 1, y1 - y0 + 1], dtype=np.float64)


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """``(4,)`` centre and size -> ``(4,)`` inclusive corners, the inverse of :func:`xyxy_to_cxcywh`."""
    cx, cy, w, h = box
    return np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2], dtype=np.float64)


class BoxKalman:
    """One track's filter: :meth:`predict` once per frame, :meth:`update` when a detection is matched.

    ``box``: the first detection's ``(4,)`` corners; its velocity starts at 0, uncertain.
    """

    def __init__(self, box: np.ndarray) -> None:
        measured = xyxy_to_cxcywh(box)
        self.mean = np.concatenate([measured, np.zeros(4)])
        h = max(measured[3], 1.0)
        std = np.array([2 * POSITION_NOISE * h] * 4 + [10 * VELOCITY_NOISE * h] * 4)
        self.cov = np.diag(std**2)

    def predict(self, *, keep_size: bool = False) -> None:
        """One frame ahead. ``keep_size``: a track not seen in the last frame stops growing or
        shrinking (ByteTrack zeroes the height's velocity of a lost track: a box extrapolated in size
        for many frames ends up meaningless)."""
        if keep_size:
            self.mean[6:] = 0
        h = max(self.mean[3], 1.0)
        std = np.array([POSITION_NOISE * h] * 4 + [VELOCITY_NOISE * h] * 4)
        self.mean = _MOTION @ self.mean
        self.cov = _MOTION @ self.cov @ _MOTION.T + np.diag(std**2)

    def update(self, box: np.ndarray) -> None:
        """Correct the state with a detection's ``(4,)`` corners."""
        h = max(self.mean[3], 1.0)
        noise = np.diag(np.full(4, (POSITION_NOISE * h) ** 2))
        projected = _MEASURE @ self.cov @ _MEASURE.T + noise
        gain = np.linalg.solve(projected, _MEASURE @ self.cov).T  # (8, 4): P H^T S^-1, S symmetric
        self.mean = self.mean + gain @ (xyxy_to_cxcywh(box) - _MEASURE @ self.mean)
        self.cov = self.cov - gain @ projected @ gain.T

    @property
    def box(self) -> np.ndarray:
        """The ``(4,)`` corners the state expects now (its width and height at least 1 px)."""
        cx, cy, w, h = self.mean[:4]
        return cxcywh_to_xyxy(np.array([cx, cy, max(w, 1.0), max(h, 1.0)]))
