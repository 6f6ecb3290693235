"""K-Net's head (the paper's): learned kernels, kernel-update stages, Hungarian matching, no NMS."""

from csrseg.models.heads.knet.head import KNetHead, KNetOutput

__all__ = ["KNetHead", "KNetOutput"]
