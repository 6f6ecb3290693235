"""The CPU paths this machine does not take by itself, taken on purpose.

Most users' CPUs have AVX2 but neither AVX-512 nor native bf16. On a machine that has more,
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` make PyTorch,
oneDNN and MKL take the AVX2 kernels, whose rounding differs; the tests marked ``numerics``
(export parity, DDP and resume equivalence, overfitting) run again under them in a subprocess.
Others compute bf16 fast (AMX), and there ``train.precision=auto`` trains in bf16: the tests marked
``auto_precision`` run again with ``$CSRSEG_AUTO_PRECISION=bf16``, which makes ``auto`` answer so on
any CPU (the bf16 path itself, forced, is tested on every CPU: tests/engine/test_bf16.py).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], extra_env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra_env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_avx2_variables_switch_aten_and_onednn_to_avx2():
    # a conv big enough to go through oneDNN, which then prints the ISA it dispatches to
    probe = ("import torch; conv = torch.nn.Conv2d(64, 64, 3); conv(torch.randn(8, 64, 32, 32)); "
             "print('capability', torch.backends.cpu.get_cpu_capability())")
    done = _run(["-c", probe], {**AVX2_ENV, "ONEDNN_VERBOSE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "capability AVX2" in done.stdout
    isa = [line for line in done.stdout.splitlines() if ",isa:" in line]
    assert isa, "oneDNN printed no ISA line"
    assert "AVX2" in isa[0].upper().replace(" ", "") and "512" not in isa[0], isa[0]


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT"),
                    reason="this CPU runs the AVX2 (or lower) code paths already: the main run covered them")
def test_numerics_sensitive_tests_pass_on_the_avx2_code_paths():
    done = _run(["-m", "pytest", "-q", "-m", "numerics", "-p", "no:cacheprovider", "tests"],
                AVX2_ENV, timeout=1800)  # csrseg.runtime.cpu.native_bf16() is False under them: fp32
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_runs_with_auto_precision_pass_where_auto_takes_bf16():
    done = _run(["-m", "pytest", "-q", "-m", "auto_precision", "-p", "no:cacheprovider", "tests"],
                {"CSRSEG_AUTO_PRECISION": "bf16"}, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
