"""``--compile``: the network through torch.compile finds what the eager network finds; where it
cannot run (no C++ compiler, an exported model), one line says why before anything is loaded."""

from __future__ import annotations

import shutil

import pytest
import torch

from csrseg.cli import main
from csrseg.inference.predictor import Predictor
from tests.conftest import fake_checkpoint, match_instances, one_line_error


@pytest.fixture(autouse=True)
def _ieee_fp32():
    """Both sides in IEEE float32, so that the comparison holds on every CPU (oneDNN may otherwise
    run fp32 convolutions in a reduced precision where the CPU has one)."""
    before = torch.backends.mkldnn.conv.fp32_precision
    torch.backends.mkldnn.conv.fp32_precision = "ieee"
    yield
    torch.backends.mkldnn.conv.fp32_precision = before


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile builds its CPU code with g++, not installed here")
def test_a_compiled_predictor_finds_what_the_eager_one_finds(tmp_path, synth_root):
    path = fake_checkpoint(tmp_path, cls_bias=0.0)
    eager = Predictor(path, device="cpu", score_thr=0.05)
    compiled = Predictor(path, device="cpu", score_thr=0.05, compiled=True)
    assert compiled.network is not compiled.model and eager.network is eager.model
    image = sorted((synth_root / "val").glob("*.png"))[0]
    ours = compiled.predict(image)
    assert ours, "the fake checkpoint scores candidates everywhere: an empty list would test nothing"
    # fused kernels round differently: scores to 1e-4, masks by IoU
    match_instances(ours, eager.predict(image), min_iou=0.98, score_tol=1e-4)


def test_compile_without_a_compiler_is_one_line_before_loading(tmp_path, synth_root, monkeypatch, capsys):
    image = sorted((synth_root / "val").glob("*.png"))[0]
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    missing = tmp_path / "never-read.pt"  # not there: the compiler is checked first
    assert main(["predict", str(image), "--weights", str(missing), "--compile", "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "--compile", "no-such-compiler-here", "g++")


def test_compile_of_an_exported_model_is_refused_in_one_line(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    assert main(["eval", "--onnx", str(model), "--data", str(tmp_path), "--compile"]) == 2
    one_line_error(capsys, "--compile", "exported model")
