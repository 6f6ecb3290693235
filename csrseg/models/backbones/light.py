"""Light torchvision backbones (RegNet, MobileNetV3) returning C3, C4, C5 like the ResNet.

For CPUs: ``regnet_x_400mf`` costs ~0.4 GFLOPs per 224² image against ResNet-18's 1.8 and
trains ~2.6x faster on a 2-core AVX2 CPU (benchmarks/RESULTS.md, "Demo on an ordinary CPU").
The paper presets keep ResNet-50; these are for the CPU demo and for users who want a
small model. All stages train, with trainable BatchNorm, from torchvision's ImageNet
weights (``weights=imagenet``), a local state dict (``weights=PATH``) or from scratch
(``weights=none``, the demo).
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from csrseg.errors import ConfigError
from csrseg.models.backbones.config import LIGHT_ARCHS, BackboneConfig
from csrseg.models.backbones.resnet import imagenet_state_dict, load_backbone_weights, read_state_dict

#: feature indices of C3, C4, C5 (strides 8, 16, 32) inside ``mobilenet_v3_*().features``
_MOBILENET_TAPS = {"mobilenet_v3_large": (6, 12, 16), "mobilenet_v3_small": (3, 8, 12)}
REGNETS = tuple(arch for arch in LIGHT_ARCHS if arch.startswith("regnet"))


class LightBackbone(nn.Module):
    """``forward(images)``: ``(B, 3, H, W)`` -> ``[C3, C4, C5]`` at strides 8, 16, 32.

    ``self.out_channels`` gives their channel counts (e.g. 64, 160, 400 for ``regnet_x_400mf``).
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.arch not in LIGHT_ARCHS:
            raise ConfigError(f"model.backbone.arch={cfg.arch!r}: choose resnet or one of {', '.join(LIGHT_ARCHS)}")
        if cfg.norm != "bn" or cfg.frozen_stages:
            raise ConfigError(f"{cfg.arch} trains all its stages with BatchNorm: set model.backbone.norm=bn "
                              "and model.backbone.frozen_stages=0")
        self.cfg = cfg
        net = getattr(torchvision.models, cfg.arch)(weights=None)
        if cfg.arch in REGNETS:
            trunk = net.trunk_output
            self.stages = nn.ModuleList([nn.Sequential(net.stem, trunk.block1, trunk.block2), trunk.block3, trunk.block4])
        else:
            c3, c4, c5 = _MOBILENET_TAPS[cfg.arch]
            feats = net.features
            self.stages = nn.ModuleList([feats[: c3 + 1], feats[c3 + 1 : c4 + 1], feats[c4 + 1 : c5 + 1]])
        if cfg.weights == "imagenet":
            load_backbone_weights(net, imagenet_state_dict(0, cfg.arch), "imagenet", name=cfg.arch)
        elif cfg.weights and cfg.weights.lower() != "none":
            load_backbone_weights(net, read_state_dict(cfg.weights), cfg.weights, name=cfg.arch)
        self.out_channels = tuple(_out_channels(stage) for stage in self.stages)

    def forward(self, images: Tensor) -> list[Tensor]:
        feats = []
        feat = images
        for stage in self.stages:
            feat = stage(feat)
            feats.append(feat)
        return feats  # (B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)


def _out_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels

