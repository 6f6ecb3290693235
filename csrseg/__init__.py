"""csrseg: instance segmentation with Cross-Scale Reweighting and Depth-to-Space fusion.

The verbs (:mod:`csrseg.api`): ``train``, ``evaluate``, ``predict``, ``export``, ``benchmark``;
``Predictor`` / ``OnnxPredictor`` / ``OpenVinoPredictor`` for images in your own code; the paper's two blocks,
``CrossScaleReweighting`` and ``DepthToSpace``, to put in any network.
"""

from csrseg.config import Config, load_config
from csrseg.models import CSRSeg, build_model
from csrseg.models.layers import CrossScaleReweighting, DepthToSpace

__version__ = "0.1.0"

__all__ = ["CSRSeg", "Config", "CrossScaleReweighting", "DepthToSpace", "OnnxPredictor", "OpenVinoPredictor", "Predictor", "benchmark",
           "build_model", "evaluate", "export", "load_config", "predict", "train", "__version__"]

# the training, inference and export stacks are imported on first use: ``import csrseg`` stays light
_LAZY = {
    "train": "csrseg.api", "evaluate": "csrseg.api", "predict": "csrseg.api", "export": "csrseg.api",
    "benchmark": "csrseg.research.benchmark", "Predictor": "csrseg.inference.predictor",
    "OnnxPredictor": "csrseg.inference.onnx_predictor",
    "OpenVinoPredictor": "csrseg.inference.openvino_predictor",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'csrseg' has no attribute {name!r}")
