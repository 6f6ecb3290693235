"""Necks: backbone levels -> one stride-8 feature (:class:`NeckOutput`).

``model.neck.type`` picks one entry of :data:`NECKS`. Each neck class says which backbone levels
it reads (``levels``: 3, 4, 5 for C3-C5; 2 adds C2), so the backbone returns just those.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from csrseg.errors import ConfigError
from csrseg.models.necks.config import NeckConfig
from csrseg.models.necks.fpn_semantic import FPNSemanticC3Neck, FPNSemanticNeck
from csrseg.models.necks.fusion import FusionNeck
from csrseg.models.necks.output import NeckOutput

NECKS: dict[str, type[nn.Module]] = {
    "fusion": FusionNeck,  # CSR + D2S, the paper's, with Table II/III's switches
    "fpn_semantic": FPNSemanticNeck,  # K-Net's own: Table II row 1
    "fpn_semantic_c3": FPNSemanticC3Neck,  # K-Net's without C2: what C2 gives it (issue 31)
}

__all__ = ["NECKS", "NeckOutput", "build_neck", "neck_class"]


def neck_class(cfg: NeckConfig) -> type[nn.Module]:
    if cfg.type not in NECKS:
        raise ConfigError(f"model.neck.type={cfg.type!r}: choose {' or '.join(NECKS)}")
    return NECKS[cfg.type]


def build_neck(in_channels: Sequence[int], cfg: NeckConfig) -> nn.Module:
    """The neck of ``cfg`` on backbone levels of ``in_channels`` channels (those its ``levels`` name)."""
    return neck_class(cfg)(in_channels, cfg)
