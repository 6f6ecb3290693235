"""The built-in demo: synthetic data -> training on the CPU -> COCO mask AP -> overlays.

Everything lands in one run folder::

    RUN/data/        the synthetic COCO-format dataset (train and val)
    RUN/train/       config.yaml, log.jsonl, last.pt, best.pt, results.png, val_results.json
    RUN/overlays/    val images with the predicted masks drawn on them
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from csrseg.config import Config, load_config
from csrseg.runtime.cpu import cpu_description
from csrseg.runtime.precision import Precision
from csrseg.data.io import read_image
from csrseg.data.synth import make_synthetic_dataset
from csrseg.engine.rundir import TRAIN_OUTPUTS, check_outputs, next_run_dir
from csrseg.api.train import train
from csrseg.engine.setup import decide_precision
from csrseg.evaluation.coco import format_table
from csrseg.models.backbones import backbone_name
from csrseg.inference.predictor import Predictor
from csrseg.inference.visualize import draw_instances

logger = logging.getLogger("csrseg")

VAL_FRACTION = 0.2  # make_synthetic_dataset's default split
QUICK_OVERRIDES = ["train.epochs=1", "train.max_iters=3", "train.batch_size=2", "train.warmup_iters=2", "train.workers=0"]


def plan(cfg: Config, images: int, device: str, precision: Precision) -> str:
    """What the demo is about to do and in which precision, and why (printed first)."""
    train_images = images - max(1, round(images * VAL_FRACTION))  # as make_synthetic_dataset splits
    iterations = -(-train_images // cfg.train.batch_size) * cfg.train.epochs
    if cfg.train.max_iters:
        iterations = min(iterations, cfg.train.max_iters)
    dev = torch.device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_description()
    return (f"demo plan: {images} synthetic images ({train_images} train / {images - train_images} val), "
            f"{iterations} iterations at batch {cfg.train.batch_size} ({cfg.train.epochs} epochs), "
            f"{cfg.input.short_side} px, {backbone_name(cfg.model.backbone)} + {cfg.model.neck.type} neck + "
            f"{cfg.model.head.type} head; {precision.describe()}; on {where}")


def run_demo(out: str | Path | None = None, quick: bool = False, images: int | None = None, device: str = "cpu",
             overrides: list[str] | tuple[str, ...] = (), num_overlays: int = 8, exist_ok: bool = False) -> str:
    """Run the demo into ``out``; returns the report printed by ``csrseg demo``.

    ``exist_ok``: replace a demo already in ``out`` (refused otherwise, naming its files).
    """
    out = Path(out) if out else next_run_dir(Path("runs") / "demo")
    check_outputs(out, [f"train/{name}" for name in TRAIN_OUTPUTS] + ["overlays"], exist_ok)
    tic = time.perf_counter()
    images = images or (12 if quick else 1000)
    cfg = load_config("demo", [*(QUICK_OVERRIDES if quick else []), *overrides])  # a bad --set: nothing written yet
    data = make_synthetic_dataset(out / "data", images, seed=0, val_fraction=VAL_FRACTION)
    logger.info(plan(cfg, images, device, decide_precision(cfg, None, device)))
    result = train(data, cfg, out / "train", device=device, exist_ok=exist_ok)

    # The final weights, not best.pt: best.pt is picked by its AP on this same val split, which would
    # make the reported number an optimistic choice made by looking at the results.
    weights = result.last
    predictor = Predictor(weights, device=device, score_thr=0.3)
    metrics = result.metrics or predictor.metrics  # the final evaluation, of the weights we hand out
    overlay_dir = out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    val_images = sorted((data / "val").glob("*.png"))[:num_overlays]
    for path, instances in zip(val_images, predictor.predict_batch(val_images)):
        overlay = draw_instances(read_image(path), [i.mask for i in instances], [i.label for i in instances],
                                 [i.score for i in instances], predictor.class_names)
        overlay.save(overlay_dir / f"{path.stem}.jpg", quality=92)
    minutes = (time.perf_counter() - tic) / 60
    return "\n".join([
        f"demo finished in {minutes:.1f} min: {result.iterations} iterations; mask AP of {weights.name} "
        f"on the synthetic val split ({len(list((data / 'val').glob('*.png')))} images):",
        format_table(metrics),
        f"weights:      {weights}",
        f"training log: {result.run_dir / 'log.jsonl'}",
        f"plot:         {result.run_dir / 'results.png'}",
        f"overlays:     {overlay_dir}/ ({len(val_images)} val images)",
        f"dataset:      {data}",
    ])
