"""Backbones returning C3, C4, C5 (and C2 for K-Net's neck): torchvision ResNet (the paper's) and light families."""

from __future__ import annotations

from torch import nn

from csrseg.errors import ConfigError
from csrseg.models.backbones.light import LightBackbone
from csrseg.models.backbones.resnet import ResNetBackbone, backbone_name, describe_weights
from csrseg.models.backbones.config import BackboneConfig

__all__ = ["backbone_name", "build_backbone", "describe_weights"]


def build_backbone(cfg: BackboneConfig, levels: tuple[int, ...] = (3, 4, 5)) -> nn.Module:
    """The backbone of ``cfg`` returning the feature ``levels`` its neck reads (2 = C2, stride 4;
    only the ResNet gives C2). ``.out_channels``: their channel counts."""
    if cfg.arch == "resnet":
        return ResNetBackbone(cfg, levels)
    if 2 in levels:
        raise ConfigError(f"model.neck.type=fpn_semantic needs C2, which only the ResNet backbone gives "
                          f"(model.backbone.arch={cfg.arch})")
    return LightBackbone(cfg)
