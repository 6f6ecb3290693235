"""csrseg: instance segmentation with Cross-Scale Reweighting and Depth-to-Space fusion."""

from csrseg.config import Config, load_config
from csrseg.models import CSRSeg, build_model

__version__ = "0.1.0"

__all__ = ["CSRSeg", "Config", "build_model", "load_config", "__version__"]
