"""What the CPU can do: its name, the ATen kernel level in use, native bf16, conv throughput.

Every CPU figure the package prints names the processor and ``torch.backends.cpu.get_cpu_capability()``
(AVX2, AVX512, ...): the same command is ~2x apart between an AVX2-only laptop and a server with
AVX-512 and native bf16. ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` make a bigger CPU run the AVX2 code paths.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The processor's marketing name from ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether oneDNN computes bf16 natively here (AVX512-BF16 or AMX); without it bf16 autocast
    is emulated and slower than fp32. False when ``ONEDNN_MAX_CPU_ISA`` caps the ISA below that."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and not (isa.startswith("AVX512_CORE_BF16") or isa.startswith("AVX512_CORE_AMX") or isa == "ALL"):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_half_dtype(device: torch.device) -> torch.dtype:
    """The half precision for autocast on a CUDA ``device``: bf16 where it computes bf16 (Ampere and
    later), else fp16 (with the trainer's loss scaling). bf16 keeps fp32's range; under fp16, sums
    over whole masks overflow 65504 (K-Net's kernel update, which therefore runs in fp32 always)."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def cuda_half_precision(device: torch.device) -> str:
    """:func:`cuda_half_dtype`'s name as the CLI and the tables spell it: ``"bf16"`` or ``"fp16"``."""
    return "bf16" if cuda_half_dtype(device) == torch.bfloat16 else "fp16"


def cpu_description() -> str:
    """``"AMD EPYC, AVX2, 2 threads (2 cores), no native bf16"``: what to print beside a CPU figure."""
    bf16 = "native bf16" if native_bf16() else "no native bf16"
    return (f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads "
            f"({os.cpu_count()} cores), {bf16}")


def conv_gflops(runs: int = 5, channels_last: bool = False, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu", batch: int = 8, side: int = 32) -> float:
    """Median GFLOP/s of one 3x3 conv (batch x 128 x side x side -> 128, padding 1): the machine's
    practical convolution throughput, the reference for "share of the machine" in the speed
    benchmarks. The default 8x128x32x32 suits a CPU; a GPU needs a larger one to be busy."""
    device = torch.device(device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device)
    feat = torch.randn(batch, 128, side, side, device=device)
    if channels_last:
        conv, feat = conv.to(memory_format=torch.channels_last), feat.contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * 128 * 128 * 9 * side * side
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for i in range(runs + 2):
            _sync(device)
            tic = time.perf_counter()
            for _ in range(5):
                conv(feat)
            _sync(device)
            if i >= 2:
                times.append((time.perf_counter() - tic) / 5)
    return flops / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the OS.

    Training frees and re-allocates the same few hundred MB of activations every step; glibc
    serves blocks over 128 KiB-32 MiB with fresh ``mmap`` calls and gives them back with
    ``munmap``, so every step page-faults its activations in again (system time). Raising the
    mmap and trim thresholds keeps those pages mapped. Returns False where this is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        # 1 GiB: larger single tensors (rare at training sizes) still go through mmap
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
