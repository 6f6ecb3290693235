"""faster-coco-eval against pycocotools on the same results: are mask and box AP (and the whole
precision array) equal, and how long does each take? Also the time of the evaluation pictures.

    PYTHONPATH=. python benchmarks/eval_backends.py --images 400 --size 256 --repeats 3

No model: the predictions are the synthetic ground truth made imperfect (masks shifted a few
pixels, one in five given another class, one in ten dropped, copies in other images as false
positives, random scores), so that every IoU threshold and recall level matters.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from csrseg.data.coco import decode_segmentation
from csrseg.data.synth import SynthSpec, make_synthetic_dataset
from csrseg.evaluation.backends import run_cocoeval
from csrseg.evaluation.coco import boxes_from_masks, load_ground_truth, score_results
from csrseg.evaluation.pictures import write_pictures
from csrseg.masks.rle import encode_mask


def imperfect_results(data: dict, seed: int) -> list[dict]:
    """COCO results made from the ground truth ``data`` (a loaded annotation file), imperfect as a model's
    are: masks shifted a few pixels, one in five given another class, one in ten dropped, copies in the
    wrong image as false positives, distinct random scores. The evaluation tests score these too."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    ids = sorted(sizes)
    rng = np.random.default_rng(seed)
    results = []
    for ann in data["annotations"]:
        mask = decode_segmentation(ann["segmentation"], *sizes[ann["image_id"]]).astype(bool)
        shifted = np.roll(mask, tuple(int(v) for v in rng.integers(-4, 5, size=2)), axis=(0, 1))
        category = ann["category_id"] if rng.random() > 0.2 else int(rng.integers(1, 5))
        if rng.random() > 0.1:
            results.append(dict(image_id=ann["image_id"], category_id=category, segmentation=encode_mask(shifted),
                                score=float(rng.random())))
        other = int(rng.choice(ids))
        if rng.random() < 0.3 and sizes[other] == mask.shape:
            results.append(dict(image_id=other, category_id=ann["category_id"], segmentation=encode_mask(mask),
                                score=float(rng.random())))
    return results


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    flags = info.get("Flags", "").split()
    wanted = [f for f in flags if f.startswith(("avx512", "amx"))]
    return (f"{info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs; flags {' '.join(wanted) or 'no avx512/amx'}; "
            f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(Path(tmp) / "synth", args.images, seed=args.seed, val_fraction=0.5,
                                      spec=SynthSpec(image_size=args.size))
        ann_file = root / "annotations" / "instances_val.json"
        with contextlib.redirect_stdout(io.StringIO()):
            gt = load_ground_truth(ann_file).dataset
        results = imperfect_results(json.loads(ann_file.read_text()), args.seed)
        boxes = boxes_from_masks(results)
        print(f"{len(gt['images'])} val images, {len(gt['annotations'])} objects, {len(results)} predictions; {cpu_name()}")
        print("| IoU type | pycocotools s | faster-coco-eval s | speed-up | AP pycocotools | AP faster | max abs diff stats | max abs diff precision |")
        print("|---|---|---|---|---|---|---|---|")
        for iou_type, res in (("segm", results), ("bbox", boxes)):
            t_ref, ref = timed(lambda: run_cocoeval(gt, res, iou_type, evaluator="pycocotools"), args.repeats)
            t_fast, fast = timed(lambda: run_cocoeval(gt, res, iou_type, evaluator="faster"), args.repeats)
            print(f"| {iou_type} | {t_ref:.2f} | {t_fast:.2f} | {t_ref / t_fast:.1f}x | {ref.stats[0] * 100:.3f} | "
                  f"{fast.stats[0] * 100:.3f} | {np.abs(ref.stats - fast.stats).max():.1e} | "
                  f"{np.abs(ref.precision - fast.precision).max():.1e} |")
        ids = [im["id"] for im in gt["images"]]
        for evaluator in ("pycocotools", "faster"):
            t_eval, scored = timed(lambda: score_results(ann_file, results, ids, evaluator=evaluator), args.repeats)
            t_pics, _ = timed(lambda: write_pictures(scored, Path(tmp) / "results_val.json"), args.repeats)
            print(f"eval report ({evaluator}): {t_eval:.2f} s; pictures (curves + confusion matrix): {t_pics:.2f} s")


if __name__ == "__main__":
    main()
