"""The demo says what it will cost: its plan before training, a time estimate after 20 iterations."""

import logging

from csrseg.api import train
from csrseg.config import load_config
from csrseg.engine.hooks import ETA_AFTER
from csrseg.runtime.precision import Precision, choose
from csrseg.tools import demo
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
        train(synth_root, cfg, tmp_path / "run", device="cpu", progress=False, val_split=None)
    estimates = [r.getMessage() for r in caplog.records if "training will take about" in r.getMessage()]
    assert len(estimates) == 1 and "(2 iterations left" in estimates[0]
