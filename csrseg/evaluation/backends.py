"""Which COCOeval scores: pycocotools' (the reference) or faster-coco-eval's (C++, the optional fast path).

Both take the same annotation dict and results list and fill the same arrays: ``stats`` (the 12
numbers of ``summarize()``) and ``eval["precision"]`` of shape ``(T=10, R=101, K, A=4, M=3)``
(IoU 0.5:0.95, recall 0:1, classes, areas all/small/medium/large, maxDets 1/10/100), -1 where a
class has no ground truth. ``benchmarks/RESULTS.md`` ("Evaluation pictures and loggers") holds
the comparison of the two on the same results.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
from dataclasses import dataclass

import numpy as np

from csrseg.errors import CsrsegError

EVALUATORS = ("auto", "pycocotools", "faster")
#: the library behind each resolved evaluator name
LIBRARIES = {"pycocotools": "pycocotools", "faster": "faster-coco-eval"}


@dataclass(frozen=True)
class CocoScores:
    """One COCOeval run: ``stats`` ``(12,)``, ``precision`` ``(10, 101, K, 4, 3)``, ``cat_ids`` the K classes in order."""

    stats: np.ndarray
    precision: np.ndarray
    cat_ids: list[int]


def faster_installed() -> bool:
    return importlib.util.find_spec("faster_coco_eval") is not None


def resolve_evaluator(name: str) -> str:
    """``auto`` -> ``faster`` where faster-coco-eval is installed, else ``pycocotools``; a name not
    in :data:`EVALUATORS`, or ``faster`` without its package, is a :class:`CsrsegError`."""
    if name not in EVALUATORS:
        raise CsrsegError(f"--evaluator {name}: unknown; choose one of {', '.join(EVALUATORS)}")
    if name == "auto":
        return "faster" if faster_installed() else "pycocotools"
    if name == "faster" and not faster_installed():
        raise CsrsegError("--evaluator faster needs faster-coco-eval: pip install 'csrseg[fasteval]' "
                          "(or --evaluator pycocotools)")
    return name


def run_cocoeval(dataset: dict, results: list[dict], iou_type: str, *, evaluator: str = "pycocotools") -> CocoScores:
    """COCOeval of ``results`` (COCO result dicts) against ``dataset`` (a COCO annotation dict, ``info``
    present) for ``iou_type`` ``segm`` or ``bbox``, over every image of ``dataset``; ``evaluator``:
    ``pycocotools`` or ``faster`` (resolved already, see :func:`resolve_evaluator`)."""
    if evaluator == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    elif evaluator == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        raise CsrsegError(f"evaluator {evaluator!r}: expected pycocotools or faster")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)  # both libraries write into what they index
        gt.createIndex()
        # loadRes writes into the dicts it gets (numpy boxes, areas): give it copies
        evaluation = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iou_type)
        evaluation.params.imgIds = sorted(gt.getImgIds())
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return CocoScores(np.asarray(evaluation.stats, dtype=float), np.asarray(evaluation.eval["precision"], dtype=float),
                      [int(c) for c in evaluation.params.catIds])
