"""Cross-Scale Reweighting (CSR), paper §III-A, eqs. 1-5.

A squeeze-and-excitation style gate whose squeeze sees *every* backbone level:
each level is globally pooled (eq. 3), projected to ``hidden`` channels (eq. 4),
the projections are concatenated (eq. 2) and mapped through two linear layers to
one weight per channel of the target feature (eq. 1). The target (in the paper,
the 256-channel lateral of C5) is multiplied by those weights (eq. 5).

The paper prints ``W1 ∈ R^{768x256}``, ``W2 ∈ R^{256x256}`` and ``R = δ(W1 W2 H)``,
shapes that do not compose. We use the reading that does (DESIGN.md):
``R = sigmoid(W1 · ReLU(W2 · H))`` with ``W2: 3c -> c`` and ``W1: c -> out``,
with a ReLU between them as in squeeze-and-excitation. The paper's "1D
convolution" with kernel 1 is exactly ``nn.Linear``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from csrseg.errors import ConfigError


class CrossScaleReweighting(nn.Module):
    """Channel weights for one feature map computed from several feature maps.

    Args:
        in_channels: channels ``B_i`` of each input level, e.g. ``(512, 1024, 2048)``.
        out_channels: channels of the feature that gets reweighted (256 in the paper).
        hidden: CSR width ``c`` (Table III: 128/256/512/1024).

    ``forward(features, target)``: ``features`` is a list of ``(B, B_i, H_i, W_i)``
    maps of any sizes; ``target`` is ``(B, out_channels, h, w)``; returns
    ``target * R`` of the same shape, ``R`` of shape ``(B, out_channels, 1, 1)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, hidden: int = 256) -> None:
        super().__init__()
        if not in_channels or min(in_channels) < 1 or out_channels < 1 or hidden < 1:
            raise ConfigError(f"CSR: in_channels={tuple(in_channels)}, out_channels={out_channels} and "
                              f"hidden={hidden} must be positive (any counts work, none needs to divide another)")
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        # eq. 4: one W0 per level, B_i -> c
        self.level_proj = nn.ModuleList(nn.Linear(c, hidden) for c in self.in_channels)
        # eq. 1: W2 (3c -> c), ReLU, W1 (c -> out), sigmoid
        self.squeeze = nn.Linear(hidden * len(self.in_channels), hidden)
        self.excite = nn.Linear(hidden, out_channels)

    def weights(self, features: Sequence[Tensor]) -> Tensor:
        """``R`` of eq. 1 as ``(B, out_channels, 1, 1)``."""
        if len(features) != len(self.in_channels):
            raise ValueError(f"CSR expects {len(self.in_channels)} feature maps, got {len(features)}")
        pooled = [feat.mean(dim=(2, 3)) for feat in features]  # eq. 3, each (B, B_i)
        concat = torch.cat([proj(p) for proj, p in zip(self.level_proj, pooled)], dim=1)  # eq. 2, (B, 3c)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(concat))))  # eq. 1, (B, out)
        return gate[:, :, None, None]

    def forward(self, features: Sequence[Tensor], target: Tensor) -> Tensor:
        if target.shape[1] != self.out_channels:
            raise ValueError(f"CSR target has {target.shape[1]} channels, expected {self.out_channels}")
        return target * self.weights(features)  # eq. 5
