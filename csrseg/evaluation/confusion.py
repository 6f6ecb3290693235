"""A confusion matrix of instance masks, with a background row and column.

The matching rule (:data:`RULE`), per image: the predictions scoring at least ``score_thr``, taken
in order of score, highest first; each takes the ground truth it overlaps most (mask IoU) among
those not yet taken, whatever its class, if that IoU is at least ``iou_thr``; so each ground truth is
matched once. A match counts in the cell (its true class, the predicted class): on the diagonal when
the classes agree, off it when they do not. A prediction left without a match counts in the
background row (a false positive of its class); a ground truth left without one, in the background
column (missed). Crowd regions are no instances: a prediction that lies in one (IoU over its own
area at least ``iou_thr``, COCO's rule for crowds) is not counted at all.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

RULE = ("per image, predictions with score >= score_thr in order of score (highest first, ties in "
        "input order) each take the not yet taken ground truth of highest mask IoU, of any class, if "
        "that IoU >= iou_thr; a match counts at [true class, predicted class]; an unmatched prediction at "
        "[background, predicted class]; an unmatched ground truth at [true class, background]; "
        "predictions inside crowd regions are not counted")


def confusion_matrix(dataset: dict, results: list[dict], cat_ids: list[int], *, iou_thr: float = 0.5,
                     score_thr: float = 0.3) -> np.ndarray:
    """Counts ``(K + 1, K + 1)`` by :data:`RULE`: rows the true class, columns the predicted class, in the
    order of ``cat_ids`` with background last.

    ``dataset``: a COCO annotation dict (segmentations as polygons or RLE, with ``images`` giving
    their sizes); ``results``: COCO results with RLE ``segmentation``; ``cat_ids``: every category
    either holds (an id outside it is a :class:`KeyError`).
    """
    index = {c: i for i, c in enumerate(cat_ids)}
    background = len(cat_ids)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    sizes = {im["id"]: (im["height"], im["width"]) for im in dataset["images"]}
    gts: dict[int, list[dict]] = {i: [] for i in sizes}
    for ann in dataset["annotations"]:
        gts[ann["image_id"]].append(ann)
    preds: dict[int, list[dict]] = {i: [] for i in sizes}
    for r in results:
        if r["score"] >= score_thr and r["image_id"] in preds:
            preds[r["image_id"]].append(r)
    for image_id, (height, width) in sizes.items():
        crowd = [a for a in gts[image_id] if a.get("iscrowd", 0)]
        truth = [a for a in gts[image_id] if not a.get("iscrowd", 0)]
        ranked = sorted(preds[image_id], key=lambda r: -r["score"])  # sorted() is stable: ties keep input order
        dt = [_rle(r["segmentation"], height, width) for r in ranked]
        ious = _ious(dt, [_rle(a["segmentation"], height, width) for a in truth], crowd=False)  # (P, G)
        in_crowd = _ious(dt, [_rle(a["segmentation"], height, width) for a in crowd], crowd=True)  # (P, C)
        taken = np.zeros(len(truth), dtype=bool)
        for p, pred in enumerate(ranked):
            col = index[pred["category_id"]]
            free = np.where(taken, -1.0, ious[p]) if truth else np.zeros(0)
            g = int(np.argmax(free)) if free.size else -1  # argmax: the first of equal IoUs
            if g >= 0 and free[g] >= iou_thr:
                taken[g] = True
                matrix[index[truth[g]["category_id"]], col] += 1
            elif not (in_crowd.size and in_crowd[p].max() >= iou_thr):
                matrix[background, col] += 1
        for g in np.flatnonzero(~taken):
            matrix[index[truth[g]["category_id"]], background] += 1
    return matrix


def _rle(segmentation, height: int, width: int) -> dict:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):  # polygons
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return dict(size=segmentation["size"], counts=counts.encode("ascii") if isinstance(counts, str) else counts)


def _ious(dt: list[dict], gt: list[dict], crowd: bool) -> np.ndarray:
    """Mask IoU ``(len(dt), len(gt))`` (``crowd``: intersection over the prediction's area)."""
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    return np.asarray(mask_utils.iou(dt, gt, [int(crowd)] * len(gt))).reshape(len(dt), len(gt))
