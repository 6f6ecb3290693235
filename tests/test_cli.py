"""The command line: info, bad input as one line, and the demo end to end (quick)."""

import subprocess
import sys

import pytest

from csrseg.cli import main


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
        (["info", "--set", "model.neck.upsample=bicubic"], "neck.upsample='bicubic'"),
        (["predict", "x.png"], "either --weights"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrseg: error:") and message in err and "\n" not in err


def test_cli_runs_as_a_console_module():
    proc = subprocess.run([sys.executable, "-m", "csrseg.cli", "train", "--config", "demo", "--data", "/nowhere"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


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
