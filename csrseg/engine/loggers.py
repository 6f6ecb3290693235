"""Experiment loggers beside TensorBoard: Weights & Biases and MLflow, each an optional extra.

``--logger tensorboard,wandb,mlflow`` (``train(loggers=...)``): each named logger is a
:class:`~csrseg.engine.row_logger.RowLogger` hook (:mod:`csrseg.engine.wandb_log`,
:mod:`csrseg.engine.mlflow_log`) fed the rows of ``log.jsonl``. An unknown name, or one whose
package is missing, is one line before the run starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from csrseg.engine.mlflow_log import MlflowLog
from csrseg.engine.trainer import Hook
from csrseg.engine.wandb_log import WandbLog
from csrseg.errors import CsrsegError

#: logger name -> (the package it needs, the extra that installs it)
LOGGERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def parse_loggers(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` or ``["wandb", "mlflow"]`` -> the names, checked: an unknown name, or one whose
    package is not installed, is a :class:`CsrsegError` (before anything of the run is done)."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = names.split(",")
    chosen = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [name for name in chosen if name not in LOGGERS]
    if unknown:
        raise CsrsegError(f"--logger {unknown[0]}: unknown logger; choose from {', '.join(LOGGERS)} (comma-separated)")
    for name in chosen:
        package, extra = LOGGERS[name]
        if importlib.util.find_spec(package) is None:
            raise CsrsegError(f"--logger {name} needs the {package} package: pip install 'csrseg[{extra}]'")
    return chosen


def logger_hooks(names: str | Sequence[str] | None) -> list[Hook]:
    """The hooks of :func:`parse_loggers` ``(names)``. TensorBoard has none: the run log writes it
    whenever its package is installed (naming it only makes the package required)."""
    kinds = {"wandb": WandbLog, "mlflow": MlflowLog}
    return [kinds[name]() for name in parse_loggers(names) if name in kinds]


