"""Plug-and-play building blocks of the paper, usable in any network.

>>> from csrseg.models.layers import CrossScaleReweighting, DepthToSpace
"""

from csrseg.models.layers.csr import CrossScaleReweighting
from csrseg.models.layers.d2s import DepthToSpace

__all__ = ["CrossScaleReweighting", "DepthToSpace"]
