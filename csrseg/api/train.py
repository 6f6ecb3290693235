"""``csrseg.train``: the one implementation of training, for Python and for ``csrseg train``.

A run folder holds ``config.yaml``, ``dataset.json`` (the dataset's files, so that a resume needs
no ``--data``), ``log.jsonl`` (a row per logged iteration and per evaluation), ``last.pt`` (every
epoch, and every ``checkpoint_interval`` iterations), ``best.pt`` (best val mask AP),
``results.png`` (loss/AP plot) and ``val_results.json`` (COCO results of the last evaluation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from csrseg.config import Config, apply_overrides, load_config, save_config, to_dict
from csrseg.data.coco import DatasetError
from csrseg.data.sources import DatasetSources, resolve_dataset
from csrseg.data.splits import training_splits
from csrseg.engine import distributed as du
from csrseg.engine import preempt
from csrseg.engine.budget import TimeBudget
from csrseg.engine.hooks import RunLog, standard_hooks
from csrseg.engine.loggers import logger_hooks
from csrseg.outputs import REPLACED_DIR, TRAIN_OUTPUTS, check_outputs, default_run_dir, output_lock, set_aside_outputs
from csrseg.engine.schedule import lr_factor
from csrseg.engine.setup import prepare, with_num_classes
from csrseg.engine.trainer import Hook, Trainer
from csrseg.errors import CsrsegError
from csrseg.evaluation.hook import Evaluation, best_path

logger = logging.getLogger("csrseg")

DATASET_RECORD = "dataset.json"


@dataclass(frozen=True)
class RunOptions:
    """How a run starts and reports, besides its config, data and folder (:func:`train`'s arguments of
    the same names): what :func:`build_trainer` reads."""

    resuming: bool = False
    weights: str | Path | None = None
    strict: bool = True
    exist_ok: bool = False
    train_split: str = "train"
    val_split: str | None = "val"
    checkpoint_interval: int = 0
    log_interval: int = 10
    progress: bool = True
    hooks: tuple[Hook, ...] = ()


@dataclass
class TrainResult:
    run_dir: Path
    last: Path
    best: Path | None
    best_ap: float
    iterations: int
    metrics: dict[str, float] = field(default_factory=dict)


def train(data: str | Path | DatasetSources | None = None, *, config: str | Config | None = None,
          out: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), epochs: int | None = None,
          device: str | None = None, resume: bool | str | Path = False, weights: str | Path | None = None,
          strict: bool = True, train_split: str = "train", val_split: str | None = "val", checkpoint_interval: int = 0,
          log_interval: int = 10, exist_ok: bool = False, progress: bool = True, hooks: list[Hook] | tuple = (),
          layout: str | None = None, loggers: str | list[str] | tuple[str, ...] | None = None) -> TrainResult:
    """Train on ``data`` (a dataset folder or YAML in any layout :mod:`csrseg.data.sources` knows, or its
    :class:`DatasetSources`) and return the run folder, the ``last``/``best`` checkpoints and the final metrics.

    ``config``: a preset name, a YAML file or a :class:`Config` (default ``paper``); ``overrides``:
    ``key.sub=value`` strings; ``epochs`` shortens or lengthens the schedule. ``out``: the run folder
    (default ``runs/train/<config name>[N]``); an occupied one is refused unless ``exist_ok``
    (the run replaced waits in ``out/replaced/`` until this one finishes).

    ``resume``: a run folder (or ``True`` with ``out``) to continue from its ``last.pt``, with its own
    ``config.yaml`` (``overrides`` change single values, e.g. ``train.epochs`` to extend it; another
    config is refused) and its recorded dataset unless ``data`` points elsewhere.
    ``weights``: a checkpoint to start from (fine-tuning); ``strict=False`` keeps the initialisation
    of tensors that do not fit (another class count). ``hooks``: extra :class:`Hook` objects, run
    after the standard ones. ``layout``: which of several dataset layouts in one folder to read
    (:func:`~csrseg.data.sources.resolve_dataset`). SIGTERM/SIGINT stop after the current step with
    ``last.pt`` written. ``loggers``: ``tensorboard``, ``wandb``, ``mlflow`` (a list, or comma-separated),
    each fed the rows of ``log.jsonl`` (:mod:`csrseg.engine.loggers`); TensorBoard writes whenever installed.
    """
    hooks = [*hooks, *logger_hooks(loggers)]  # an unknown logger or a missing package: said before anything runs
    run_dir, cfg = run_folder_and_config(config, out, overrides, epochs, resume)
    sources = dataset_for(data, run_dir, bool(resume), train_split, val_split, layout)
    env = du.init_distributed(device)
    # one owner per run folder, taken before the output check: two runs started a moment apart
    # cannot both find the folder empty (under DDP, rank 0 holds it for all)
    with output_lock(run_dir, "csrseg train") if env.is_main else contextlib.nullcontext():
        options = RunOptions(resuming=bool(resume), weights=weights, strict=strict, exist_ok=exist_ok,
                             train_split=train_split, val_split=val_split, checkpoint_interval=checkpoint_interval,
                             log_interval=log_interval, progress=progress, hooks=tuple(hooks))
        trainer = build_trainer(cfg, sources, run_dir=run_dir, env=env, options=options)
        state = preempt.preemptible(trainer.train)()
    best = best_path(run_dir)
    return TrainResult(run_dir, run_dir / "last.pt", best if best.is_file() else None, state.best_ap, state.iteration,
                       state.metrics)


def build_trainer(cfg: Config, sources: DatasetSources, *, run_dir: Path, env: du.DistEnv,
                  options: RunOptions = RunOptions()) -> Trainer:
    """Everything a run starts from, in order: the output check, the data, the model (fresh, fine-tuned
    or resumed), the run folder (config, dataset record, log) and the hooks (the standard ones, the
    evaluation, a :class:`~csrseg.engine.budget.TimeBudget` with ``train.time_hours``, then
    ``options.hooks``)."""
    o = options
    resuming = o.resuming
    resume_cmd = f"csrseg train --resume {run_dir}"  # the run records its dataset: no --data needed
    replaced = [] if resuming else check_outputs(
        run_dir, TRAIN_OUTPUTS, o.exist_ok, f"continue it with `{resume_cmd}`, replace it with --exist-ok, or choose another --out")
    torch.manual_seed(cfg.train.seed)
    train_ds, val_ds = training_splits(sources, cfg.input, cfg.train.seed, o.train_split, o.val_split)
    if cfg.model.num_classes != len(train_ds.cat_ids):
        logger.info("num_classes set to %d from %s", len(train_ds.cat_ids), train_ds.index.path)
        cfg = with_num_classes(cfg, len(train_ds.cat_ids))
    for what, count in train_ds.index.warnings.items():
        logger.warning("%s: %d %s", train_ds.index.path, count, what)

    start = prepare(cfg, env, run_dir / "last.pt", resuming, o.weights, o.strict)
    logger.info("precision: %s", start.precision.describe())
    log = RunLog(run_dir, o.log_interval, env.is_main)
    if resuming:
        log.truncate_after(start.state.iteration, start.state.epoch)
    elif env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        set_aside = set_aside_outputs(replaced, run_dir / REPLACED_DIR)
        if set_aside:
            logger.info("the run replaced in %s is kept in %s until this one finishes", run_dir, set_aside)
        log.path.write_text("")
    if env.is_main:
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / DATASET_RECORD).write_text(json.dumps(sources.to_dict(), indent=1, ensure_ascii=False))
        log.write(dict(type="run", iter=start.state.iteration, precision=start.precision.name,
                       reason=start.precision.reason, **dict(start.precision.times)))

    identity = dict(config=to_dict(cfg), classes=train_ds.class_names, cat_ids=train_ds.cat_ids)
    saved = start.state.iteration if resuming else None
    hooks, checkpointer = standard_hooks(run_dir, identity, o.progress, log, o.checkpoint_interval, saved)
    if val_ds is not None:
        hooks.insert(hooks.index(checkpointer), Evaluation(val_ds, log, checkpointer, identity))
    if cfg.train.time_hours > 0:
        hooks.append(TimeBudget(cfg.train.time_hours * 3600))
    trainer = Trainer(cfg, start, dataset=train_ds, env=env, run_dir=run_dir, hooks=[*hooks, *o.hooks],
                      resume_cmd=resume_cmd)
    _warn_if_schedule_stretched(trainer, start.resumed_total)
    return trainer


def run_folder_and_config(config: str | Config | None, out: str | Path | None, overrides: list[str] | tuple[str, ...],
                          epochs: int | None, resume: bool | str | Path) -> tuple[Path, Config]:
    """The run folder and the config of a new or resumed run, by the resume rules (see :func:`train`)."""
    if resume:
        if resume is True:
            if out is None:
                raise CsrsegError("resume=True needs the run folder as out (or give resume=RUN_FOLDER)")
            run_dir = Path(out)
        else:
            run_dir = Path(resume)
            if out is not None and Path(out).resolve() != run_dir.resolve():
                raise CsrsegError(f"--out {out} with --resume {run_dir}: a resumed run continues in its own folder; "
                                  "drop --out")
        if run_dir.is_file():
            raise CsrsegError(f"--resume {run_dir}: a file; --resume takes the run folder ({run_dir.parent}), "
                              "whose last.pt and config.yaml it continues from")
        if not run_dir.is_dir():
            raise CsrsegError(f"--resume {run_dir}: run folder not found")
        cfg = _resumed_config(run_dir, config, overrides)
    else:
        cfg = config if isinstance(config, Config) else load_config(config or "paper")
        cfg = apply_overrides(cfg, overrides)
        run_dir = Path(out) if out else default_run_dir("train", cfg.name)
    if epochs is not None:
        cfg = apply_overrides(cfg, [f"train.epochs={epochs}"], where="epochs")
    return run_dir, cfg


def _resumed_config(run_dir: Path, config: str | Config | None, overrides: list[str] | tuple[str, ...]) -> Config:
    """A resumed run's own ``config.yaml`` with ``overrides``. Another config is refused, because a run
    silently going on with other settings is worse; a :class:`Config` equal to the run's own passes."""
    recorded = run_dir / "config.yaml"
    if not recorded.is_file():  # a run killed before it wrote its config: the one given, or the default
        if isinstance(config, Config):
            return apply_overrides(config, overrides)
        return load_config(config or "paper", overrides)
    cfg = load_config(str(recorded), overrides)
    if config is None or (isinstance(config, Config) and _same_run(config, load_config(str(recorded)))):
        return cfg
    shown = f"--config {config}" if isinstance(config, str) else "another config"
    raise CsrsegError(f"{shown} with --resume {run_dir}: a resumed run continues with its own {recorded}; drop "
                      "--config (--set KEY=VALUE changes single values, e.g. train.epochs to extend the run)")


def _same_run(given: Config, recorded: Config) -> bool:
    """Whether ``given`` is the recorded config but for the class count, which a run takes from its data."""
    return dataclasses.replace(given, model=dataclasses.replace(given.model, num_classes=recorded.model.num_classes)) == recorded


def dataset_for(data: str | Path | DatasetSources | None, run_dir: Path, resuming: bool, train_split: str,
                val_split: str | None, layout: str | None = None) -> DatasetSources:
    """The dataset of a run: ``data`` when given; on resume without it, the one the run recorded."""
    if isinstance(data, DatasetSources):
        return data
    if data is None and resuming:
        record = run_dir / DATASET_RECORD
        if not record.is_file():
            raise DatasetError(f"{run_dir}: no {DATASET_RECORD} (a run of an older csrseg): give --data, the dataset "
                               "it was trained on")
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{record}: not readable ({exc}); give --data") from None
        sources = DatasetSources.from_dict(recorded, str(record))
        logger.info("resuming on the dataset the run recorded in %s (--data points elsewhere)", record)
        return sources
    return resolve_dataset(data, train_split, val_split or "val", layout=layout)


def _warn_if_schedule_stretched(trainer: Trainer, resumed_total: int) -> None:
    """A smooth decay is stretched over a resumed run's new length: say how far the lr moves back up."""
    state, train_cfg = trainer.state, trainer.cfg.train
    if resumed_total and resumed_total != state.total_iters and train_cfg.schedule != "step" and not state.finished:
        logger.warning("warning: the %s schedule now spans %d iterations instead of %d: at iteration %d the lr "
                       "goes from %.3g to %.3g of train.lr", train_cfg.schedule, state.total_iters, resumed_total,
                       state.iteration, lr_factor(state.iteration, state.epoch, train_cfg, resumed_total),
                       lr_factor(state.iteration, state.epoch, train_cfg, state.total_iters))

