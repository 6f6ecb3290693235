"""csrseg: instance segmentation with Cross-Scale Reweighting and Depth-to-Space fusion."""

from csrseg.config import Config, load_config
from csrseg.models import CSRSeg, build_model

__version__ = "0.1.0"

__all__ = ["CSRSeg", "Config", "Predictor", "build_model", "evaluate", "load_config", "train", "__version__"]


def __getattr__(name: str):
    # train / evaluate / Predictor pull in the data and training stack: imported on first use
    if name == "train":
        from csrseg.api import train

        return train
    if name == "evaluate":
        from csrseg.api import evaluate

        return evaluate
    if name == "Predictor":
        from csrseg.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'csrseg' has no attribute {name!r}")
