"""A model exported by ``csrseg export --format openvino``, run by OpenVINO: the same interface as
:class:`~csrseg.inference.predictor.Predictor`.

The IR holds fp32 weights (or NNCF's INT8); the precision the CPU plugin computes the rest in is
chosen here: ``fp32`` (exact: the ONNX model's instances), ``bf16`` where the CPU computes bf16
(AVX512-BF16 or AMX; OpenVINO's own default there), or ``auto``: whichever of the two runs the first
image faster, timed at that image's size on this machine and cached
(:class:`csrseg.runtime.precision.ProbeCache`), the decision and the times logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.inference.exported import ExportedPredictor
from csrseg.runtime.cpu import native_bf16
from csrseg.runtime.precision import Precision, ProbeCache, check_choice, choose, probe_times

logger = logging.getLogger(__name__)

HINTS = {"fp32": "f32", "bf16": "bf16"}
EXTRA = "pip install 'csrseg[openvino]'"
RT_INFO = "csrseg"  # the key of the metadata an IR carries in its rt_info


def require_openvino(what: str = "OpenVINO"):
    """The ``openvino`` module, or a one-line :class:`CsrsegError` saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise CsrsegError(f"{what} needs OpenVINO, which is not installed: {EXTRA}") from None
    return openvino


def read_metadata(model) -> dict:
    """The ``csrseg`` metadata an IR carries (``{}`` if none): key -> the JSON value it was given."""
    if not model.has_rt_info([RT_INFO]):
        return {}
    entries = model.get_rt_info()[RT_INFO]
    return {key: json.loads(entries[key].astype(str)) for key in entries}


def cpu_computes_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 here (it lists ``BF16`` among its capabilities)."""
    # and where oneDNN computes it: with ONEDNN_MAX_CPU_ISA capping it (how a bigger CPU stands in for
    # an AVX2 one) OpenVINO's plugin still lists BF16, then finds no bf16 kernel and fails to compile
    return native_bf16() and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoPredictor(ExportedPredictor):
    """The same as :class:`Predictor`, running an OpenVINO IR (``model.xml`` + ``model.bin``) on the CPU.

    ``precision``: ``fp32`` (default), ``bf16`` or ``auto`` (module docstring); ``threads``: the CPU
    plugin's inference threads (0: its choice, one per core).
    """

    def __init__(self, path: str | Path, score_thr: float = 0.3, precision: str = "fp32", threads: int = 0) -> None:
        ov = require_openvino(f"{path}")
        check_choice(precision, "--precision")
        path = Path(path)
        if path.suffix.lower() != ".xml":
            raise CsrsegError(f"{path}: an OpenVINO model is the .xml file of an IR (with its .bin beside it)")
        if not path.is_file():
            raise CsrsegError(f"{path}: OpenVINO model not found")
        if not path.with_suffix(".bin").is_file():
            raise CsrsegError(f"{path.with_suffix('.bin')}: the weights of {path.name} are missing (an IR is two files)")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except RuntimeError as exc:
            raise CsrsegError(f"{path}: not a readable OpenVINO model ({str(exc).splitlines()[0][:200]})") from None
        super().__init__(read_metadata(self.model), score_thr)
        if precision == "fp16":
            raise CsrsegError("--precision fp16: an OpenVINO model on the CPU runs in fp32 or bf16")
        bf16 = cpu_computes_bf16(self.core)
        if precision == "bf16" and not bf16:
            raise CsrsegError("--precision bf16: this CPU does not compute bf16 (OpenVINO would run fp32); "
                              "use fp32 or auto")
        self.path, self.threads = path, threads
        self.choice = precision if (precision != "auto" or bf16) else "fp32"
        self._compiled: dict[str, object] = {}
        self.precision = (Precision(self.choice, "as asked" if precision == self.choice else
                                    "auto: this CPU does not compute bf16") if self.choice != "auto" else None)

    def compiled(self, name: str):
        """The model compiled for the CPU with precision ``name`` (``fp32`` or ``bf16``), compiled once."""
        if name not in self._compiled:
            config = {"INFERENCE_PRECISION_HINT": HINTS[name]}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = self.threads
            self._compiled[name] = self.core.compile_model(self.model, "CPU", config)
        return self._compiled[name]

    def _decide(self, image: np.ndarray) -> Precision:
        """``auto``: time fp32 and bf16 on ``image`` (cached per machine, model file and size)."""
        def step(name: str) -> None:
            self.compiled(name)(image)

        digest = hashlib.sha256(self.path.with_suffix(".bin").read_bytes()).hexdigest()[:16]
        what = f"openvino|{digest}|{image.shape[2]}x{image.shape[3]}"
        precision = choose(ProbeCache().times(what, lambda: probe_times(step, budget=3.0, warmup=1)))
        logger.info("--precision auto for %s at %dx%d: %s (%s)", self.path.name, image.shape[3], image.shape[2],
                    precision.name, precision.reason)
        return precision

    def run_graph(self, image: np.ndarray) -> list[np.ndarray]:
        if self.precision is None:
            self.precision = self._decide(image)
        compiled = self.compiled(self.precision.name)
        result = compiled(image)
        return [result[output] for output in compiled.outputs]
