"""What every run logger beside TensorBoard is: a hook fed the run log's rows as scalars.

:class:`RowLogger`, before training, subscribes to the run's :class:`~csrseg.engine.hooks.RunLog`
and is then fed every row ``log.jsonl`` gets (``train`` rows, ``eval`` rows) as scalars named
``<type>/<key>`` at step ``iter`` (:func:`scalars`, what TensorBoard gets too). Only rank 0 logs.
A resumed run goes on in the same logger run: the ids are kept in ``<run>/loggers.json``. A logger
that fails while training (a server gone) is warned about once and dropped; the run goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from csrseg.engine.trainer import Hook, Trainer
from csrseg.errors import CsrsegError

logger = logging.getLogger("csrseg")

IDS_FILE = "loggers.json"


def scalars(row: dict[str, Any]) -> tuple[int, dict[str, float]] | None:
    """A log row -> (step, ``{"<type>/<key>": value}``) of its numbers; ``None`` for a row without ``iter``."""
    if "iter" not in row:
        return None
    kind = row.get("type")
    values = {f"{kind}/{key}": value for key, value in row.items()
              if key not in ("type", "iter", "epoch", "time") and isinstance(value, (int, float))}
    return int(row["iter"]), values


class RowLogger(Hook):
    """Base of the loggers: subscribes to the run log on rank 0, feeds :meth:`log` and ends at :meth:`finish`.

    Subclasses define ``name``, :meth:`start` (returns the run id to keep), :meth:`log` and :meth:`finish`.
    """

    name = ""

    def __init__(self) -> None:
        self.active, self.run_id = False, ""

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.env.is_main:
            return
        run_log = next((h for h in trainer.hooks if hasattr(h, "subscribe")), None)
        if run_log is None:
            raise CsrsegError(f"--logger {self.name}: the run has no run log to follow")
        resumed = trainer.state.iteration > 0
        ids_path = trainer.run_dir / IDS_FILE
        known = _read_ids(ids_path) if resumed else {}
        try:
            run_id = self.start(trainer, known.get(self.name))
        except CsrsegError:
            raise
        except Exception as exc:  # the library's own refusal (no API key, a store it cannot open): one line
            raise CsrsegError(f"--logger {self.name}: could not start a run: {exc}".splitlines()[0]) from None
        # a new run in a reused folder keeps none of the replaced run's ids: only those started now
        started = {h.name: h.run_id for h in trainer.hooks if isinstance(h, RowLogger) and h.active}
        self.run_id, self.active = run_id, True
        _write_ids(ids_path, known | started | {self.name: run_id})
        run_log.subscribe(self)

    def write(self, row: dict[str, Any]) -> None:
        found = scalars(row) if self.active else None
        if not found or not found[1]:
            return
        try:
            self.log(*found)
        except Exception as exc:
            logger.warning("warning: %s stopped logging: %s", self.name, exc)
            self.active = False

    def after_train(self, trainer: Trainer) -> None:
        if self.active:
            self.active = False
            self.finish()

    def after_failure(self, trainer: Trainer, error: BaseException) -> None:
        # the tracker's run is marked as ended by a failure, not left running (a resume goes on in it)
        if self.active:
            self.active = False
            self.finish(failed=True)

    def start(self, trainer: Trainer, run_id: str | None) -> str:
        raise NotImplementedError

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, failed: bool = False) -> None:
        """End the tracker's run: finished, or (``failed``) ended by an error."""
        raise NotImplementedError


def _read_ids(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # a damaged record: the resumed run starts new logger runs


def _write_ids(path: Path, ids: dict[str, str]) -> None:
    path.write_text(json.dumps(ids, indent=1), encoding="utf-8")
