"""The command line: info, bad input as one line, and the demo end to end (quick)."""

import json
import subprocess
import sys

import pytest

from csrseg.cli import main
from csrseg.config import load_config, save_config
from tests.conftest import one_line_error, tiny_config


def test_info_prints_parts_params_and_gflops(capsys):
    assert main(["info", "--config", "demo", "--height", "128", "--width", "128", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    for part in ("| total |", "| backbone |", "| neck |", "| head |", "GFLOPs at 128x128"):
        assert part in out
    assert "FusionNeck" in out and "SOLOv2Head" in out
    assert "| part | params (M) | trainable (M) |" in out


def test_info_counts_knets_trainable_parameters_apart_from_frozen_ones(capsys):
    assert main(["info", "--config", "knet", "--height", "64", "--width", "64", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "KNetHead" in out and "FPNSemanticNeck" in out
    total_row = next(line for line in out.splitlines() if line.startswith("| total |"))
    total, trainable = (float(v) for v in total_row.strip(" |").split("|")[1:])
    assert trainable == 37.26 and total > trainable  # stem and stage 1 frozen


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--config", "nope", "--data", "."], "unknown config 'nope'"),
        (["train", "--config", "demo", "--data", "/no/such/dir"], "/no/such/dir: dataset folder not found"),
        (["eval", "--weights", "/no/such.pt", "--data", "."], "/no/such.pt: checkpoint not found"),
        (["info", "--set", "model.neck.upsample=bicubic"], "model.neck.upsample must be one of d2s, nearest, got 'bicubic'"),
        (["predict", "x.png"], "one of --weights"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    one_line_error(capsys, message)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["predict", "x.png", "--weights", "w.pt", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["eval", "--weights", "w.pt", "--workers", "-1"], "argument --workers: must be at least 0, got -1"),
        (["benchmark", "--runs", "0"], "argument --runs: must be at least 1, got 0"),
        (["info", "--height", "0"], "argument --height: must be at least 1, got 0"),
        (["synth", "out", "--size", "8"], "argument --size: must be at least 32, got 8"),
        (["synth", "out", "--val-fraction", "1.5"], "argument --val-fraction: must be from 0 to 1, got 1.5"),
        (["predict", "x.png", "--weights", "w.pt", "--score-thr", "nan"], "argument --score-thr: must be from 0 to 1"),
        (["predict", "x.png", "--weights", "w.pt", "--device", "gpu"], "argument --device: 'gpu' is not a device"),
        (["predict", "x.png", "--weights", "w.pt", "--score-thr", "2"], "argument --score-thr: must be from 0 to 1, got 2"),
        (["eval", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["nosuchverb"], "argument verb: invalid choice: 'nosuchverb'"),
    ],
)
def test_impossible_option_values_are_one_line_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:  # as every error of csrseg: one line, status 2, no usage block
        main(argv)
    assert exit_info.value.code == 2
    one_line_error(capsys, message, "--help")


def test_cuda_without_a_gpu_is_refused_at_the_option(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit):
        main(["eval", "--weights", "w.pt", "--device", "cuda"])
    one_line_error(capsys, "argument --device: cuda: no CUDA GPU is usable here")


def test_a_refused_file_operation_is_one_line_naming_the_path(tmp_path, capsys):
    occupied = tmp_path / "notes.txt"
    occupied.write_text("keep me")
    assert main(["synth", str(occupied), "--images", "2", "--size", "32"]) == 2  # OUT is a file, not a folder
    one_line_error(capsys, str(occupied))
    assert occupied.read_text() == "keep me"


def test_an_unusable_opset_is_refused_before_the_weights_are_read(tmp_path, capsys):
    assert main(["export", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "missing.pt"), "--opset", "5"]) == 2
    assert "--opset 5: choose 17" in capsys.readouterr().err


def test_wrong_kinds_of_path_get_what_to_give_instead(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "ann.json").write_text("{}")
    cases = [
        (["train", "--config", "demo", "--data", ".", "--resume", str(run / "last.pt")], f"--resume takes the run folder ({run})"),
        (["train", "--config", "demo", "--data", str(tmp_path / "ann.json")], "ann.json: a file, not a dataset folder"),
        (["eval", "--weights", str(run), "--data", "."], f"{run}: a folder, not a checkpoint; did you mean {run / 'last.pt'}?"),
        # an exported model given to --weights is run by its runtime, told by the suffix: this one is junk
        (["predict", "x.png", "--weights", str(tmp_path / "m.onnx")], "m.onnx: not a loadable ONNX model"),
        (["export", str(run), "--weights", str(run / "last.pt")], f"{run}: a folder; export writes one file"),
        (["benchmark", "--sizes", "0x0"], "each side at least 32 pixels"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        one_line_error(capsys, message)


def test_synth_into_a_dataset_is_refused_and_exist_ok_replaces_it_whole(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["synth", str(out), "--images", "6", "--size", "32"]) == 0
    assert main(["synth", str(out), "--images", "3", "--size", "32"]) == 2
    assert "already holds annotations, train, val" in capsys.readouterr().err and len(list((out / "train").iterdir())) == 5
    assert main(["synth", str(out), "--images", "3", "--size", "32", "--exist-ok"]) == 0
    assert len(list((out / "train").iterdir())) == 2  # no image of the 6-image set left behind


def test_demo_with_a_bad_override_writes_nothing(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--set", "foo.bar=1"]) == 2
    assert "foo" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_cli_runs_as_a_console_module():
    proc = subprocess.run([sys.executable, "-m", "csrseg.cli", "train", "--config", "demo", "--data", "/nowhere"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.auto_precision
def test_quick_demo_writes_everything_it_announces(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "demo"
    for path in ("train/best.pt", "train/last.pt", "train/results.png", "train/log.jsonl", "data/annotations/instances_val.json"):
        assert (run / path).is_file(), path
    assert len(list((run / "overlays").glob("*.jpg"))) >= 2
    assert "| AP | AP50 |" in out and str(run / "overlays") in out
    # the reported AP is the final weights' (best.pt is chosen on this same val split)
    assert "mask AP of last.pt" in out and f"weights:      {run / 'train' / 'last.pt'}" in out


def test_outputs_that_could_not_be_written_are_refused_before_the_work(tmp_path, capsys):
    """benchmark's table, eval's results and export's file: checked before minutes of timing,
    inference or export; nothing there is replaced unasked."""
    table = tmp_path / "table.md"
    table.write_text("last week's figures")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is needed")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"a checkpoint")
    cases = [
        (["benchmark", "--sizes", "64x64", "--out", str(table)], f"{table}: already exists; pass --exist-ok"),
        (["benchmark", "--sizes", "64x64", "--out", str(blocker / "t.md")], f"{blocker} is a file, not a folder"),
        # the weights do not exist: the --out check must come first to be seen at all
        (["eval", "--weights", str(tmp_path / "missing.pt"), "--data", ".", "--out", str(blocker / "r.json")],
         f"{blocker} is a file, not a folder"),
        (["eval", "--weights", str(tmp_path / "missing.pt"), "--data", ".", "--out", str(tmp_path / "r.txt")],
         "name must end in .json"),
        (["export", str(run / "last.pt"), "--weights", str(run / "last.pt"), "--format", "safetensors", "--exist-ok"],
         "--format safetensors writes a .safetensors file"),
        (["export", str(tmp_path / "m.pt"), "--weights", str(run / "last.pt")], "--format onnx writes a .onnx file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        one_line_error(capsys, message)
    assert table.read_text() == "last week's figures" and (run / "last.pt").read_bytes() == b"a checkpoint"


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config("demo"), run / "config.yaml")
    (tmp_path / "m.onnx").write_bytes(b"x")
    cases = [
        (["train", "--resume", str(run), "--config", "paper", "--data", "."], "continues with its own"),
        (["predict", "x.png", "--onnx", str(tmp_path / "m.onnx"), "--precision", "bf16"], "--precision bf16: an ONNX model runs as it was exported"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        one_line_error(capsys, message)


def test_running_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(monkeypatch, capsys):
    from csrseg.cli import commands
    from csrseg.cli import errors as cli

    cpu = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
           "allocate 160000000000 bytes. Error code 12 (Cannot allocate memory)")
    cuda = "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 79.1 GiB"
    assert "149.0 GiB" in cli.out_of_memory_text(RuntimeError(cpu))
    assert "2.5 GiB" in cli.out_of_memory_text(RuntimeError(cuda))
    assert "one tensor of 20.0 MiB" in cli.out_of_memory_text(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert cli.out_of_memory_text(RuntimeError("CUDA error: out of memory")).startswith("out of memory:")
    assert cli.out_of_memory_text(MemoryError()).startswith("out of memory:")
    assert cli.out_of_memory_text(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None

    def allocate(args):
        raise RuntimeError(cpu)

    monkeypatch.setattr(commands, "cmd_info", allocate)
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrseg: error: out of memory") and "batch_size" in err and "\n" not in err

    def bug(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(commands, "cmd_info", bug)
    with pytest.raises(RuntimeError, match="mat1"):  # a bug keeps its traceback
        main(["info"])


def test_resume_takes_the_dataset_the_run_recorded(synth_root, tmp_path, capsys, caplog):
    """``csrseg train --resume RUN`` as the README writes it: no --data (the run recorded its own)."""
    import logging

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, batch_size=4, max_iters=1), cfg_path)
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg_path), "--data", str(synth_root), "--out", str(run), "--device", "cpu",
                 "--no-val"]) == 0
    recorded = json.loads((run / "dataset.json").read_text())
    assert recorded["layout"] == "root" and recorded["splits"]["train"]["images"] == str((synth_root / "train").resolve())
    with caplog.at_level(logging.INFO, logger="csrseg"):
        assert main(["train", "--resume", str(run), "--set", "train.max_iters=2", "--device", "cpu", "--no-val"]) == 0
    assert "resuming on the dataset the run recorded" in caplog.text
    from csrseg.engine.checkpoint import load_checkpoint

    assert load_checkpoint(run / "last.pt")["iteration"] == 2
