"""K-Net's own neck (``model.neck.type=fpn_semantic``, Table II row 1): FPN on C2-C5 + SemanticFPN.

::

    C2..C5 --FPN (1x1 laterals, nearest top-down, 3x3 outputs)--> P2 (H/4) .. P5 (H/32)
    P2 --conv s2-->                       \\
    P3 --conv-->                           + --> 1x1 conv-GN-ReLU = localisation feature (H/8)
    P4 --conv, x2, conv-->                 |  \\-> 1x1 conv-GN-ReLU = semantic feature (H/8)
    P5 + sine PE --conv, x2, conv, x2, conv--/

Every SemanticFPN conv is 3x3 conv-GN-ReLU; ``x2`` is bilinear upsampling. This is
K-Net's det config (``SemanticFPNWrapper`` with ``upsample_times=2``, one auxiliary conv),
whose two outputs feed the kernel head's localisation and segmentation branches.

``model.neck.type=fpn_semantic_c3`` is the same neck without C2 (FPN on C3-C5, no P2 branch): not
K-Net's, an ablation that reads the paper's three levels, to tell what K-Net's neck gains from C2
from what it gains from its conv stacks and two outputs (issue 31).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from csrseg.models.necks.config import NeckConfig
from csrseg.models.layers.d2s import group_count
from csrseg.models.layers.position import sine_position_encoding
from csrseg.models.necks.output import NeckOutput


def conv_gn_relu(in_channels: int, out_channels: int, kernel: int, num_groups: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.GroupNorm(group_count(out_channels, num_groups), out_channels),
        nn.ReLU(inplace=True),
    )


class FPN(nn.Module):
    """``forward([C2..C5])`` -> ``[P2..P5]``, each ``(B, channels, H/2^(i+2), W/2^(i+2))``."""

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        for conv in [*self.lateral, *self.output]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        return [conv(lat) for conv, lat in zip(self.output, laterals)]


class SemanticFPN(nn.Module):
    """``forward([P2..P5])`` -> ``(localisation, semantic)``, each ``(B, channels, H/8, W/8)``; with
    ``c2=False``, ``forward([P3..P5])`` (no P2 branch)."""

    def __init__(self, channels: int, num_groups: int, *, c2: bool = True) -> None:
        super().__init__()
        ch, g = channels, num_groups
        up = lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        self.levels = nn.ModuleList([
            *([conv_gn_relu(ch, ch, 3, g, stride=2)] if c2 else []),  # P2: stride 4 -> 8
            conv_gn_relu(ch, ch, 3, g),  # P3
            nn.Sequential(conv_gn_relu(ch, ch, 3, g), up(), conv_gn_relu(ch, ch, 3, g)),  # P4
            nn.Sequential(conv_gn_relu(ch, ch, 3, g), up(), conv_gn_relu(ch, ch, 3, g), up(),
                          conv_gn_relu(ch, ch, 3, g)),  # P5 (+ positions)
        ])
        self.loc_out = conv_gn_relu(ch, ch, 1, g)
        self.sem_out = conv_gn_relu(ch, ch, 1, g)  # K-Net's auxiliary conv
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)

    def forward(self, levels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        *finer, p5 = levels
        levels = (*finer, p5 + sine_position_encoding(p5))
        summed = sum(stack(p) for stack, p in zip(self.levels, levels, strict=True))
        return self.loc_out(summed), self.sem_out(summed)


class FPNSemanticNeck(nn.Module):
    """``forward([C2, C3, C4, C5])`` -> :class:`NeckOutput` (localisation, semantic) at stride 8 (K-Net's neck)."""

    levels: tuple[int, ...] = (2, 3, 4, 5)

    def __init__(self, in_channels: Sequence[int], cfg: NeckConfig) -> None:
        super().__init__()
        if len(in_channels) != len(self.levels):
            raise ValueError(f"{cfg.type} neck needs C{self.levels[0]}-C5, got {len(in_channels)} levels")
        self.fpn = FPN(in_channels, cfg.channels)
        self.semantic = SemanticFPN(cfg.channels, cfg.num_groups, c2=2 in self.levels)

    def forward(self, features: Sequence[Tensor]) -> NeckOutput:
        localisation, semantic = self.semantic(self.fpn(features))
        return NeckOutput(localisation, semantic)


class FPNSemanticC3Neck(FPNSemanticNeck):
    """``forward([C3, C4, C5])`` -> :class:`NeckOutput`: K-Net's neck without C2 (an ablation)."""

    levels = (3, 4, 5)
