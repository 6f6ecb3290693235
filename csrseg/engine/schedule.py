"""Learning-rate schedule: linear warm-up, then x``lr_gamma`` after each milestone epoch.

A pure function of (iteration, epoch), so resuming needs nothing but those two.
"""

from __future__ import annotations

from csrseg.config import TrainConfig


def lr_factor(iteration: int, epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at global ``iteration`` (0-based) within ``epoch`` (0-based).

    Milestones count finished epochs, as mmdetection's ``step=[8, 11]``: the lr drops
    when epoch index 8 (the 9th epoch) starts.
    """
    factor = cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)
    if iteration < cfg.warmup_iters:
        progress = iteration / cfg.warmup_iters
        factor *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * progress
    return factor
