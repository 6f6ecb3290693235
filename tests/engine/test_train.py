"""Training end to end: checkpoints, log, plot, resume, DDP (gloo, 2 processes)."""

import math
import os
import subprocess
import sys

import pytest
import torch

from csrseg.config import ConfigError, load_config, merge, parse_overrides, save_config
from csrseg.engine.checkpoint import load_checkpoint
from csrseg.engine.schedule import lr_factor
from csrseg.api import train
from benchmarks.loopback import free_port
from tests.conftest import SaveGradients, tiny_config

KNET_TINY = ["model.head.type=knet", "model.head.num_proposals=20", "model.head.ffn_channels=64",
             "model.head.num_groups=8"]


def _weights_close(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=atol, rtol=1e-4, msg=k)


def test_schedule_warms_up_then_steps():
    cfg = tiny_config(warmup_iters=10, warmup_ratio=0.001, milestones=(2, 3), lr_gamma=0.1).train
    assert lr_factor(0, 0, cfg) == pytest.approx(0.001)
    assert lr_factor(5, 0, cfg) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(10, 1, cfg) == 1.0
    assert lr_factor(100, 2, cfg) == pytest.approx(0.1)
    assert lr_factor(100, 3, cfg) == pytest.approx(0.01)


def test_smooth_schedules_decay_from_the_peak_to_lr_gamma_over_the_run():
    for schedule in ("cosine", "linear"):
        cfg = tiny_config(warmup_iters=10, warmup_ratio=0.001, lr_gamma=0.01, schedule=schedule,
                          milestones=(1,)).train
        factors = [lr_factor(i, i // 50, cfg, total_iters=111) for i in range(111)]
        assert factors[0] == pytest.approx(0.001)  # warm-up as with steps
        assert factors[10] == pytest.approx(1.0)  # the peak where warm-up ends; milestone 1 ignored
        assert factors[-1] == pytest.approx(0.01)  # lr_gamma at the last iteration
        after = factors[10:]
        assert all(b < a for a, b in zip(after, after[1:]))  # falls at every iteration
    linear = tiny_config(warmup_iters=0, lr_gamma=0.0, schedule="linear").train
    cosine = tiny_config(warmup_iters=0, lr_gamma=0.0, schedule="cosine").train
    assert lr_factor(50, 0, linear, 101) == pytest.approx(0.5)
    assert lr_factor(25, 0, cosine, 101) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_an_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="train.schedule must be one of step, cosine, linear, got 'poly'"):
        load_config("demo", ["train.schedule=poly"])


def test_training_writes_a_complete_run_folder(synth_root, tmp_path):
    cfg = tiny_config(epochs=2, batch_size=4, warmup_iters=2, eval_interval=1)
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, log_interval=1)
    assert result.iterations == 6  # 12 images / batch 4 x 2 epochs
    for name in ("config.yaml", "log.jsonl", "last.pt", "best.pt", "results.png", "val_results.json"):
        assert (tmp_path / "run" / name).is_file(), name
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["finished"] and last["iteration"] == 6 and last["classes"] == ["circle", "rectangle", "triangle", "star"]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert set(best["metrics"]) >= {"AP", "AP50", "AP75", "APS", "APM", "APL"}
    rows = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert sum('"type": "train"' in r for r in rows) == 6 and sum('"type": "eval"' in r for r in rows) == 2


@pytest.mark.parametrize("head", ["solov2", "knet"])
def test_resume_of_a_finished_run_changes_nothing(synth_root, tmp_path, head):
    cfg = tiny_config(epochs=1, batch_size=4, warmup_iters=2)
    if head == "knet":
        cfg = merge(cfg, parse_overrides(KNET_TINY))
    train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False)
    before = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    result = train(synth_root, config=cfg, out=tmp_path / "run", resume=True, device="cpu", progress=False)
    assert result.iterations == 3
    _weights_close(before, load_checkpoint(tmp_path / "run" / "last.pt")["model"], atol=0)


DDP_CHILD = """
import sys
from pathlib import Path

from csrseg.api import train
from tests.conftest import SaveGradients

data, cfg_path, out, *overrides = sys.argv[1:]
train(data, config=cfg_path, out=out, overrides=overrides, device="cpu", val_split=None, progress=False,
      hooks=[SaveGradients(Path(out) / "grads")])
"""


@pytest.mark.numerics
@pytest.mark.parametrize("head", ["solov2", "knet"])
def test_ddp_averages_to_the_one_process_gradient(synth_root, tmp_path, head):
    """What DDP promises: the gradient it averages over two processes' half-batches is the gradient of
    one process on the whole batch (our losses are normalised by global counts for that). Held in
    fp32, forced, on the first step (same weights on both sides): 1e-4 of the gradient's scale, 100x
    what fp32 sums in another order were measured to differ by (1e-6). Later steps and the weights are
    no measure of it: AdamW's first step moves every weight by lr x the sign of its gradient, so a
    near-zero gradient that differs in its last bits (another CPU's reduction order) flips a whole
    lr, and the second step's gradients then differ by 1e-3 of their norm (measured). The two
    replicas must stay bit-identical through both steps."""
    # frozen BN: with trainable BN each process would normalise by its own half-batch statistics
    cfg = tiny_config(epochs=1, batch_size=4, warmup_iters=1, max_iters=2, lr=1e-3)
    cfg_path = tmp_path / "tiny.yaml"
    save_config(cfg, cfg_path)
    (tmp_path / "ddp_child.py").write_text(DDP_CHILD)
    overrides = ["model.backbone.norm=frozen_bn", "train.precision=fp32"] + (KNET_TINY if head == "knet" else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(tmp_path / "ddp_child.py"), str(synth_root), str(cfg_path), str(tmp_path / "ddp"), *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert len(ddp["rank_fingerprints"]) == 2 and len(set(ddp["rank_fingerprints"])) == 1

    train(synth_root, config=str(cfg_path), out=tmp_path / "one", overrides=overrides, device="cpu", progress=False, val_split=None,
          hooks=[SaveGradients(tmp_path / "one" / "grads")])
    assert load_checkpoint(tmp_path / "one" / "last.pt")["iteration"] == ddp["iteration"] == 2
    one = torch.load(tmp_path / "one" / "grads" / "step0_rank0.pt")
    ranks = [torch.load(tmp_path / "ddp" / "grads" / f"step0_rank{r}.pt") for r in (0, 1)]
    assert one.keys() == ranks[0].keys() == ranks[1].keys() and len(one) > 10
    scale = max(g.abs().max().item() for g in one.values())
    for name, grad in one.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0, msg=name)  # all-reduced
        torch.testing.assert_close(ranks[0][name], grad, rtol=1e-4, atol=1e-4 * scale, msg=name)
    assert all((tmp_path / "ddp" / "grads" / f"step1_rank{r}.pt").is_file() for r in (0, 1))


def test_a_train_split_without_annotations_is_refused_before_the_run_folder_is_made(synth_root, tmp_path, caplog):
    import json
    import logging

    from csrseg.data.coco import DatasetError

    ann = json.loads((synth_root / "annotations" / "instances_train.json").read_text())
    empty = tmp_path / "data"
    (empty / "annotations").mkdir(parents=True)
    (empty / "train").symlink_to(synth_root / "train")
    (empty / "val").symlink_to(synth_root / "train")  # val: the train images, annotated or not
    (empty / "annotations" / "instances_train.json").write_text(json.dumps(dict(ann, annotations=[])))
    (empty / "annotations" / "instances_val.json").write_text(json.dumps(ann))
    with pytest.raises(DatasetError, match="instances_train.json: none of its 12 images has a usable annotation"):
        train(empty, config=tiny_config(), out=tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()

    # the other way round: trains, and says the val AP means nothing
    (empty / "annotations" / "instances_train.json").write_text(json.dumps(ann))
    (empty / "annotations" / "instances_val.json").write_text(json.dumps(dict(ann, annotations=[])))
    with caplog.at_level(logging.WARNING, logger="csrseg"):
        train(empty, config=tiny_config(max_iters=1), out=tmp_path / "run", device="cpu", progress=False)
    assert "none of its 12 images has an annotation (not crowd)" in caplog.text and "its AP says nothing" in caplog.text


def test_extending_a_cosine_run_on_resume_says_how_the_lr_moves(synth_root, tmp_path, caplog):
    import logging

    cfg = tiny_config(epochs=1, batch_size=4, warmup_iters=0, schedule="cosine", lr_gamma=0.01)
    train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, val_split=None)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["total_iters"] == 3
    longer = tiny_config(epochs=2, batch_size=4, warmup_iters=0, schedule="cosine", lr_gamma=0.01)
    with caplog.at_level(logging.WARNING, logger="csrseg"):
        train(synth_root, out=tmp_path / "run", resume=True, overrides=["train.epochs=2"], device="cpu", progress=False,
              val_split=None)
    # at iteration 3 of the 3 first planned the factor was past the end (0.01); of 6 it is halfway back up
    expected = f"goes from {lr_factor(3, 1, cfg.train, 3):.3g} to {lr_factor(3, 1, longer.train, 6):.3g} of train.lr"
    assert "the cosine schedule now spans 6 iterations instead of 3" in caplog.text and expected in caplog.text
    assert lr_factor(3, 1, longer.train, 6) > 0.3


def test_after_the_first_evaluation_the_cost_of_the_others_is_said(synth_root, tmp_path, caplog):
    import logging

    from csrseg.evaluation.hook import evaluations_left

    assert evaluations_left(3, 18, 3) == 5  # the demo: after epoch 3, at 6, 9, 12, 15 and 18
    assert evaluations_left(4, 7, 3) == 2  # at 6, and at 7 where the run ends off the interval
    assert evaluations_left(18, 18, 3) == 0
    with caplog.at_level(logging.INFO, logger="csrseg"):
        train(synth_root, config=tiny_config(epochs=3, batch_size=4, eval_interval=1), out=tmp_path / "run", device="cpu",
              progress=False)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation took")]
    assert len(said) == 1 and said[0].endswith("min") and "the 2 still to come add about" in said[0]
