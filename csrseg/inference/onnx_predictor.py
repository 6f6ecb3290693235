"""A model exported by ``csrseg export``, run by onnxruntime: the same interface as :class:`Predictor`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.inference.predictor import BelowThreshold, ImageLike, Instance, as_rgb_array, crops_of, to_instances


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


class OnnxPredictor:
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
        self.class_names: list[str] = meta.get("classes", [])
        self.cat_ids: list[int] = meta.get("cat_ids", list(range(1, len(self.class_names) + 1)))
        self.metadata = meta  # config, classes, cat_ids; "quantization" for an INT8 model
        self.score_thr = score_thr
        self.below = BelowThreshold()

    def run(self, image: ImageLike) -> dict[str, np.ndarray]:
        """The graph's outputs for one image: ``labels (n,)``, ``scores (n,)``, ``masks (n, H, W)`` bool,
        ``boxes (n, 4)``, every instance whatever its score."""
        array = as_rgb_array(image)
        outputs = self.session.run(None, {"image": np.ascontiguousarray(array.transpose(2, 0, 1))[None]})
        return dict(zip(("labels", "scores", "masks", "boxes"), outputs))

    def predict(self, image: ImageLike) -> list[Instance]:
        labels, scores, masks, boxes = self.run(image).values()
        names = self.class_names or [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
        cat_ids = self.cat_ids or list(range(1, len(names) + 1))
        boxes = boxes.tolist()
        return to_instances(labels.tolist(), scores.tolist(), crops_of(masks, boxes), boxes, masks.shape[1:], names,
                            cat_ids, self.score_thr, self.below)

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        return [self.predict(image) for image in images]


