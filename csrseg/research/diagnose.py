"""The diagnostics of one finished training run (:mod:`csrseg.evaluation.diagnostics`), from its folder:
``last.pt`` for the model, ``dataset.json`` (or ``run.json``) for the data, ``val_results.json`` for the
results of its last evaluation. ``csrseg ablate`` adds them to every row of its report."""

from __future__ import annotations

import json
from pathlib import Path

from csrseg.data.sources import resolve_dataset
from csrseg.data.splits import training_splits
from csrseg.engine.checkpoint import config_from_checkpoint, load_checkpoint, load_model_state, trained_weights
from csrseg.errors import CsrsegError
from csrseg.evaluation.diagnostics import instance_stats, kernel_stats
from csrseg.models import build_model
from csrseg.config import without_pretrained

DIAGNOSTICS_IMAGES = 200  # images of each split the kernel statistics read: a few seconds at the CPU recipe


def run_diagnostics(run_dir: str | Path, data: str | Path, images: int = DIAGNOSTICS_IMAGES) -> dict[str, float]:
    """:func:`instance_stats` of ``RUN/val_results.json`` and, for a K-Net head, :func:`kernel_stats` of
    ``RUN/last.pt`` on ``data`` (train and val splits), as one dict of floats."""
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "last.pt"
    if not ckpt_path.is_file():
        raise CsrsegError(f"{ckpt_path}: not found; diagnostics need a finished run")
    ckpt = load_checkpoint(ckpt_path)
    cfg = config_from_checkpoint(ckpt, ckpt_path)
    train_set, val_set = training_splits(resolve_dataset(data), cfg.input, cfg.train.seed)
    stats: dict[str, float] = {}
    results_path = run_dir / "val_results.json"
    if results_path.is_file() and val_set is not None:
        gt = json.loads(Path(val_set.index.path).read_text())
        stats.update(instance_stats(gt, json.loads(results_path.read_text())))
    model = build_model(without_pretrained(cfg))
    load_model_state(model, trained_weights(ckpt), source=str(ckpt_path))
    if val_set is not None:
        stats.update(kernel_stats(model, train_set, val_set, len(train_set.cat_ids), images=images,
                                  size_divisor=cfg.input.size_divisor))
    return stats
