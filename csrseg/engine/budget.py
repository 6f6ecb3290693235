"""A time budget for a run (``train.time_hours``, ``csrseg train --time``; the short demo's minutes)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from csrseg.engine.hooks import duration
from csrseg.engine.trainer import Hook, Trainer

logger = logging.getLogger("csrseg")


class TimeBudget(Hook):
    """Fits a run into ``seconds`` of training, whatever the machine computes in them: after the warm-up
    the lr follows half a cosine over the budget (to ``train.lr_gamma`` of the peak), and the run ends
    at the first step past the time. The budget is the time or the run's own iterations, whichever
    runs out first: a machine that finishes the iterations early (a GPU, a fast CPU) still gets the
    whole decay.

    Runs after the standard hooks: the lr it sets replaces the iteration-based schedule's. Under DDP
    the time spent is rank 0's, sent to every rank after each step: ranks that read their own clocks
    would set different lrs, and one could stop a step before the others and leave them waiting in
    the gradients' all-reduce.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds, self.clock, self.start = seconds, clock, 0.0
        self.state, self.total_iters, self.spent = None, 0, 0.0

    def before_train(self, trainer: Trainer) -> None:
        # a resumed run has spent part of its budget already (RunState.seconds, kept in last.pt)
        self.start = self.clock() - trainer.state.seconds
        self.state, self.total_iters, self.spent = trainer.state, trainer.state.total_iters, trainer.state.seconds
        spent = f", {duration(trainer.state.seconds)} of it spent" if trainer.state.seconds else ""
        logger.info("training for %s (the time budget%s), at most %d iterations: the estimate below is for all of them",
                    duration(self.seconds), spent, trainer.state.total_iters)

    def progress(self) -> float:
        """The share of the budget spent, 0 to 1: of the time or of the iterations, the larger."""
        iterations = self.state.iteration / self.total_iters if self.state is not None and self.total_iters else 0.0
        return min(1.0, max(self.spent / self.seconds, iterations))

    def before_step(self, trainer: Trainer) -> None:
        cfg, state = trainer.cfg.train, trainer.state
        if state.iteration < cfg.warmup_iters:
            return  # the standard warm-up
        factor = cfg.lr_gamma + (1 - cfg.lr_gamma) * 0.5 * (1 + math.cos(math.pi * self.progress()))
        for group in trainer.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def after_step(self, trainer: Trainer) -> None:
        self.spent = self.clock() - self.start
        if trainer.env.enabled:  # every rank takes rank 0's time: the same lr, the same last step
            spent = torch.tensor([self.spent], dtype=torch.float64, device=trainer.env.device)
            dist.broadcast(spent, src=0)
            self.spent = float(spent.item())
        trainer.state.seconds = self.spent
        if self.progress() >= 1.0 and trainer.state.iteration < trainer.state.total_iters:
            trainer.state.total_iters = trainer.state.iteration  # the loop ends here, evaluation follows
            logger.info("the %s training budget is spent at iteration %d", duration(self.seconds), trainer.state.iteration)
