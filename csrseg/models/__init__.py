"""The network, one file per stage: backbone, neck, head, targets, losses, postprocess, model."""

from csrseg.models.model import CSRSeg, build_model

__all__ = ["CSRSeg", "build_model"]
