"""Live training logs: the plot is redrawn at every evaluation; TensorBoard gets the rows when installed."""

import sys
import types

from tests.conftest import tiny_config
from csrseg.api import train
from csrseg.engine import hooks as hooks_mod
from csrseg.engine.plots import read_log
from csrseg.engine.tensorboard import TensorBoardLog


class _FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is an optional extra)."""

    scalars: list = []

    def __init__(self, log_dir):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        _FakeWriter.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        pass


def test_plot_is_redrawn_at_every_evaluation_and_rows_reach_tensorboard(synth_root, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(hooks_mod, "plot_training", lambda log, out: drawn.append(len(read_log(log))))
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _FakeWriter.scalars = []
    cfg = tiny_config(epochs=2, batch_size=6, eval_interval=1)
    train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, log_interval=1)
    evals = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["type"] == "eval"]
    assert len(evals) == 2 and len(drawn) == 3  # after each evaluation, and once at the end
    assert drawn[0] < drawn[1]  # the first plot was drawn mid-run, from a shorter log
    tags = {tag for tag, _, _ in _FakeWriter.scalars}
    assert {"train/loss", "train/lr", "eval/AP", "eval/AP50"} <= tags


def test_tensorboard_is_silent_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    log = TensorBoardLog(tmp_path / "tb", enabled=True)
    log.write(dict(type="train", iter=1, loss=1.0))
    log.close()
    assert log.writer is None and not (tmp_path / "tb").exists()
