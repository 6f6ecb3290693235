"""Weights & Biases as a run logger (``pip install 'csrseg[wandb]'``, ``--logger wandb``).

The project is ``$WANDB_PROJECT`` (default ``csrseg``), the run named after the run folder, the
config logged whole; W&B's files go to ``$WANDB_DIR`` or else the run folder (``<run>/wandb/``).
``WANDB_MODE=offline`` keeps everything on disk, for ``wandb sync`` later.
"""

from __future__ import annotations

import os

from csrseg.config import to_dict
from csrseg.engine.row_logger import RowLogger
from csrseg.engine.trainer import Trainer


class WandbLog(RowLogger):
    """Scalars ``<type>/<key>`` against the metric ``iter`` (W&B's own step only ever grows, so a resumed
    run that logs an iteration again is still taken)."""

    name = "wandb"

    def start(self, trainer: Trainer, run_id: str | None) -> str:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "csrseg"), name=trainer.run_dir.name,
                              dir=os.environ.get("WANDB_DIR") or str(trainer.run_dir), config=to_dict(trainer.cfg),
                              id=run_id, resume="allow" if run_id else None, reinit="create_new")
        self.run.define_metric("iter")
        self.run.define_metric("*", step_metric="iter")
        return str(self.run.id)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"iter": step, **values})

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
