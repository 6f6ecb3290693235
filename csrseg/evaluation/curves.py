"""Precision-recall curves read off COCOeval's own ``eval["precision"]`` array, overall and per class.

The array is ``(T=10, R=101, K, A=4, M=3)``: IoU thresholds 0.50:0.05:0.95, the recall grid
0:0.01:1, classes, areas (all, small, medium, large) and maxDets (1, 10, 100). Its entries are the
interpolated precision COCOeval averages into AP, so the mean of a curve over the grid is that AP.
An entry is -1 where the class has no ground truth: such a class has no curve (``None``) and is left
out of the overall mean, as COCOeval leaves it out of AP.
"""

from __future__ import annotations

import numpy as np

#: COCOeval's recall grid (``params.recThrs``)
RECALL = np.linspace(0.0, 1.0, 101)
#: the curves drawn: name -> index into COCOeval's IoU axis (``params.iouThrs`` = 0.50, 0.55, ..., 0.95)
IOUS: dict[str, slice | int] = {"0.5": 0, "0.75": 5, "0.5:0.95": slice(None)}
AREA_ALL, MAX_DETS_100 = 0, -1


def class_curve(precision: np.ndarray, k: int, iou: slice | int) -> np.ndarray | None:
    """Precision ``(101,)`` of class ``k`` on :data:`RECALL` at IoU index ``iou`` (a slice: their mean),
    area all, 100 detections; ``None`` where the class has no ground truth (all entries -1)."""
    values = precision[iou, :, k, AREA_ALL, MAX_DETS_100]
    values = values.reshape(-1, values.shape[-1])  # (T', 101)
    if (values <= -1).all():
        return None
    return values.mean(axis=0)


def overall_curve(precision: np.ndarray, iou: slice | int) -> np.ndarray | None:
    """Mean over the classes that have ground truth of :func:`class_curve`, ``(101,)``; ``None`` when none has."""
    curves = [c for k in range(precision.shape[2]) if (c := class_curve(precision, k, iou)) is not None]
    return np.mean(curves, axis=0) if curves else None


def pr_curves(precision: np.ndarray, cat_ids: list[int], names: dict[int, str]) -> dict:
    """JSON-ready curves of one COCOeval run: ``{"recall": [101], "overall": {iou: [101] | None},
    "classes": [{"category_id", "name", "curves": {iou: [101] | None}, "AP": {iou: float | None}}]}``
    with iou in :data:`IOUS`; ``AP`` x100, the mean of the curve."""

    def listed(curve: np.ndarray | None) -> list[float] | None:
        return None if curve is None else [round(float(v), 6) for v in curve]

    classes = []
    for k, cat in enumerate(cat_ids):
        curves = {name: class_curve(precision, k, iou) for name, iou in IOUS.items()}
        classes.append(dict(category_id=int(cat), name=str(names.get(cat, cat)),
                            curves={n: listed(c) for n, c in curves.items()},
                            AP={n: None if c is None else float(c.mean()) * 100 for n, c in curves.items()}))
    return dict(recall=[round(float(r), 2) for r in RECALL], iou_axis=list(IOUS), area="all", max_dets=100,
                overall={name: listed(overall_curve(precision, iou)) for name, iou in IOUS.items()}, classes=classes)
