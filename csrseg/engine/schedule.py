"""Learning-rate schedule: linear warm-up, then one of three decays (``train.schedule``).

- ``step`` (the paper's, mmdetection's ``step=[8, 11]``): x``lr_gamma`` after each milestone epoch.
- ``cosine``: half a cosine from 1 to ``lr_gamma`` over the whole run, iteration by iteration.
- ``linear``: a straight line from 1 to ``lr_gamma`` over the whole run.

The two smooth decays fit short, budgeted runs (the schedule ends where the run ends, whatever
``train.max_iters`` cuts); milestones are ignored by them. A pure function of (iteration, epoch,
total iterations), so resuming needs nothing but those.
"""

from __future__ import annotations

import math

from csrseg.config.schema import TrainConfig


def lr_factor(iteration: int, epoch: int, cfg: TrainConfig, total_iters: int = 0) -> float:
    """Multiplier of the base lr at global ``iteration`` (0-based) within ``epoch`` (0-based).

    Milestones count finished epochs, as mmdetection's ``step=[8, 11]``: the lr drops
    when epoch index 8 (the 9th epoch) starts. ``total_iters`` (the run's length) is needed by
    the cosine and linear decays, which reach ``lr_gamma`` at the last iteration.
    """
    if cfg.schedule == "step":
        factor = cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)
    else:
        if total_iters <= 0:
            raise ValueError(f"the {cfg.schedule} schedule needs the run's length (total_iters), got {total_iters}")
        span = max(1, total_iters - 1 - cfg.warmup_iters)
        progress = min(1.0, max(0.0, (iteration - cfg.warmup_iters) / span))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        factor = cfg.lr_gamma + (1 - cfg.lr_gamma) * shape
    if iteration < cfg.warmup_iters:
        progress = iteration / cfg.warmup_iters
        factor *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * progress
    return factor
