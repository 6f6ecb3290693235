"""The training loop: a run state, one optimisation step, and hooks at fixed points.

:class:`RunState` says where a run is (epoch, iteration, best AP, last metrics): ``last.pt`` saves
it whole and a resume restores it whole. :meth:`Trainer.step` is one optimisation step.
Everything else, the learning-rate schedule, the non-finite-loss guard, progress, logs,
checkpoints, preemption, evaluation and ``best.pt``, is a :class:`Hook` (:mod:`csrseg.engine.hooks`,
:mod:`csrseg.evaluation.hook`), called at fixed points::

    before_train
    every epoch:   every step:   before_step -> step() [after_backward] -> after_step
                   after_epoch   (the epoch done, or the run's last iteration reached)
    after_train

Determinism: the order of an epoch comes from ``(seed, epoch)`` and each sample's augmentation
from ``(seed, epoch, index)``; a resume restores model, optimiser, scaler, position in the epoch
and RNG state, so an interrupted run ends with the weights of an uninterrupted one (on a CPU, in
fp32, to float tolerance).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from csrseg.config import Config, ConfigError
from csrseg.data import CocoInstances, collate
from csrseg.engine import distributed as du
from csrseg.engine import preempt
from csrseg.engine.ema import ModelEMA
from csrseg.errors import CsrsegError
from csrseg.runtime.precision import Precision

logger = logging.getLogger("csrseg")


class NonFiniteLossError(CsrsegError, RuntimeError):
    """Too many consecutive steps with a NaN/inf loss."""


@dataclass
class RunState:
    """Where a run is. ``epoch``: epochs finished; ``step_in_epoch``: steps done in the current one;
    ``iteration``: steps done in all; ``total_iters``: the run's length; ``best_ap``/``metrics``: the
    best and the last evaluation; ``finished``: the run has reached its end (or stopped early)."""

    epoch: int = 0
    step_in_epoch: int = 0
    iteration: int = 0
    total_iters: int = 0
    best_ap: float = -1.0
    metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    evals_since_best: int = 0  # evaluations in a row without a new best AP (train.patience)
    seconds: float = 0.0  # training time spent, across resumes (train --time)

    def state_dict(self) -> dict[str, Any]:
        """As ``last.pt`` stores it (``step`` is ``step_in_epoch``, the key checkpoints have always used)."""
        state = asdict(self)
        state["step"] = state.pop("step_in_epoch")
        return state

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> RunState:
        return cls(epoch=ckpt["epoch"], step_in_epoch=ckpt["step"], iteration=ckpt["iteration"],
                   total_iters=ckpt.get("total_iters", 0), best_ap=ckpt["best_ap"], metrics=ckpt.get("metrics", {}),
                   finished=bool(ckpt.get("finished", False)), evals_since_best=int(ckpt.get("evals_since_best", 0)),
                   seconds=float(ckpt.get("seconds", 0.0)))


class Hook:
    """Behaviour at fixed points of :meth:`Trainer.train`; each method receives the trainer."""

    def before_train(self, trainer: Trainer) -> None: ...

    def before_step(self, trainer: Trainer) -> None: ...

    def after_backward(self, trainer: Trainer) -> None:
        """The gradients of the step are computed (unscaled), not yet clipped or applied."""

    def after_step(self, trainer: Trainer) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...

    def after_failure(self, trainer: Trainer, error: BaseException) -> None:
        """The loop ended by ``error`` (a hook's stop, a crash, Ctrl-C): ``after_train`` will not come.
        For what must be closed whatever the end (an experiment tracker's run); the error goes on."""


def out_of_patience(state: RunState, patience: int) -> bool:
    """Whether ``patience`` evaluations in a row (0: never) have passed without a new best AP."""
    return patience > 0 and state.evals_since_best >= patience


def epoch_batches(num_samples: int, epoch: int, cfg: Config, env: du.DistEnv) -> list[list[int]]:
    """This process's batches of sample indices for ``epoch`` (DistributedSampler order)."""
    if cfg.train.batch_size % env.world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {env.world_size} processes")
    per_rank = cfg.train.batch_size // env.world_size
    sampler = DistributedSampler(range(num_samples), env.world_size, env.rank, shuffle=True, seed=cfg.train.seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + per_rank] for i in range(0, len(order), per_rank)]


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with the backbone at ``lr * backbone_lr_mult``; frozen parameters left out."""
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [
        dict(params=backbone, lr=cfg.train.lr * cfg.train.backbone_lr_mult, base_lr=cfg.train.lr * cfg.train.backbone_lr_mult),
        dict(params=rest, lr=cfg.train.lr, base_lr=cfg.train.lr),
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


@dataclass
class Start:
    """A run's starting point: the network, its optimiser and loss scaler, the precision it trains in,
    where the run is (a fresh state, or the one ``last.pt`` held) and the weights' moving average
    (``train.ema``; ``None`` when off)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    state: RunState
    resumed_total: int = 0  # the run length a resumed run was started with (0: not recorded, or a new run)
    ema: ModelEMA | None = None


class Trainer:
    """Trains ``start.model`` on ``dataset`` from ``start.state`` on, calling ``hooks`` at fixed points.

    ``start.model`` is the plain network (:class:`csrseg.models.CSRSeg`); under DDP the trainer wraps
    it. ``run_dir``: where the hooks write; ``resume_cmd``: the command that continues this run, for
    messages that tell the user how to go on.
    """

    def __init__(self, cfg: Config, start: Start, *, dataset: CocoInstances, env: du.DistEnv, run_dir: Path,
                 hooks: list[Hook], resume_cmd: str = "") -> None:
        self.cfg, self.model, self.optimizer, self.scaler = cfg, start.model, start.optimizer, start.scaler
        self.precision, self.state, self.ema = start.precision, start.state, start.ema
        self.dataset, self.env, self.run_dir, self.resume_cmd = dataset, env, Path(run_dir), resume_cmd
        self.hooks = list(hooks)
        model, state = self.model, self.state
        self.ddp_model: nn.Module = model
        if env.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[env.device] if env.device.type == "cuda" else None)
        self.iters_per_epoch = len(epoch_batches(len(dataset), 0, cfg, env))
        state.total_iters = self.iters_per_epoch * cfg.train.epochs
        if cfg.train.max_iters:
            state.total_iters = min(state.total_iters, cfg.train.max_iters)
        # a resumed run goes on as long as the (possibly extended) schedule has iterations left, one
        # stopped early where its patience was raised, and one its time budget ended where the budget was
        state.finished = state.iteration >= state.total_iters or state.epoch >= cfg.train.epochs \
            or out_of_patience(state, cfg.train.patience) \
            or (cfg.train.time_hours > 0 and state.seconds >= cfg.train.time_hours * 3600)
        self.losses: dict[str, float] = {}  # the last step's loss terms
        self.skipped = False  # the last step's loss was not finite: no update was made
        self.batch_ids: list[int] = []  # image ids of the last step's batch

    @property
    def eval_model(self) -> nn.Module:
        """What the run evaluates and saves as its model: the weights' moving average where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)

    def batches(self) -> DataLoader:
        """What is left of the current epoch, as a loader of collated batches."""
        self.dataset.set_epoch(self.state.epoch)
        order = epoch_batches(len(self.dataset), self.state.epoch, self.cfg, self.env)[self.state.step_in_epoch:]
        return DataLoader(self.dataset, batch_sampler=order, num_workers=self.cfg.train.workers,
                          collate_fn=partial(collate, size_divisor=self.cfg.input.size_divisor),
                          pin_memory=self.env.device.type == "cuda", worker_init_fn=preempt.ignore_in_worker)

    def train(self) -> RunState:
        """The loop; returns the final state. Hooks raise to stop it (preemption, non-finite losses)."""
        try:
            self._call("before_train")
            while not self.state.finished:
                self.model.train()
                with preempt.worker_batches(self.batches()) as batches:
                    for images, targets in batches:
                        self._call("before_step")
                        self.losses = self.step(images, targets)
                        self._call("after_step")
                        if self.state.iteration >= self.state.total_iters:
                            break
                self._end_epoch()
                self._call("after_epoch")
            self._call("after_train")
        except BaseException as error:
            for hook in self.hooks:
                try:
                    if hasattr(hook, "after_failure"):  # a hook need not derive from Hook
                        hook.after_failure(self, error)
                except Exception as exc:  # the first error is the one to report
                    logger.warning("warning: %s could not close after the failure: %s", type(hook).__name__, exc)
            raise
        return self.state

    def _end_epoch(self) -> None:
        state = self.state
        if state.step_in_epoch >= self.iters_per_epoch:
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
        state.finished = state.iteration >= state.total_iters or state.epoch >= self.cfg.train.epochs

    def step(self, images: torch.Tensor, targets: list[dict]) -> dict[str, float]:
        """One optimisation step on a collated batch; returns its loss terms as floats.

        A non-finite loss (on any process) makes no update and sets :attr:`skipped`.
        """
        device = self.env.device
        images = images.to(device, non_blocking=True)
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = [t["labels"].to(device, non_blocking=True) for t in targets]  # pinned on CUDA
        masks = [t["masks"].to(device, non_blocking=True) for t in targets]
        self.batch_ids = [t["image_id"] for t in targets]
        with self.precision.autocast(device):
            outputs = self.ddp_model(images)
        losses = self.model.loss(outputs, labels, masks)
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped = not _all_finite(losses["loss"])
        if not self.skipped:
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.unscale_(self.optimizer)
            self._call("after_backward")
            if self.cfg.train.clip_grad > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.state.iteration += 1
        self.state.step_in_epoch += 1
        # one copy off the device for all the logged values (on a GPU each copy waits for the step)
        return dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist()))

    def checkpoint_state(self) -> dict[str, Any]:
        """What ``last.pt`` holds besides the run's identity: weights, optimiser, scaler, state, RNG."""
        ema = dict(ema=self.ema.state_dict(), ema_updates=self.ema.updates) if self.ema is not None else {}
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scaler=self.scaler.state_dict(), rng=dict(torch=torch.get_rng_state()), precision=self.precision.name,
                    **ema, **self.state.state_dict())


def _all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (all skip together, or none does)."""
    flag = torch.tensor([1.0 if math.isfinite(float(loss.detach())) else 0.0], device=loss.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)
