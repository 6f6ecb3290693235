"""A model exported by ``csrseg export``, run by onnxruntime: the same interface as :class:`Predictor`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.inference.exported import ExportedPredictor


def onnx_session(path: str | Path, threads: int = 0, providers: list[str] | None = None, arena: bool = True):
    """An onnxruntime ``InferenceSession`` for a model written by ``csrseg export``: all graph
    optimisations; ``threads``: intra-op threads (0: onnxruntime's choice, one per core).

    ``arena``: onnxruntime's CPU memory arena (its default): its peak at 1333x800 was measured at or
    below the peak without it (benchmarks/RESULTS.md, "CPU inference at the limit"); without it,
    memory goes back to the system between runs instead of staying with the session.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = arena
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers or ort.get_available_providers())


class OnnxPredictor(ExportedPredictor):
    """The same as :class:`Predictor`, running a model exported by ``csrseg export`` with onnxruntime."""

    def __init__(self, path: str | Path, score_thr: float = 0.3, providers: list[str] | None = None,
                 threads: int = 0) -> None:
        path = Path(path)
        if not path.is_file():
            raise CsrsegError(f"{path}: ONNX model not found")
        try:
            self.session = onnx_session(path, threads, providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CsrsegError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = {k: json.loads(v) for k, v in self.session.get_modelmeta().custom_metadata_map.items()}
        super().__init__(meta, score_thr)

    def run_graph(self, image: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"image": image})
