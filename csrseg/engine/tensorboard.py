"""TensorBoard scalars of a run, when the ``tensorboard`` package is installed (``pip install -e ".[tensorboard]"``).

The run log (``log.jsonl``) stays the record; this mirrors its rows so that
``tensorboard --logdir runs`` shows losses, learning rate and mask AP while training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from csrseg.engine.row_logger import scalars

logger = logging.getLogger("csrseg")


class TensorBoardLog:
    """Writes ``train`` rows (step = iteration) and ``eval`` rows (step = iteration) as scalars.

    A no-op when disabled (non-zero ranks) or when ``tensorboard`` cannot be imported.
    """

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package; it is optional
            return
        self.writer = SummaryWriter(str(log_dir))
        logger.info("TensorBoard: tensorboard --logdir %s", log_dir)

    def write(self, row: dict[str, Any]) -> None:
        found = scalars(row) if self.writer is not None else None
        if found is None:
            return
        step, values = found
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
