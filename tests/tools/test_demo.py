"""The demo says what it will cost: its plan before training, a time estimate after 20 iterations."""

import logging

import torch

from csrseg.tools import demo
from csrseg.config import load_config
from csrseg.engine.trainer import ETA_AFTER, train
from tests.conftest import tiny_config


def test_plan_names_iterations_and_why_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr("csrseg.engine.trainer.native_bf16", lambda: False)
    monkeypatch.setattr(demo, "cpu_description", lambda: "Test CPU, AVX2")
    text = demo.plan(load_config("demo"), 1000, "cpu")
    # 800 train images at batch 8 = 100 iterations per epoch, 18 epochs
    assert "1000 synthetic images (800 train / 200 val)" in text and "1800 iterations at batch 8" in text
    assert "fp32 (no native bf16 on this CPU" in text and "Test CPU, AVX2" in text


def test_plan_says_bf16_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr("csrseg.engine.trainer.native_bf16", lambda: True)
    assert "bf16 autocast (this CPU computes bf16 natively)" in demo.plan(load_config("demo"), 100, "cpu")
    assert "fp32 (train.amp=false)" in demo.plan(load_config("demo", ["train.amp=false"]), 100, "cpu")


def test_training_estimates_its_remaining_time_after_the_first_iterations(synth_root, tmp_path, caplog):
    cfg = tiny_config(epochs=20, max_iters=2 * ETA_AFTER + 3, batch_size=2)
    with caplog.at_level(logging.INFO, logger="csrseg"):
        train(cfg, synth_root, tmp_path / "run", device="cpu", progress=False, val_split=None)
    estimates = [r.getMessage() for r in caplog.records if "training will take about" in r.getMessage()]
    assert len(estimates) == 1 and "(2 iterations left" in estimates[0]


def test_cuda_autocasts_to_bf16_where_the_gpu_computes_it(monkeypatch):
    """K-Net's kernel update sums features over whole masks (past fp16's 65504 at 256 px): fp16 only
    on GPUs without bf16, where the trainer's loss scaler is on."""
    from csrseg.engine.trainer import amp_settings

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_settings(True, cuda) == (True, torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    assert "bf16 autocast" in demo.plan(load_config("demo"), 100, "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert amp_settings(True, cuda) == (True, torch.float16)
    assert amp_settings(False, cuda) == (False, torch.float32)
