"""The trainer's standard hooks: lr schedule, non-finite guard, progress, logs, checkpoints, preemption.

Each is a small :class:`~csrseg.engine.trainer.Hook`; :func:`standard_hooks` lists them in the
order they run. Evaluation and ``best.pt`` are a hook of their own (:mod:`csrseg.evaluation.hook`),
because they run the model over the val split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from csrseg.engine import distributed as du
from csrseg.engine import preempt
from csrseg.engine.checkpoint import atomic_save
from csrseg.engine.plots import plot_training, read_log
from csrseg.outputs import REPLACED_DIR
from csrseg.engine.schedule import lr_factor
from csrseg.engine.tensorboard import TensorBoardLog
from csrseg.engine.trainer import Hook, NonFiniteLossError, Trainer

logger = logging.getLogger("csrseg")

#: the time estimate is taken over iterations ETA_AFTER+1 .. 2*ETA_AFTER (the first ones are slower)
ETA_AFTER = 10


class LRSchedule(Hook):
    """Sets every parameter group's lr to its base lr times :func:`csrseg.engine.schedule.lr_factor`."""

    def before_step(self, trainer: Trainer) -> None:
        state = trainer.state
        factor = lr_factor(state.iteration, state.epoch, trainer.cfg.train, state.total_iters)
        for group in trainer.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor


class NonFiniteGuard(Hook):
    """Names a skipped step (non-finite loss) and stops the run after ``train.max_bad_steps`` in a row."""

    def __init__(self, last_path: Path) -> None:
        self.last_path, self.bad_steps = last_path, 0

    def after_step(self, trainer: Trainer) -> None:
        if not trainer.skipped:
            self.bad_steps = 0
            return
        self.bad_steps += 1
        ids = trainer.batch_ids
        logger.warning("non-finite loss at iteration %d (image ids %s): step skipped", trainer.state.iteration, ids)
        if self.bad_steps >= trainer.cfg.train.max_bad_steps:
            raise NonFiniteLossError(f"training stopped: {self.bad_steps} consecutive non-finite losses (last image "
                                     f"ids {ids}); the last good checkpoint is {self.last_path}")


class EMAUpdate(Hook):
    """After each step that made an update (a skipped non-finite step made none), the weights' moving
    average (:class:`~csrseg.engine.ema.ModelEMA`, ``train.ema``) follows."""

    def after_step(self, trainer: Trainer) -> None:
        if trainer.ema is not None and not trainer.skipped:
            trainer.ema.update(trainer.model)


class Progress(Hook):
    """A progress bar per epoch (rank 0) and, after ``2 * ETA_AFTER`` steps, the time training will take."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.start, self.tic = enabled, None, 0, 0.0

    def before_train(self, trainer: Trainer) -> None:
        self.start = trainer.state.iteration

    def before_step(self, trainer: Trainer) -> None:
        if self.bar is None and self.enabled and trainer.env.is_main:
            from tqdm import tqdm

            left = trainer.iters_per_epoch - trainer.state.step_in_epoch
            self.bar = tqdm(total=left, desc=f"epoch {trainer.state.epoch + 1}/{trainer.cfg.train.epochs}",
                            dynamic_ncols=True, leave=True)

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        if self.bar is not None:
            lr = trainer.optimizer.param_groups[-1]["lr"]
            self.bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in trainer.losses.items()} | {"lr": f"{lr:.2e}"})
            self.bar.update(1)
        done = state.iteration - self.start
        if done == ETA_AFTER + 1:
            self.tic = time.perf_counter()
        elif done == 2 * ETA_AFTER + 1 and trainer.env.is_main:
            per_iter = (time.perf_counter() - self.tic) / ETA_AFTER
            left = state.total_iters - state.iteration
            logger.info("%.2f s/iteration: training will take about %s more (%d iterations left, evaluations not counted)",
                        per_iter, duration(per_iter * left), left)

    def after_epoch(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunLog(Hook):
    """``log.jsonl`` (a ``train`` row every ``interval`` steps and at the end; :meth:`write` for others),
    TensorBoard mirroring it, and ``results.png`` redrawn from it (rank 0 only)."""

    def __init__(self, run_dir: Path, interval: int, enabled: bool) -> None:
        self.path, self.interval, self.enabled = run_dir / "log.jsonl", interval, enabled
        self.plot_path = run_dir / "results.png"
        self.tensorboard = TensorBoardLog(run_dir / "tensorboard", enabled)
        self.subscribers: list[Any] = []  # the other loggers (csrseg.engine.row_logger), fed the same rows

    def subscribe(self, sink: Any) -> None:
        """From now on ``sink.write(row)`` gets every row this log writes."""
        self.subscribers.append(sink)

    def truncate_after(self, iteration: int, epoch: int) -> None:
        """Drop rows a killed run wrote after the checkpoint being resumed."""
        if not self.enabled:
            return
        keep = [r for r in read_log(self.path)
                if (r.get("type") in ("train", "run") and r.get("iter", 0) <= iteration)
                or (r.get("type") == "eval" and r.get("epoch", 0) <= epoch)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.tensorboard.write(row)
            for sink in self.subscribers:
                sink.write(row)

    def plot(self) -> None:
        """Redraw the loss/AP plot from the log; a plot must never cost the run."""
        if not self.enabled:
            return
        try:
            plot_training(self.path, self.plot_path)
        except Exception as exc:
            logger.warning("could not draw the training plot: %s", exc)

    def before_train(self, trainer: Trainer) -> None:
        self.tic = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.iteration % self.interval == 0 or state.iteration == state.total_iters:
            self.write(dict(type="train", iter=state.iteration, epoch=state.epoch + 1,
                            lr=trainer.optimizer.param_groups[-1]["lr"], time=round(time.perf_counter() - self.tic, 3),
                            **trainer.losses))

    def after_epoch(self, trainer: Trainer) -> None:
        self.tic = time.perf_counter()

    def after_train(self, trainer: Trainer) -> None:
        self.plot()
        self.tensorboard.close()


class Checkpointer(Hook):
    """``last.pt``: every ``interval`` steps (0: never), at the end of every epoch and of the run.

    ``identity``: what every checkpoint of the run carries besides the trainer's state (config,
    class names, category ids). Under DDP every process hashes its weights first, a collective:
    replicas that differ are reported, the hashes kept in ``rank_fingerprints``.
    """

    def __init__(self, last_path: Path, identity: dict[str, Any], interval: int = 0,
                 saved_iteration: int | None = None) -> None:
        self.last_path, self.identity, self.interval = last_path, identity, interval
        self.saved_iteration = saved_iteration  # of the last.pt on disk, for the message of a failed write

    def if_failed(self, trainer: Trainer) -> str:
        """What a failed checkpoint write leaves the user: the checkpoint still intact and how to go on."""
        if self.saved_iteration is None:
            return "no checkpoint of this run was written yet; free some space and start again"
        return (f"{self.last_path} (iteration {self.saved_iteration}) is intact; free some space and continue with "
                f"`{trainer.resume_cmd}`")

    def save(self, trainer: Trainer) -> None:
        fingerprints = du.all_gather_objects(weights_fingerprint(trainer.model)) if trainer.env.enabled else []
        if len(set(fingerprints)) > 1:
            logger.warning("model replicas differ between processes at iteration %d", trainer.state.iteration)
        if not trainer.env.is_main:
            return
        state = dict(trainer.checkpoint_state(), **self.identity, rank_fingerprints=fingerprints)
        atomic_save(state, self.last_path, if_failed=self.if_failed(trainer))
        self.saved_iteration = trainer.state.iteration

    def after_step(self, trainer: Trainer) -> None:
        if self.interval and trainer.state.iteration % self.interval == 0:
            self.save(trainer)

    def after_epoch(self, trainer: Trainer) -> None:
        self.save(trainer)


class Preemption(Hook):
    """After each step (but the last), SIGTERM/SIGINT received on any process: ``last.pt`` at this
    iteration, then :class:`~csrseg.engine.preempt.TrainingInterrupted` (:mod:`csrseg.engine.preempt`)."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        signum = preempt.stop_requested(trainer.env.device) if state.iteration < state.total_iters else 0
        if signum:
            self.checkpointer.save(trainer)
            raise preempt.TrainingInterrupted(
                f"{preempt.signal_name(signum)}: training stopped after iteration {state.iteration}, "
                f"{self.checkpointer.last_path} written; continue with `{trainer.resume_cmd}`", signum)


class ReplacedRunCleanup(Hook):
    """Deletes ``RUN/replaced/`` (the run ``--exist-ok`` replaced) once this run has finished."""

    def after_train(self, trainer: Trainer) -> None:
        du.barrier()
        replaced = trainer.run_dir / REPLACED_DIR
        if trainer.env.is_main and replaced.is_dir():
            shutil.rmtree(replaced)


def standard_hooks(run_dir: Path, identity: dict[str, Any], progress: bool, log: RunLog,
                   checkpoint_interval: int = 0, saved_iteration: int | None = None) -> tuple[list[Hook], Checkpointer]:
    """The hooks every training run has, in their order, and its checkpointer. Evaluation comes between
    the log and the checkpointer (its metrics go into ``last.pt``): the caller inserts it there."""
    last = run_dir / "last.pt"
    checkpointer = Checkpointer(last, identity, checkpoint_interval, saved_iteration)
    hooks: list[Hook] = [LRSchedule(), NonFiniteGuard(last), EMAUpdate(), Progress(progress), log]
    return hooks + [checkpointer, Preemption(checkpointer), ReplacedRunCleanup()], checkpointer


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
