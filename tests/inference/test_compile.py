"""``--compile``: the network through torch.compile finds what the eager network finds; where it
cannot run (no C++ compiler, an exported model), one line says why before anything is loaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
def test_a_compiled_predictor_finds_what_the_eager_one_finds(tmp_path, synth_root, monkeypatch):
    # the compiled predictor points $TORCHINDUCTOR_CACHE_DIR at its own folder: set it to what it means
    # now (the same folder), so that monkeypatch puts back what was there, or nothing, afterwards
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    path = fake_checkpoint(tmp_path, cls_bias=0.0)
    eager = Predictor(path, device="cpu", score_thr=0.05)
    compiled = Predictor(path, device="cpu", score_thr=0.05, compiled=True)
    assert compiled.network is not compiled.model and eager.network is eager.model
    image = sorted((synth_root / "val").glob("*.png"))[0]
    ours = compiled.predict(image)
    assert ours, "the fake checkpoint scores candidates everywhere: an empty list would test nothing"
    # fused kernels round differently: scores to 1e-4, masks by IoU
    match_instances(ours, eager.predict(image), min_iou=0.98, score_tol=1e-4)


_PARITY = """
import sys, torch
from csrseg.inference.predictor import Predictor
from tests.conftest import match_instances
torch.backends.mkldnn.conv.fp32_precision = "ieee"
path, image = sys.argv[1], sys.argv[2]
ours = Predictor(path, device="cpu", score_thr=0.05, compiled=True).predict(image)
assert ours, "no instance from the compiled predictor"
match_instances(ours, Predictor(path, device="cpu", score_thr=0.05).predict(image), min_iou=0.98, score_tol=1e-4)
print("same", len(ours))
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile builds its CPU code with g++, not installed here")
def test_one_inductor_cache_serves_two_cpu_code_paths(tmp_path, synth_root):
    # Inductor's FX graph cache does not key frozen graphs on the vector ISA: a graph compiled with
    # the AVX2 variables and then loaded on the AVX-512 path gave NaN or heap corruption, until each
    # path got its own folder (isolate_compile_cache). Same checkpoint, same image, one cache folder.
    path = fake_checkpoint(tmp_path, cls_bias=0.0)
    image = sorted((synth_root / "val").glob("*.png"))[0]
    root = Path(__file__).resolve().parents[2]
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    avx2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    for extra in (avx2, {}, avx2):  # the second and third runs find the other path's graph in the cache
        env = {k: v for k, v in os.environ.items() if k not in avx2}
        done = subprocess.run([sys.executable, "-c", _PARITY, str(path), str(image)], cwd=root, capture_output=True,
                              text=True, timeout=300, env={**env, **cache, **extra})
        assert done.returncode == 0 and "same" in done.stdout, (extra, done.stderr[-2000:])


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
