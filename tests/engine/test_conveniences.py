"""What users of YOLO-seg and detectron2 expect of a trainer: a moving average of the weights
(``train.ema``), early stopping (``train.patience``) and a time budget (``train.time_hours``,
``csrseg train --time``), each resumable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import csrseg.evaluation.hook as eval_hook
from csrseg import train
from csrseg.cli import main
from csrseg.engine.checkpoint import load_checkpoint, load_trained_model
from csrseg.engine.ema import ModelEMA
from tests.conftest import exit_code, one_line_error, tiny_config


def test_the_average_moves_by_one_minus_its_decay_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, warmup=0)
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    expected = 0.9 * start["0.weight"] + 0.1 * model[0].weight
    torch.testing.assert_close(ema.module[0].weight, expected, atol=0, rtol=1e-6)
    assert int(ema.module[1].num_batches_tracked) == 7  # an integer buffer is the model's, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    ramped = ModelEMA(model, decay=0.9, warmup=10)
    assert ramped.current_decay() == 0.0  # the first update takes the weights as they are
    ramped.updates = 10
    assert ramped.current_decay() == pytest.approx(0.9 * (1 - torch.e ** -1))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_ema_evaluates_and_hands_out_the_average(synth_root, tmp_path):
    cfg = tiny_config(epochs=1, batch_size=4, warmup_iters=0, lr=1e-3, ema=0.9, ema_warmup=0)  # 3 iterations
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False)
    last, best = load_checkpoint(result.last), load_checkpoint(result.best)
    assert last["ema_updates"] == 3
    assert not _same(last["model"], last["ema"])  # the raw weights keep training; the average lags
    assert _same(best["model"], last["ema"])  # the one evaluation, at the end: of the average
    loaded = load_trained_model(result.last).model.state_dict()
    assert _same({k: v for k, v in loaded.items()}, last["ema"])  # predict/eval/export read the average


@pytest.mark.slow
@pytest.mark.numerics
def test_a_resumed_run_with_ema_ends_with_the_average_of_an_uninterrupted_one(synth_root, tmp_path):
    cfg = tiny_config(epochs=2, batch_size=4, warmup_iters=0, lr=1e-3, ema=0.8, ema_warmup=2)  # 6 iterations
    straight = train(synth_root, config=cfg, out=tmp_path / "straight", device="cpu", progress=False, val_split=None)
    first = tiny_config(epochs=1, batch_size=4, warmup_iters=0, lr=1e-3, ema=0.8, ema_warmup=2)
    train(synth_root, config=first, out=tmp_path / "split", device="cpu", progress=False, val_split=None)
    resumed = train(resume=tmp_path / "split", overrides=["train.epochs=2"], device="cpu", progress=False, val_split=None)
    a, b = load_checkpoint(straight.last), load_checkpoint(resumed.last)
    assert a["ema_updates"] == b["ema_updates"] == 6
    for key, value in a["ema"].items():  # fp32 on a CPU: the same steps, to float rounding
        torch.testing.assert_close(b["ema"][key].float(), value.float(), atol=1e-5, rtol=1e-4, msg=key)


def _scripted_ap(monkeypatch, aps: list[float]) -> list[int]:
    """Evaluation gives the ``aps`` in turn (no model is scored): the patience rule alone is tested."""
    calls: list[int] = []

    def fake(model, dataset, cfg, env, precision, progress=False):
        calls.append(1)
        ap = aps[len(calls) - 1]
        return dict(AP=ap, AP50=ap, AP75=ap), []

    monkeypatch.setattr(eval_hook, "evaluate_model", fake)
    return calls


def test_patience_stops_a_run_and_a_resume_with_more_patience_goes_on(synth_root, tmp_path, monkeypatch):
    calls = _scripted_ap(monkeypatch, [5.0, 6.0, 4.0, 3.0, 2.0, 1.0])
    cfg = tiny_config(epochs=6, batch_size=4, warmup_iters=0, eval_interval=1, patience=2)  # 3 iterations an epoch
    run = tmp_path / "run"
    result = train(synth_root, config=cfg, out=run, device="cpu", progress=False)
    # best at epoch 2 (6.0); epochs 3 and 4 do not beat it: stop after epoch 4
    assert (result.iterations, len(calls), result.best_ap) == (12, 4, 6.0)
    stopped = load_checkpoint(run / "last.pt")
    assert stopped["finished"] and stopped["evals_since_best"] == 2 and stopped["epoch"] == 4
    again = train(resume=run, device="cpu", progress=False)
    assert again.iterations == 12 and len(calls) == 4  # stopped stays stopped
    more = train(resume=run, overrides=["train.patience=3"], device="cpu", progress=False)
    assert more.iterations == 15 and len(calls) == 5  # one more epoch, whose evaluation (2.0) is the third without a best


def test_a_time_budget_ends_the_run_and_is_kept_for_a_resume(synth_root, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(epochs=3, batch_size=4, warmup_iters=0, time_hours=1e-9)  # spent at the first step
    result = train(synth_root, config=cfg, out=run, device="cpu", progress=False, val_split=None)
    assert result.iterations == 1
    last = load_checkpoint(run / "last.pt")
    assert last["finished"] and last["seconds"] > 0
    assert "time_hours: 1.0e-09" in (run / "config.yaml").read_text()
    # a resume of a run its budget ended trains nothing more and rewrites nothing
    before = (run / "last.pt").read_bytes()
    again = train(resume=run, device="cpu", progress=False)
    assert again.iterations == 1 and (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("args,said", [
    (["--time", "0"], "argument --time: must be above 0, got 0"),
    (["--time", "soon"], "argument --time: expected a number, got 'soon'"),
    (["--ema", "1.5"], "argument --ema: must be from 0 to 1, got 1.5"),
    (["--ema", "1"], "train.ema must be at least 0 and below 1, got 1.0"),
    (["--patience", "0"], "argument --patience: must be at least 1, got 0"),
])
def test_the_conveniences_bad_values_are_one_line(tmp_path, synth_root, capsys, args, said):
    out = tmp_path / "never"
    assert exit_code(["train", "--config", "demo", "--data", str(synth_root), "--out", str(out), *args]) == 2
    one_line_error(capsys, said)
    assert not out.exists()


def test_the_flags_set_the_settings(tmp_path, synth_root):
    run = tmp_path / "run"
    cfg_path = tmp_path / "tiny.yaml"
    from csrseg.config import save_config

    save_config(tiny_config(epochs=1, batch_size=4, max_iters=1, warmup_iters=0), cfg_path)
    assert main(["train", "--config", str(cfg_path), "--data", str(synth_root), "--out", str(run), "--device", "cpu",
                 "--no-val", "--ema", "--patience", "4", "--time", "2"]) == 0
    text = (run / "config.yaml").read_text()
    assert "ema: 0.9998" in text and "patience: 4" in text and "time_hours: 2.0" in text
    assert load_checkpoint(run / "last.pt")["ema_updates"] == 1


BUDGET_CHILD = """
import json
import sys
from types import SimpleNamespace

import torch

from csrseg.engine.budget import TimeBudget
from csrseg.engine.distributed import cleanup, init_distributed

env = init_distributed("cpu")
clock = iter([0.0, 50.0, 100.0] if env.rank == 0 else [0.0, 59.0, 101.0])  # rank 1 a step behind in time
budget = TimeBudget(100.0, clock=lambda: next(clock))
state = SimpleNamespace(seconds=0.0, total_iters=10, iteration=0)
trainer = SimpleNamespace(env=env, state=state)
budget.before_train(trainer)
seen = []
for step in (1, 2):
    state.iteration = step
    budget.after_step(trainer)
    seen.append([budget.progress(), state.total_iters])
print(json.dumps(seen))
cleanup()  # as the CLI leaves the group: a gloo group left open can abort rank 0 at exit
"""


def test_under_ddp_every_rank_spends_rank_zeros_time_and_stops_at_the_same_step(tmp_path):
    # rank 1's clock runs ahead: on its own it would take another lr and find the budget spent a step
    # before rank 0, which would then wait for it in the gradients' all-reduce
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "child.py").write_text(BUDGET_CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "--tee=1", "--log-dir", str(tmp_path / "logs"), str(tmp_path / "child.py")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = [json.loads(line.split("]:", 1)[-1]) for line in proc.stdout.splitlines() if "[[" in line]
    assert len(seen) == 2 and seen[0] == seen[1], proc.stdout  # the same progress and stop on both ranks
    assert seen[0] == [[0.5, 10], [1.0, 2]]  # rank 0's clock: half spent after step 1, all after step 2
