"""No run folder is overwritten by accident: train, predict, export, demo and ablate refuse an
occupied output unless told to resume (``--resume``) or replace (``--exist-ok``)."""

import json

import pytest

from csrseg.cli import main
from csrseg.config import save_config
from csrseg.engine.checkpoint import load_checkpoint
from csrseg.outputs import OutputExistsError, check_outputs
from csrseg.api import train
from tests.conftest import ablation, one_line_error, tiny_config
from tests.conftest import fake_checkpoint


def test_check_outputs_names_what_is_there_and_ignores_empty_files(tmp_path):
    (tmp_path / "log.jsonl").write_text("")  # a run that died before writing anything
    assert check_outputs(tmp_path, ["last.pt", "log.jsonl"]) == []
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"already holds last\.pt of another run"):
        check_outputs(tmp_path, ["last.pt", "log.jsonl"])
    assert check_outputs(tmp_path, ["last.pt"], exist_ok=True) == [tmp_path / "last.pt"]


def test_train_refuses_another_runs_folder_and_replaces_it_with_exist_ok(synth_root, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, batch_size=4, max_iters=1, warmup_iters=1), cfg_path)
    run = tmp_path / "run"
    train(synth_root, config=tiny_config(epochs=1, batch_size=4, max_iters=1, warmup_iters=1), out=run, device="cpu",
          progress=False, log_interval=1)
    first = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt", "log.jsonl")}

    argv = ["train", "--config", str(cfg_path), "--data", str(synth_root), "--out", str(run), "--device", "cpu",
            "--no-val", "--log-interval", "1", "--set", "train.seed=5"]
    assert main(argv) == 2
    one_line_error(capsys, str(run), "last.pt", "best.pt", "log.jsonl", "--resume", "--exist-ok")
    assert {name: (run / name).read_bytes() for name in first} == first  # nothing touched

    assert main([*argv, "--exist-ok"]) == 0
    assert load_checkpoint(run / "last.pt")["config"]["train"]["seed"] == 5
    assert not (run / "best.pt").exists()  # the replaced run's best.pt is not passed off as this run's
    assert not (run / "replaced").exists()  # the new run finished: the old one is gone, as asked


def test_a_replacing_run_that_fails_keeps_the_replaced_run(synth_root, tmp_path, monkeypatch):
    import csrseg.engine.trainer as trainer

    run = tmp_path / "run"
    cfg = tiny_config(epochs=1, batch_size=4, max_iters=1, warmup_iters=1)
    train(synth_root, config=cfg, out=run, device="cpu", progress=False)
    first = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")}

    def broken_loader(*args, **kwargs):  # a dataset that fails after the run folder was taken over
        raise OSError("disk went away")

    monkeypatch.setattr(trainer, "DataLoader", broken_loader)
    with pytest.raises(OSError, match="disk went away"):
        train(synth_root, config=cfg, out=run, device="cpu", progress=False, exist_ok=True)
    assert {name: (run / "replaced" / name).read_bytes() for name in first} == first


def test_predict_and_export_refuse_to_overwrite(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "pred"
    argv = ["predict", str(image), "--weights", str(weights), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    capsys.readouterr()
    before = (out / "predictions.json").read_bytes()
    assert main([*argv, "--score-thr", "0.9"]) == 2
    one_line_error(capsys, "predictions.json", "--exist-ok")
    assert (out / "predictions.json").read_bytes() == before
    assert main([*argv, "--score-thr", "0.9", "--exist-ok"]) == 0

    target = tmp_path / "w.safetensors"
    target.write_bytes(b"precious")
    assert main(["export", str(target), "--weights", str(weights), "--format", "safetensors"]) == 2
    one_line_error(capsys, "w.safetensors", "--exist-ok")
    assert target.read_bytes() == b"precious"
    assert main(["export", str(target), "--weights", str(weights), "--format", "safetensors", "--exist-ok"]) == 0
    assert target.read_bytes() != b"precious"


def test_demo_refuses_a_folder_holding_a_demo(tmp_path, capsys):
    (tmp_path / "demo" / "train").mkdir(parents=True)
    (tmp_path / "demo" / "train" / "best.pt").write_bytes(b"weights of a 13-minute run")
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 2
    one_line_error(capsys, "train/best.pt", "--exist-ok")
    assert not (tmp_path / "demo" / "data").exists()  # refused before doing anything


def test_ablate_refuses_runs_of_another_sweep_and_a_training_folder(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    foreign = tmp_path / "sweep" / "fpn_baseline" / "seed0"
    foreign.mkdir(parents=True)
    summary = dict(variant="FPN baseline", seed=0, metrics={"AP": 1.0}, run=dict(data="/other/data", config={}))
    (foreign / "summary.json").write_text(json.dumps(summary))
    (foreign / "last.pt").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"summary\.json, last\.pt of another run.*another config or dataset"):
        ablation(synth_root, 2, tmp_path / "sweep", base=str(cfg_path), seeds=1, device="cpu", progress=False)
    assert (foreign / "last.pt").read_bytes() == b"x"

    run = tmp_path / "a_training_run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="best.pt"):
        ablation(synth_root, 2, run, base=str(cfg_path), seeds=1, device="cpu", progress=False)


def test_check_output_file_refuses_what_could_not_be_written(tmp_path):
    from csrseg.outputs import check_output_file
    from csrseg.errors import CsrsegError

    assert check_output_file(tmp_path / "new" / "deeper" / "r.json", suffixes=(".json",)) == tmp_path / "new" / "deeper" / "r.json"
    with pytest.raises(CsrsegError, match="must end in .json"):
        check_output_file(tmp_path / "r.yaml", suffixes=(".json",))
    with pytest.raises(CsrsegError, match="a folder; give a file name"):
        check_output_file(tmp_path)
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output_file(tmp_path / "r.json")
    assert check_output_file(tmp_path / "r.json", exist_ok=True).read_text() == "{}"
