"""Mask AP of a COCO results file twice: per class, and with every class merged into one.

    python benchmarks/class_agnostic_ap.py ANNOTATIONS.json RESULTS.json

RESULTS.json is what ``csrseg eval`` or a training run writes (``results_<split>.json``,
``val_results.json``). The gap between the two rows says how much of the AP is lost to wrong
classes rather than to missed or poor masks (merging can also cost a little: two predictions of
one object with different classes become a duplicate). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ("AP", "AP50", "AP75", "APS", "APM", "APL")


def mask_ap(gt: dict, results: list[dict]) -> list[float]:
    """COCO mask AP/AP50/AP75/APS/APM/APL (0-100) of ``results`` against the annotation dict ``gt``."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [100 * v for v in evaluation.stats[:6]]


def merged(gt: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """The same annotations and results with one category (id 1) for all."""
    gt = copy.deepcopy(gt)
    gt["categories"] = [dict(id=1, name="object")]
    for ann in gt["annotations"]:
        ann["category_id"] = 1
    return gt, [dict(r, category_id=1) for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations")
    parser.add_argument("results")
    args = parser.parse_args()
    gt = json.loads(open(args.annotations, encoding="utf-8").read())
    results = json.loads(open(args.results, encoding="utf-8").read())
    print("| scored | " + " | ".join(NAMES) + " |")
    print("|---" * (len(NAMES) + 1) + "|")
    for name, (g, r) in (("per class", (gt, results)), ("class-agnostic", merged(gt, results))):
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in mask_ap(g, r)) + " |")


if __name__ == "__main__":
    main()
