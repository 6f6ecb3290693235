"""K-Net's head (the paper's): learned kernels, kernel-update stages, Hungarian matching, no NMS."""

from csrseg.models.heads.knet.config import KNetConfig
from csrseg.models.heads.knet.head import KNetHead
from csrseg.models.heads.knet.outputs import KNetOutput

__all__ = ["KNetConfig", "KNetHead", "KNetOutput"]
