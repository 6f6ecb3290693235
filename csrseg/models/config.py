"""The network's settings: backbone, neck and head, each defined by its own folder.

Every part reads the small frozen dataclass it needs. Defaults are the paper's values as
fixed in DESIGN.md; the named presets (:mod:`csrseg.config.presets`) change some of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from csrseg.limits import Limit, at_least

from csrseg.models.backbones.config import BackboneConfig
from csrseg.models.heads import HeadConfig, KNetConfig
from csrseg.models.necks.config import NeckConfig

__all__ = ["BackboneConfig", "ModelConfig", "NeckConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """``head``: the config of the head ``head.type`` names (:data:`csrseg.models.heads.HEADS`)."""

    num_classes: int = 80
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=KNetConfig)

    LIMITS: ClassVar[dict[str, Limit]] = dict(num_classes=at_least(1))
