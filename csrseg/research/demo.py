"""The built-in demo: synthetic data -> training -> COCO mask AP -> overlays.

Everything lands in one run folder::

    RUN/data/        the synthetic COCO-format dataset (train and val)
    RUN/train/       config.yaml, log.jsonl, last.pt, best.pt, results.png, val_results.json
    RUN/overlays/    val images with the predicted masks drawn on them

Two recipes on the same 1000 synthetic images, both with the SOLOv2 head from scratch:

- the short demo (default) fits a coffee break on any CPU: a network light enough to take many
  steps in little time (:data:`SHORT_NETWORK`: MobileNetV3-Small, neck and head 64 wide) trained for
  a fixed time (:data:`SHORT_MINUTES`), whatever the machine computes in it, with two hooks on the
  trainer: :class:`TimeBudget` (the lr decays over the budget's time, and the run ends when it is
  spent) and :class:`ProgressiveSize` (most of the time at 160 px, where a step costs about 70 %, the
  rest at 256 px, where small objects keep their pixels). It stops earlier where the full recipe's
  iterations are done first (a GPU). benchmarks/RESULTS.md, "The short demo", compares recipes.
- ``--full``: the ``demo`` preset's own 18-epoch recipe (ResNet-18) at 256 px (mask AP about 50;
  77 min on a 2-core AVX2 CPU).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch

from csrseg.errors import CsrsegError
from csrseg.api.train import train
from csrseg.config import Config, load_config
from csrseg.data.io import read_image
from csrseg.data.synth import make_synthetic_dataset
from csrseg.data.transforms import Transform
from csrseg.engine.budget import TimeBudget
from csrseg.outputs import TRAIN_OUTPUTS, check_outputs, next_run_dir
from csrseg.engine.setup import decide_precision
from csrseg.engine.trainer import Hook, Trainer
from csrseg.evaluation.coco import format_table
from csrseg.inference.predictor import Predictor
from csrseg.inference.visualize import draw_predictions
from csrseg.models.backbones import backbone_name
from csrseg.runtime.cpu import cpu_description
from csrseg.runtime.device import resolve_device
from csrseg.runtime.precision import Precision

logger = logging.getLogger("csrseg")

VAL_FRACTION = 0.2  # make_synthetic_dataset's default split
QUICK_OVERRIDES = ["train.epochs=1", "train.max_iters=3", "train.batch_size=2", "train.warmup_iters=2", "train.workers=0"]
#: the short demo's training time; data, evaluation and overlays add about a minute and a half
#: on a 2-core CPU, so the whole demo fits in 12 minutes
SHORT_MINUTES = 9.0
SMALL_SIDE = 160  # the short demo's input size for the first SMALL_SHARE of its time
SMALL_SHARE = 0.75
SHORT_LR = 3e-3  # a budget of about a thousand steps takes a higher peak than the full recipe's 1e-3
# 4x the steps of ResNet-18 in the same time, and learning more per minute for it (RESULTS.md)
SHORT_NETWORK = ["model.backbone.arch=mobilenet_v3_small", "model.neck.channels=64", "model.neck.csr_channels=64",
                 "model.head.feat_channels=64", "model.head.kernel_dim=64", "model.head.stacked_convs=2"]


class ProgressiveSize(Hook):
    """Trains at ``small_side`` px for the first ``share`` of a :class:`TimeBudget`, then at the config's
    own input size. The SOLOv2 head's object-size ranges (in input pixels) are scaled alike while the
    input is small, so each object keeps the grid it is assigned to at full size."""

    def __init__(self, budget: TimeBudget, small_side: int, share: float) -> None:
        self.budget, self.small_side, self.share, self.small = budget, small_side, share, False

    def before_train(self, trainer: Trainer) -> None:
        self._set(trainer, small=True)

    def before_step(self, trainer: Trainer) -> None:
        if self.small and self.budget.progress() >= self.share:
            self._set(trainer, small=False)
            logger.info("input size %d px from iteration %d on", trainer.cfg.input.short_side, trainer.state.iteration + 1)

    def _set(self, trainer: Trainer, small: bool) -> None:
        full = trainer.cfg.input
        scale = self.small_side / full.short_side if small else 1.0
        size = dataclasses.replace(full, short_side=round(full.short_side * scale), max_size=round(full.max_size * scale))
        # with no loader workers the dataset transforms each sample as its batch is drawn: the next one takes this
        trainer.dataset.transform = Transform(size, train=True)
        criterion = getattr(trainer.model.head, "criterion", None)
        head_cfg = trainer.cfg.model.head
        if criterion is not None and hasattr(head_cfg, "scale_ranges"):
            ranges = tuple((lo * scale, hi * scale) for lo, hi in head_cfg.scale_ranges)
            criterion.head_cfg = dataclasses.replace(head_cfg, scale_ranges=ranges)
        self.small = small


def short_config(overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The short demo's config: the light network, a higher peak lr, no evaluation before the end
    (the time goes to training), and data loading in the training process (the progressive size
    reaches the next batch drawn)."""
    return load_config("demo", [*SHORT_NETWORK, "train.eval_interval=1000", f"train.lr={SHORT_LR}",
                                "train.warmup_iters=50", "train.lr_gamma=0.01", "train.workers=0", *overrides])


def plan(cfg: Config, images: int, device: str, precision: Precision, minutes: float | None = None) -> str:
    """What the demo is about to do and in which precision, and why (printed first)."""
    train_images = images - max(1, round(images * VAL_FRACTION))  # as make_synthetic_dataset splits
    iterations = -(-train_images // cfg.train.batch_size) * cfg.train.epochs
    if cfg.train.max_iters:
        iterations = min(iterations, cfg.train.max_iters)
    dev = torch.device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_description()
    if minutes is None:
        steps = f"{iterations} iterations at batch {cfg.train.batch_size} ({cfg.train.epochs} epochs), {cfg.input.short_side} px"
    else:
        steps = (f"{minutes:g} minutes of training at batch {cfg.train.batch_size} (at most {iterations} iterations), "
                 f"{SMALL_SIDE} px for {SMALL_SHARE:.0%} of the time then {cfg.input.short_side} px")
    return (f"demo plan: {images} synthetic images ({train_images} train / {images - train_images} val), {steps}, "
            f"{backbone_name(cfg.model.backbone)} + {cfg.model.neck.type} neck + {cfg.model.head.type} head; "
            f"{precision.describe()}; on {where}")


RECIPES = ("short", "full", "quick")


def run_demo(out: str | Path | None = None, *, recipe: str = "short", minutes: float = SHORT_MINUTES,
             images: int | None = None, device: str | None = None, overrides: list[str] | tuple[str, ...] = (),
             num_overlays: int = 8, exist_ok: bool = False) -> str:
    """Run the demo into ``out`` (default ``runs/demo[N]``); returns the report printed by ``csrseg demo``.

    ``recipe``: ``short`` (``minutes`` of training), ``full`` (the preset's whole recipe) or ``quick``
    (a few iterations only: tests). ``device``: ``cpu``, ``cuda``, or ``None``/``auto``
    (the GPU when there is one). ``exist_ok``: replace a demo already in ``out`` (refused otherwise,
    naming its files).
    """
    if recipe not in RECIPES:
        raise CsrsegError(f"demo recipe {recipe!r}: choose {', '.join(RECIPES)}")
    quick, full = recipe == "quick", recipe == "full"
    out = Path(out) if out else next_run_dir(Path("runs") / "demo")
    check_outputs(out, [f"train/{name}" for name in TRAIN_OUTPUTS] + ["overlays"], exist_ok)
    device = resolve_device(device)
    tic = time.perf_counter()
    images = images or (12 if quick else 1000)
    extra = [*(QUICK_OVERRIDES if quick else []), *overrides]
    short = not full and not quick
    cfg = short_config(extra) if short else load_config("demo", extra)  # a bad --set: nothing written yet
    data = make_synthetic_dataset(out / "data", images, seed=0, val_fraction=VAL_FRACTION)
    logger.info(plan(cfg, images, device, decide_precision(cfg, None, device), minutes if short else None))
    hooks: list[Hook] = []
    if short:
        budget = TimeBudget(minutes * 60)
        hooks = [budget, ProgressiveSize(budget, SMALL_SIDE, SMALL_SHARE)]
    result = train(data, config=cfg, out=out / "train", device=device, exist_ok=exist_ok, hooks=hooks)

    # The final weights, not best.pt: best.pt is picked by its AP on this same val split, which would
    # make the reported number an optimistic choice made by looking at the results.
    weights = result.last
    predictor = Predictor(weights, device=device, score_thr=0.3)
    metrics = result.metrics or predictor.metrics  # the final evaluation, of the weights we hand out
    overlay_dir = out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    val_images = sorted((data / "val").glob("*.png"))[:num_overlays]
    for path, instances in zip(val_images, predictor.predict_batch(val_images)):
        overlay = draw_predictions(read_image(path), instances, predictor.class_names)
        overlay.save(overlay_dir / f"{path.stem}.jpg", quality=92)
    minutes_taken = (time.perf_counter() - tic) / 60
    described = "the full recipe" if full else ("quick" if quick else f"the short recipe ({minutes:g} min of training)")
    return "\n".join([
        f"demo finished in {minutes_taken:.1f} min ({described}): {result.iterations} iterations; mask AP of "
        f"{weights.name} on the synthetic val split ({len(list((data / 'val').glob('*.png')))} images):",
        format_table(metrics),
        f"weights:      {weights}",
        f"training log: {result.run_dir / 'log.jsonl'}",
        f"plot:         {result.run_dir / 'results.png'}",
        f"overlays:     {overlay_dir}/ ({len(val_images)} val images, instances scoring 0.3 or more)",
        f"dataset:      {data}",
    ] + ([] if full or quick else ["the full recipe (mask AP about 50; 77 min on a 2-core AVX2 CPU): csrseg demo --full"]))
