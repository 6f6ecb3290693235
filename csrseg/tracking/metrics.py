"""Scores of a tracker against known identities: CLEAR MOT (MOTA, ID switches; Bernardin and
Stiefelhagen 2008) and IDF1 (Ristani et al. 2016), matched by box IoU, as py-motmetrics computes them.

Written here rather than taken from ``motmetrics``: that library brings pandas (and xmltodict) for a
few dozen lines of matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from csrseg.tracking.overlap import box_iou

Boxes = Mapping[int, Sequence[float]]  # identity -> x0, y0, x1, y1 (inclusive) in one frame

_NO_MATCH = 1e6  # the cost of a pair under the IoU that makes a match


@dataclass(frozen=True)
class MotMetrics:
    """``objects``: ground-truth boxes over all frames; ``misses``, ``false_positives``, ``switches``
    (a ground-truth object matched to another track than its last one); ``idtp``: frames where an
    object is matched to the one track that identity matching gives it."""

    frames: int
    objects: int
    hypotheses: int
    misses: int
    false_positives: int
    switches: int
    idtp: int
    tracks: int  # distinct track ids

    @property
    def mota(self) -> float:
        """``1 - (misses + false positives + switches) / objects``: 1 at best, unbounded below."""
        return 1.0 - (self.misses + self.false_positives + self.switches) / max(self.objects, 1)

    @property
    def idf1(self) -> float:
        """``2 IDTP / (objects + hypotheses)``: the share of boxes with the right identity, in [0, 1]."""
        total = self.objects + self.hypotheses
        return 2 * self.idtp / total if total else 1.0


def mot_metrics(truth: Sequence[Boxes], tracked: Sequence[Boxes], *, min_iou: float = 0.5) -> MotMetrics:
    """``truth[f]`` and ``tracked[f]``: frame ``f``'s ``{identity: box}`` of the ground truth and of
    the tracker, the same number of frames -> :class:`MotMetrics`. A pair matches at IoU >= ``min_iou``."""
    if len(truth) != len(tracked):
        raise ValueError(f"{len(truth)} frames of truth against {len(tracked)} tracked")
    last: dict[int, int] = {}  # object -> the track it was last matched to
    misses = false_positives = switches = 0
    together: dict[tuple[int, int], int] = {}  # (object, track) -> frames matchable (for IDF1)
    for objects, hyps in zip(truth, tracked):
        oids, hids = list(objects), list(hyps)
        iou = box_iou(np.array([objects[o] for o in oids]).reshape(-1, 4), np.array([hyps[h] for h in hids]).reshape(-1, 4))
        valid = iou >= min_iou
        for i, j in zip(*np.nonzero(valid)):
            together[oids[i], hids[j]] = together.get((oids[i], hids[j]), 0) + 1
        free_o, free_h = set(range(len(oids))), set(range(len(hids)))
        # a correspondence that still holds is kept, whatever else overlaps more (CLEAR MOT's rule)
        for i, o in enumerate(oids):
            if o in last and last[o] in hyps:
                j = hids.index(last[o])
                if valid[i, j] and j in free_h:
                    free_o.discard(i)
                    free_h.discard(j)
        rows, cols = sorted(free_o), sorted(free_h)
        if rows and cols:
            cost = np.where(valid[np.ix_(rows, cols)], 1.0 - iou[np.ix_(rows, cols)], _NO_MATCH)
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] >= _NO_MATCH:
                    continue
                o, h = oids[rows[r]], hids[cols[c]]
                switches += o in last and last[o] != h
                last[o] = h
                free_o.discard(rows[r])
                free_h.discard(cols[c])
        misses += len(free_o)
        false_positives += len(free_h)
    objects_total = sum(len(f) for f in truth)
    hyps_total = sum(len(f) for f in tracked)
    return MotMetrics(len(truth), objects_total, hyps_total, misses, false_positives, switches,
                      _identity_true_positives(together), len({h for f in tracked for h in f}))


def _identity_true_positives(together: dict[tuple[int, int], int]) -> int:
    """The most frames matched when each object is given at most one track and each track one object."""
    if not together:
        return 0
    objects = sorted({o for o, _ in together})
    tracks = sorted({h for _, h in together})
    counts = np.zeros((len(objects), len(tracks)))
    for (o, h), n in together.items():
        counts[objects.index(o), tracks.index(h)] = n
    rows, cols = linear_sum_assignment(-counts)
    return int(counts[rows, cols].sum())
