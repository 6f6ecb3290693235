"""Plug-and-play building blocks of the paper, usable in any network.

>>> from csrseg.modules import CrossScaleReweighting, DepthToSpace
"""

from csrseg.modules.csr import CrossScaleReweighting
from csrseg.modules.d2s import DepthToSpace

__all__ = ["CrossScaleReweighting", "DepthToSpace"]
