"""Nothing lost: SIGKILL at any moment, non-finite losses, and resumption to the same weights."""

import logging
import os
import signal
import subprocess
import sys

import pytest
import torch

from csrseg.config import save_config
from csrseg.engine.checkpoint import load_checkpoint
from csrseg.api import train
from csrseg.engine.trainer import NonFiniteLossError
from csrseg.models.model import CSRSeg
from tests.conftest import tiny_config, train_rows, wait_for


def _cfg():
    return tiny_config(epochs=2, batch_size=2, warmup_iters=2, lr=1e-3)  # 12 images -> 6 iterations an epoch


def _start(cfg_path, root, run_dir, resume=False):
    cmd = [sys.executable, "-m", "csrseg.cli", "train", "--data", str(root), "--device", "cpu",
           "--checkpoint-interval", "1", "--log-interval", "1"]
    cmd += ["--resume", str(run_dir)] if resume else ["--config", str(cfg_path), "--out", str(run_dir)]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.numerics
def test_sigkill_mid_epoch_and_mid_checkpoint_then_resume_reaches_the_same_weights(synth_root, tmp_path):
    cfg = _cfg()
    cfg_path = tmp_path / "tiny.yaml"
    save_config(cfg, cfg_path)
    run_dir = tmp_path / "run"

    # 1) killed in the middle of the first epoch
    proc = _start(cfg_path, synth_root, run_dir)
    assert wait_for(lambda: train_rows(run_dir) >= 3, proc), proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run_dir / "last.pt")
    assert 0 < killed_at["iteration"] < 6 and not killed_at["finished"]

    # 2) resumed, then killed while a checkpoint is being written (its temp file exists)
    proc = _start(cfg_path, synth_root, run_dir, resume=True)
    caught = wait_for(lambda: any(p.name.startswith(".last.pt.") for p in run_dir.iterdir()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert caught, "the checkpoint write was never caught in progress"
    survivor = load_checkpoint(run_dir / "last.pt")  # the previous complete checkpoint
    assert survivor["iteration"] >= killed_at["iteration"]

    # 3) resumed to the end
    proc = _start(cfg_path, synth_root, run_dir, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert last["finished"] and last["iteration"] == 12 and "AP" in best["metrics"]

    # 4) the same as a run never interrupted
    reference = train(synth_root, config=cfg, out=tmp_path / "straight", device="cpu", progress=False)
    assert reference.iterations == 12
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    for key, value in straight.items():
        torch.testing.assert_close(last["model"][key].float(), value.float(), atol=1e-5, rtol=1e-4, msg=key)


def _nan_on(calls):
    original = CSRSeg.loss
    counter = {"n": 0}

    def loss(self, *args, **kwargs):
        counter["n"] += 1
        losses = original(self, *args, **kwargs)
        if counter["n"] in calls:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    return loss


def test_a_nonfinite_step_is_skipped_with_the_image_ids(synth_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(CSRSeg, "loss", _nan_on({2}))
    with caplog.at_level(logging.WARNING, logger="csrseg"):
        result = train(synth_root, config=tiny_config(epochs=1, batch_size=4), out=tmp_path / "run", device="cpu", progress=False, val_split=None)
    assert result.iterations == 3
    messages = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(messages) == 1 and "iteration 2" in messages[0] and "image ids [" in messages[0]
    state = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.isfinite(v.float()).all() for v in state.values())


def test_consecutive_nonfinite_losses_stop_training_and_keep_the_last_checkpoint(synth_root, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(synth_root, config=tiny_config(epochs=1, batch_size=4), out=run_dir, device="cpu", progress=False, val_split=None)
    good = (run_dir / "last.pt").read_bytes()
    monkeypatch.setattr(CSRSeg, "loss", _nan_on(set(range(1, 100))))
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses.*last.pt"):
        train(synth_root, out=run_dir, resume=True, overrides=["train.epochs=3", "train.max_bad_steps=3"], device="cpu",
              progress=False, val_split=None)
    assert (run_dir / "last.pt").read_bytes() == good
