"""What every neck returns: the type the heads read, whichever neck ran."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class NeckOutput(NamedTuple):
    """``features``: ``(B, C, H/8, W/8)``, the one fused feature every head reads (K-Net's neck: its
    localisation feature). ``semantic``: a second ``(B, C, H/8, W/8)`` feature for heads with a
    semantic branch (K-Net's neck's auxiliary output), ``None`` where the neck has one feature only."""

    features: Tensor
    semantic: Tensor | None = None
