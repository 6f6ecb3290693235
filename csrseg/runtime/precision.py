"""The precision a run computes in: one definition for train, predict, eval and benchmark.

``fp32``, ``bf16`` and ``fp16`` are taken as asked (bf16/fp16 as autocast; the parts that need fp32
stay in fp32 under any autocast). ``auto``:

- on CUDA, bf16 where the GPU computes it, else fp16 (with loss scaling when training);
- on a CPU, whichever of fp32 and bf16 is faster *here*, measured: a few steps of the run's own
  model at its input size in each precision (:func:`probe_times`). A CPU flag cannot say it:
  with AMX tiles bf16 trains about 2x faster than fp32, with AVX512-BF16 alone about 1.4x slower,
  and without native bf16 far slower (benchmarks/RESULTS.md). The decision is cached per machine,
  torch version and model (:class:`ProbeCache`), so the probe runs once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from csrseg.errors import ConfigError
from csrseg.runtime.cpu import cpu_model, cuda_half_precision

AUTO_ENV = "CSRSEG_AUTO_PRECISION"
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = ("auto", *DTYPES)


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (fp32 / bf16 / fp16), ``reason`` (one phrase: why), and on a CPU
    where ``auto`` measured, the seconds per probe step of each candidate (``times``)."""

    name: str
    reason: str
    times: tuple[tuple[str, float], ...] = ()

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The autocast context of this precision on ``device`` (none for fp32)."""
        device = torch.device(device)
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.name != "fp32")

    def loss_scaling(self, device: torch.device | str) -> bool:
        """fp16 training on CUDA scales the loss (fp16's range is too small for small gradients)."""
        return self.name == "fp16" and torch.device(device).type == "cuda"

    def describe(self) -> str:
        """``"bf16 autocast (auto: measured bf16 0.52 s, fp32 1.08 s per step)"``: for the plan line and the log."""
        what = "fp32" if self.name == "fp32" else f"{self.name} autocast"
        return f"{what} ({self.reason})"


def check_choice(choice: str, where: str = "precision") -> str:
    if choice not in CHOICES:
        raise ConfigError(f"{where}={choice!r}: choose one of {', '.join(CHOICES)}")
    return choice


def resolve(choice: str, device: torch.device | str, probe: Callable[[], dict[str, float]] | None = None) -> Precision:
    """The precision ``choice`` (``auto`` or a name) means on ``device``.

    ``probe``: on a CPU with ``auto``, returns the seconds per step of ``{"fp32": ..., "bf16": ...}``
    (:func:`probe_times`, usually through :meth:`ProbeCache.times`); without one, ``auto`` on a CPU
    is fp32 (nothing measured, nothing assumed). ``$CSRSEG_AUTO_PRECISION`` (``fp32`` or ``bf16``)
    answers for the probe on a CPU: the way to take, on any CPU, the path a CPU that computes bf16
    fast takes (the tests do).
    """
    check_choice(choice)
    device = torch.device(device)
    if choice != "auto":
        return Precision(choice, "as asked")
    if device.type == "cuda":
        half = cuda_half_precision(device)
        return Precision(half, "auto: the GPU computes bf16" if half == "bf16" else "auto: this GPU has no bf16")
    forced = os.environ.get(AUTO_ENV, "")
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ConfigError(f"${AUTO_ENV}={forced!r}: choose fp32 or bf16 (or leave it unset to measure)")
        return Precision(forced, f"auto: ${AUTO_ENV}={forced}")
    if probe is None:
        return Precision("fp32", "auto: nothing measured")
    return choose(probe())


def choose(times: dict[str, float]) -> Precision:
    """The faster of the measured precisions (fp32 on a tie: it is exact), with both times in its reason."""
    best = min(times, key=lambda name: (times[name], name != "fp32"))
    listed = ", ".join(f"{name} {seconds:.3g} s" for name, seconds in sorted(times.items(), key=lambda kv: kv[1]))
    return Precision(best, f"auto: measured here, {listed} per step", tuple(sorted(times.items())))


def probe_times(step: Callable[[str], None], names: tuple[str, ...] = ("fp32", "bf16"), budget: float = 4.0,
                clock: Callable[[], float] = time.perf_counter, warmup: int = 2) -> dict[str, float]:
    """Seconds per ``step(name)`` for each precision ``name``: ``warmup`` untimed steps each (oneDNN
    picks and caches its kernels for a shape and dtype over the first calls, which can take several
    times a step), then timed steps until ``budget`` seconds (at least one, at most three each), the
    fastest taken: a step's own cost, what a burst of other work on the machine only adds to. The
    precisions take turns step by step, so a drift in the machine's load falls on both."""
    for _ in range(warmup):
        for name in names:
            step(name)
    samples: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    while not samples[names[0]] or (spent < budget and len(samples[names[0]]) < 3):
        for name in names:
            tic = clock()
            step(name)
            seconds = clock() - tic
            samples[name].append(seconds)
            spent += seconds
    return {name: min(values) for name, values in samples.items()}


def cache_dir() -> Path:
    """``$CSRSEG_CACHE`` or ``$XDG_CACHE_HOME/csrseg`` (``~/.cache/csrseg``)."""
    if os.environ.get("CSRSEG_CACHE"):
        return Path(os.environ["CSRSEG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "csrseg"


def machine_key() -> str:
    """What the probe's answer depends on besides the model: the CPU, the kernels torch may use
    (its capability and the ISA caps of oneDNN and MKL) and torch's version."""
    caps = "|".join(os.environ.get(var, "") for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                         "MKL_ENABLE_INSTRUCTIONS"))
    return f"{cpu_model()}|{torch.backends.cpu.get_cpu_capability()}|{caps}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def busy() -> bool:
    """Whether other work competed for the CPU over the last minute: a load average above 1.5x the
    cores (the probe itself keeps them all busy)."""
    try:
        return os.getloadavg()[0] > 1.5 * (os.cpu_count() or 1)
    except OSError:  # no load average on this system
        return False


class ProbeCache:
    """Probe results kept in ``precision.json`` under :func:`cache_dir`, keyed by :func:`machine_key`
    and a description of what was measured (model config, input size, batch, train or infer)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or cache_dir()) / "precision.json"

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def times(self, what: str, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
        """The cached times of ``what`` on this machine, or ``measure()``'s, then kept, unless the
        machine was busy with other work while they were taken (then they hold for this run only)."""
        key = hashlib.sha256(f"{machine_key()}\n{what}".encode()).hexdigest()[:24]
        cached = self._read().get(key)
        if isinstance(cached, dict) and cached and all(isinstance(v, (int, float)) for v in cached.values()):
            return {k: float(v) for k, v in cached.items()}
        times = measure()
        if busy():
            return times
        with contextlib.suppress(OSError):  # a read-only home costs the probe again next time, nothing more
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = self._read()
            data[key] = times
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.path)
        return times

