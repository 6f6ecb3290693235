"""The demo says what it will cost: its plan before training, a time estimate after 20 iterations."""

import logging
import math

import pytest

from csrseg.api import train
from csrseg.config import load_config
from csrseg.engine.hooks import ETA_AFTER
from csrseg.engine.trainer import Hook
from csrseg.runtime.precision import Precision, choose
from csrseg.research import demo
from tests.conftest import tiny_config


def test_plan_names_iterations_the_precision_and_why(monkeypatch):
    monkeypatch.setattr(demo, "cpu_description", lambda: "Test CPU, AVX2")
    measured = choose({"fp32": 1.0, "bf16": 1.4})
    text = demo.plan(load_config("demo"), 1000, "cpu", measured)
    # 800 train images at batch 8 = 100 iterations per epoch, 18 epochs
    assert "1000 synthetic images (800 train / 200 val)" in text and "1800 iterations at batch 8" in text
    assert "fp32 (auto: measured here, fp32 1 s, bf16 1.4 s per step)" in text and "Test CPU, AVX2" in text
    text = demo.plan(load_config("demo"), 100, "cpu", choose({"fp32": 1.0, "bf16": 0.5}))
    assert "bf16 autocast (auto: measured here, bf16 0.5 s, fp32 1 s per step)" in text
    assert "fp32 (as asked)" in demo.plan(load_config("demo"), 100, "cpu", Precision("fp32", "as asked"))


def test_training_estimates_its_remaining_time_after_the_first_iterations(synth_root, tmp_path, caplog):
    cfg = tiny_config(epochs=20, max_iters=2 * ETA_AFTER + 3, batch_size=2)
    with caplog.at_level(logging.INFO, logger="csrseg"):
        train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, val_split=None)
    estimates = [r.getMessage() for r in caplog.records if "training will take about" in r.getMessage()]
    assert len(estimates) == 1 and "(2 iterations left" in estimates[0]


class _Clock:
    """A clock the test moves: the short demo's hooks read time through it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tick(Hook):
    """Moves the clock by ``step`` seconds after every training step."""

    def __init__(self, clock: _Clock, step: float) -> None:
        self.clock, self.step = clock, step

    def after_step(self, trainer) -> None:
        self.clock.now += self.step


class _Record(Hook):
    """Records, before each step, the lr and the short side the dataset resizes to."""

    def __init__(self) -> None:
        self.rows = []

    def before_step(self, trainer) -> None:
        self.rows.append((trainer.optimizer.param_groups[-1]["lr"], trainer.dataset.transform.cfg.short_side))


def test_the_short_demo_trains_for_its_time_small_first_and_ends_when_it_is_spent(synth_root, tmp_path):
    clock = _Clock()
    budget = demo.TimeBudget(10.0, clock=clock)  # 10 s of training, each step takes 1 s on the test's clock
    size = demo.ProgressiveSize(budget, small_side=64, share=0.5)
    record = _Record()
    cfg = tiny_config(epochs=20, batch_size=2, warmup_iters=0, lr_gamma=0.01, lr=1e-3, eval_interval=1000)
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False,
                   hooks=[_Tick(clock, 1.0), budget, size, record])  # time passes during each step
    assert result.iterations == 10  # the run's own schedule had 120 iterations: the budget ended it
    assert result.metrics and (tmp_path / "run" / "last.pt").is_file()  # evaluated once, at the end
    lrs = [lr for lr, _ in record.rows]
    assert lrs[0] == pytest.approx(1e-3) and all(b < a for a, b in zip(lrs, lrs[1:]))  # cosine over the time
    assert lrs[-1] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.9))))
    sides = [side for _, side in record.rows]
    assert sides[:5] == [64] * 5 and sides[5:] == [128] * 5  # input 128: half the time at 64 px
    assert load_config(str(tmp_path / "run" / "config.yaml")).input.short_side == 128  # the model's own size kept


def test_the_small_input_scales_the_solov2_size_ranges_alike(synth_root, tmp_path):
    clock = _Clock()
    budget = demo.TimeBudget(4.0, clock=clock)
    seen = []

    class Ranges(Hook):
        def before_step(self, trainer) -> None:
            seen.append(trainer.model.head.criterion.head_cfg.scale_ranges)

    cfg = tiny_config(epochs=20, batch_size=2, warmup_iters=0, eval_interval=1000)
    train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, val_split=None,
          hooks=[_Tick(clock, 1.0), budget, demo.ProgressiveSize(budget, small_side=64, share=0.5), Ranges()])
    full = cfg.model.head.scale_ranges
    assert seen[0] == tuple((lo / 2, hi / 2) for lo, hi in full) and seen[-1] == full


def test_a_machine_that_runs_out_of_iterations_first_gets_the_whole_decay_and_both_sizes(synth_root, tmp_path):
    clock = _Clock()
    budget = demo.TimeBudget(1000.0, clock=clock)  # far more time than the 6 iterations take
    record = _Record()
    cfg = tiny_config(epochs=1, batch_size=2, warmup_iters=0, lr_gamma=0.01, lr=1e-3, eval_interval=1000)
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, val_split=None,
                   hooks=[_Tick(clock, 1.0), budget, demo.ProgressiveSize(budget, small_side=64, share=0.5), record])
    assert result.iterations == 6
    lrs = [lr for lr, _ in record.rows]
    assert lrs[-1] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 5 / 6))))  # by iterations
    assert [side for _, side in record.rows] == [64, 64, 64, 128, 128, 128]
