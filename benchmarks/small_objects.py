"""Small objects in large frames: training on crops against resizing the whole frame, sliced inference
against whole-frame inference, and Ultralytics YOLO11n-seg from scratch, all at equal training time.

    python benchmarks/small_objects.py --minutes 8                  # everything, 8 min of training per run
    python benchmarks/small_objects.py --minutes 8 --skip-yolo      # without Ultralytics
    python benchmarks/small_objects.py --data ../shared/data/iotkits/valid --minutes 5   # large objects, no YOLO

The data (unless ``--data``): ``--train`` + ``--val`` synthetic frames of ``--frame`` px (1024) holding
60-100 shapes each, 14-36 px across (``csrseg.data.synth`` with a small-object spec), as the tests can
make them. Each csrseg run trains the short demo's network (MobileNetV3-Small, 64-wide neck and head,
SOLOv2 head, from scratch, lr 3e-3 with a cosine over the time, :class:`csrseg.research.demo.TimeBudget`)
for ``--minutes`` of wall time on this CPU:

- ``resize``: the whole frame resized to ``--side`` px (256: a 30 px object becomes 7 px);
- ``crops``: ``--side`` px crops of the frame at its own scale (``input.crop``, ``input.crop_scale=1``).

Each is evaluated (COCO mask AP from ``csrseg.evaluate``, fp32) with the seconds per val frame of
that evaluation (read, predict, encode): ``resize`` whole-frame and sliced (``--tile --side``,
overlap 0.25, with the whole-frame pass), ``crops`` as it always predicts, in tiles of its crop.
YOLO11n-seg (``pip install ultralytics``; built from its yaml, no weights downloaded) trains on the
same frames, converted to YOLO polygons, at ``imgsz=--side`` for the same minutes (its ``time``
argument), and its val predictions (``retina_masks``, the original size) are scored by the same COCO
evaluation, so every AP of the table is one metric.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def small_object_dataset(out: Path, train: int, val: int, frame: int, seed: int = 0) -> Path:
    """``train + val`` frames of ``frame`` px, 60-100 shapes of 14-36 px each, in the ROOT layout."""
    from csrseg.data.synth import SynthSpec, make_synthetic_dataset

    if (out / "annotations" / "instances_val.json").is_file():
        return out
    spec = SynthSpec(image_size=frame, min_instances=60, max_instances=100, min_size=14.0,
                     max_size_frac=36.0 / frame, min_visible=30)
    return make_synthetic_dataset(out, train + val, seed=seed, val_fraction=val / (train + val), spec=spec)


def csrseg_run(data: Path, out: Path, mode: str, side: int, minutes: float) -> dict:
    """Train one csrseg run for ``minutes`` and return its record (iterations, training seconds)."""
    from csrseg.api import train
    from csrseg.research.demo import SHORT_LR, SHORT_NETWORK, TimeBudget

    shape = ([f"input.crop={side}", "input.crop_scale=1.0", f"input.short_side={side}", f"input.max_size={side}"]
             if mode == "crops" else [f"input.short_side={side}", f"input.max_size={side}"])
    overrides = [*SHORT_NETWORK, *shape, f"train.lr={SHORT_LR}", "train.warmup_iters=50", "train.lr_gamma=0.01",
                 "train.workers=0", "train.epochs=1000", "train.eval_interval=1000000", "train.batch_size=8",
                 "train.precision=fp32", "model.head.postprocess.max_per_img=300", "model.head.postprocess.nms_pre=1000"]
    tic = time.perf_counter()
    result = train(data, config="demo", out=out, overrides=overrides, device="cpu", progress=False, val_split=None,
                   hooks=[TimeBudget(minutes * 60)], exist_ok=True)
    return dict(iterations=result.iterations, train_s=round(time.perf_counter() - tic, 1), weights=str(result.last))


def csrseg_eval(weights: str, data: Path, tile: int | None, out: Path) -> dict:
    """Mask AP of ``weights`` on the val frames, whole (``tile`` None) or sliced, with seconds per frame."""
    from csrseg.api import evaluate

    tic = time.perf_counter()
    report = evaluate(weights, data=data, out=out, workers=0, batch=1, tile=tile, overlap=0.25, exist_ok=True)
    seconds = (time.perf_counter() - tic) / report["images"]
    return dict(report["mask"], s_per_frame=round(seconds, 2), predictions=report["predictions"])


def yolo_dataset(data: Path, out: Path) -> Path:
    """The ROOT-layout dataset as YOLO-seg: one polygon per instance (its mask's largest outline)."""
    import cv2

    from csrseg.data.coco import decode_segmentation

    for split in ("train", "val"):
        index = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
        cats = {c["id"]: i for i, c in enumerate(sorted(index["categories"], key=lambda c: c["id"]))}
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        anns: dict[int, list] = {}
        for ann in index["annotations"]:
            anns.setdefault(ann["image_id"], []).append(ann)
        for image in index["images"]:
            link = out / "images" / split / image["file_name"]
            if not link.exists():
                link.symlink_to((data / split / image["file_name"]).resolve())
            h, w = image["height"], image["width"]
            lines = []
            for ann in anns.get(image["id"], []):
                mask = decode_segmentation(ann["segmentation"], h, w).astype(np.uint8)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                if not contours:
                    continue
                poly = max(contours, key=cv2.contourArea).reshape(-1, 2)
                if len(poly) < 3:
                    continue
                coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
                lines.append(f"{cats[ann['category_id']]} {coords}")
            (out / "labels" / split / f"{Path(image['file_name']).stem}.txt").write_text("\n".join(lines))
    names = [c["name"] for c in sorted(index["categories"], key=lambda c: c["id"])]
    yaml_path = out / "data.yaml"
    yaml_path.write_text(json.dumps(dict(path=str(out), train="images/train", val="images/val",
                                         names=dict(enumerate(names)))))
    return yaml_path


def yolo_run(data: Path, work: Path, side: int, minutes: float) -> dict:
    """YOLO11n-seg from its yaml, trained ``minutes`` at ``imgsz=side``; its val predictions scored by COCO."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from pycocotools import mask as mask_utils
    import ultralytics.utils.torch_utils as yolo_torch
    from ultralytics import YOLO

    from csrseg.evaluation.coco import coco_mask_ap

    # Ultralytics trains on the CPU with one thread fewer than the cores (1 of 2 here): given all of
    # them, as csrseg has, so the comparison is of the models, not of the thread counts
    yolo_torch.NUM_THREADS = os.cpu_count() or 1

    yaml_path = yolo_dataset(data, work / "yolo_data")
    model = YOLO("yolo11n-seg.yaml")
    tic = time.perf_counter()
    model.train(data=str(yaml_path), imgsz=side, epochs=10000, time=minutes / 60, device="cpu", batch=8, workers=0,
                pretrained=False, amp=False, plots=False, val=False, project=str(work / "yolo_runs"), name="run",
                exist_ok=True, verbose=False)
    train_s = time.perf_counter() - tic
    trainer = model.trainer
    best = Path(trainer.last)
    model = YOLO(str(best))
    index = json.loads((data / "annotations" / "instances_val.json").read_text())
    cat_ids = [c["id"] for c in sorted(index["categories"], key=lambda c: c["id"])]
    results, tic = [], time.perf_counter()
    for image in index["images"]:
        pred = model.predict(str(data / "val" / image["file_name"]), imgsz=side, conf=0.001, max_det=300,
                             retina_masks=True, device="cpu", verbose=False)[0]
        if pred.masks is None:
            continue
        masks = pred.masks.data.cpu().numpy().astype(bool)
        for mask, cls, score in zip(masks, pred.boxes.cls.tolist(), pred.boxes.conf.tolist()):
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append(dict(image_id=image["id"], category_id=cat_ids[int(cls)], segmentation=rle, score=float(score)))
    seconds = (time.perf_counter() - tic) / len(index["images"])
    metrics, _ = coco_mask_ap(data / "annotations" / "instances_val.json", results, [i["id"] for i in index["images"]])
    return dict(metrics, s_per_frame=round(seconds, 2), predictions=len(results), train_s=round(train_s, 1),
                epochs=int(trainer.epoch) + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="training wall time of every run")
    parser.add_argument("--side", type=int, default=256, help="input side, crop side and tile side")
    parser.add_argument("--frame", type=int, default=1024, help="synthetic frame size")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--val", type=int, default=10)
    parser.add_argument("--data", type=Path, help="a dataset folder instead of the synthetic frames")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_small_objects"))
    parser.add_argument("--skip-yolo", action="store_true")
    parser.add_argument("--runs", default="resize,crops", help="csrseg runs: resize, crops")
    args = parser.parse_args(argv)

    import torch

    from csrseg.runtime.cpu import cpu_description

    args.work.mkdir(parents=True, exist_ok=True)
    if args.data and (args.data / "_annotations.coco.json").is_file():  # one Roboflow split folder (IoT kits)
        sys.path.insert(0, str(HERE))
        from real_data import split_by_photo

        data = split_by_photo(args.data / "_annotations.coco.json", args.work / "split")
        args.skip_yolo = True  # yolo_dataset reads the ROOT layout only
    else:
        data = args.data or small_object_dataset(args.work / "data", args.train, args.val, args.frame)
    rows = []
    for mode in [m for m in args.runs.split(",") if m]:
        run = csrseg_run(data, args.work / mode, mode, args.side, args.minutes)
        # a crop-trained model is always sliced, in tiles of its crop (csrseg.inference.tiling.model_tile)
        views = [(args.side, f"tiles of {args.side} (its default)")] if mode == "crops" else [
            (None, "whole frame"), (args.side, f"tiles of {args.side} + whole frame")]
        for tile, inference in views:
            metrics = csrseg_eval(run["weights"], data, tile, args.work / f"{mode}_{'tiled' if tile else 'whole'}.json")
            rows.append(dict(model=f"csrseg, {mode}", inference=inference, iterations=run["iterations"],
                             train_s=run["train_s"], **metrics))
            print(json.dumps(rows[-1]), flush=True)
    if not args.skip_yolo:
        yolo = yolo_run(data, args.work, args.side, args.minutes)
        rows.append(dict(model="YOLO11n-seg (from scratch)", inference=f"imgsz {args.side}", iterations=f"{yolo['epochs']} epochs",
                         **{k: v for k, v in yolo.items() if k != "epochs"}))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{cpu_description()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{platform.python_version()}; {args.minutes:g} min of training per run, input/crop/tile {args.side} px\n")
    print("| model | inference | trained | AP | AP50 | APS | APM | s / frame | predictions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        trained = r["iterations"] if isinstance(r["iterations"], str) else f"{r['iterations']} it"
        print(f"| {r['model']} | {r['inference']} | {trained}, {r['train_s']:.0f} s | {r['AP']:.1f} | "
              f"{r['AP50']:.1f} | {r['APS']:.1f} | {r['APM']:.1f} | {r['s_per_frame']:.2f} | {r['predictions']} |")
    (args.work / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
