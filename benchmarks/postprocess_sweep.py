"""Mask AP of one checkpoint on one split for several post-processing values (prints a table).

Use it to choose ``model.postprocess.mask_thr`` or the SOLOv2 head's ``grid_strides`` (minimum mask
area per grid) on a split *other than* the one you report, e.g. a held-out split::

    python benchmarks/postprocess_sweep.py --weights runs/demo/train/last.pt --data SYN --split heldout \\
        --mask-thr 0.3 0.35 0.4 0.45 0.5 --strides 8,8,16

Every row runs the whole evaluation (network + post-processing) with one value changed; the first
row is the checkpoint's own values.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
from functools import partial

import torch
from torch.utils.data import DataLoader

from csrseg.data import CocoInstances, Transform, collate
from csrseg.data.sources import resolve_dataset
from csrseg.evaluation.coco import coco_mask_ap, run_inference
from csrseg.inference.predictor import Predictor


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", required=True, help="any layout `csrseg eval --data` accepts")
    parser.add_argument("--split", default="val")
    parser.add_argument("--mask-thr", type=float, nargs="*", default=[])
    parser.add_argument("--strides", nargs="*", default=[], metavar="S1,S2,S3",
                        help="SOLOv2 head: minimum-area strides per grid, comma-separated")
    args = parser.parse_args(argv)

    predictor = Predictor(args.weights, device="cpu", score_thr=0.0)
    head = predictor.model.head
    files = resolve_dataset(args.data, val_split=args.split).get(args.split)
    dataset = CocoInstances(files.annotations, files.images, Transform(predictor.cfg.input, train=False),
                            cat_ids=predictor.cat_ids)
    loader = DataLoader(dataset, batch_size=4, collate_fn=partial(collate, size_divisor=predictor.cfg.input.size_divisor))

    base = head.cfg  # the head reads its post-processing from its own config
    variants = {"checkpoint's own values": base}
    for thr in args.mask_thr:
        variants[f"mask_thr={thr}"] = dataclasses.replace(base, postprocess=dataclasses.replace(base.postprocess, mask_thr=thr))
    for strides in args.strides:
        values = tuple(int(v) for v in strides.split(","))
        variants[f"grid_strides={values}"] = dataclasses.replace(base, grid_strides=values)

    lines = [f"{args.weights} on {files.annotations}", "", "| variant | AP | AP50 | AP75 | APS | APM | APL |",
             "|---|---|---|---|---|---|---|"]
    with torch.no_grad():
        for name, head_cfg in variants.items():
            head.cfg = head_cfg
            results, _ = run_inference(predictor, loader)
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own tables
                metrics, _ = coco_mask_ap(files.annotations, results)
            lines.append(f"| {name} | " + " | ".join(f"{metrics[k]:.1f}" for k in ("AP", "AP50", "AP75", "APS", "APM", "APL")) + " |")
    head.cfg = base
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
