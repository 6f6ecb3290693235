"""Depth-to-Space (D2S), paper §III-B.

Pixel shuffle (``r = 2``) turns ``(C, h, w)`` into ``(C / r², r·h, r·w)`` with no
parameters, then "spatial mixing" - a depthwise-separable 3x3 convolution
(depthwise 3x3 on ``C / r²`` channels, pointwise 1x1 to ``out_channels``) - followed
by GroupNorm and ReLU (DESIGN.md fixes the normalisation the paper leaves open).

The paper leaves open how many channels the shuffle keeps. Its text prints ``B_i / r`` (which
does not conserve the tensor's size), and it cites ESPCN [22], whose sub-pixel convolution first
*expands* the channels r²-fold with a convolution so that the shuffle keeps them all. DESIGN.md
shuffles the 256 channels down to 64 (``expand=1``); ``expand=4`` is ESPCN's layer (a 1x1
convolution ``C -> 4C`` before the shuffle, so that ``C`` channels reach the spatial mixing) and
``expand=2`` the printed ``B_i / r``. Issue 31 measures which of them K-Net's head needs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from csrseg.errors import ConfigError


def group_count(channels: int, max_groups: int) -> int:
    """The largest number of GroupNorm groups that divides ``channels`` and is at most ``max_groups``.

    32 groups for 256 channels (the paper's setting); 24 for 48, 16 for 80, 1 for a prime count:
    a block never dies inside ``nn.GroupNorm`` on an unusual width.
    """
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class DepthToSpace(nn.Module):
    """Upsample ``(B, in_channels, h, w)`` to ``(B, out_channels, scale·h, scale·w)``.

    ``in_channels`` must be divisible by ``scale**2`` (refused otherwise, naming it).
    GroupNorm uses ``num_groups`` groups, or, when that does not divide ``out_channels``,
    the largest count below it that does (:func:`group_count`; ``self.num_groups`` says
    which); ``num_groups=0`` drops the norm. ``expand > 1`` puts a 1x1 convolution ``in_channels ->
    expand·in_channels`` before the shuffle (no bias: the depthwise conv after the shuffle has none
    either, and the norm re-centres), so that ``expand·in_channels / scale²`` channels pass it.
    ``activation=False`` drops the final ReLU; with ``num_groups=0`` too the block is linear, the
    paper's words ("pixel shuffle and spatial mixing ... 3x3 depth-wise separable convolution") with
    nothing DESIGN.md added. ``icnr=True`` (with ``expand > 1``) initialises the expansion as ICNR
    (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"): the ``scale²`` rows that
    the shuffle sends to one output channel start equal, so the block starts as nearest upsampling
    followed by the spatial mixing, and learns its sub-pixel detail from there.
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 256, scale: int = 2, num_groups: int = 32,
                 *, expand: int = 1, activation: bool = True, icnr: bool = False) -> None:
        super().__init__()
        if scale < 1 or in_channels < 1 or out_channels < 1 or num_groups < 0 or expand < 1:
            raise ConfigError(f"D2S: in_channels={in_channels}, out_channels={out_channels}, scale={scale} and "
                              f"expand={expand} must be positive, num_groups={num_groups} not negative")
        wide = in_channels * expand
        if wide % (scale * scale):
            what = f"in_channels={in_channels}" if expand == 1 else f"in_channels·expand={wide}"
            raise ConfigError(f"D2S: {what} is not divisible by scale²={scale * scale}")
        self.num_groups = group_count(out_channels, num_groups) if num_groups else 0
        num_groups = self.num_groups
        mid = wide // (scale * scale)
        if icnr and expand == 1:
            raise ConfigError("D2S: icnr=True needs expand > 1 (ICNR initialises the convolution before the shuffle)")
        self.expand = nn.Conv2d(in_channels, wide, 1, bias=False) if expand > 1 else nn.Identity()
        if icnr:
            with torch.no_grad():  # pixel_shuffle sends channel c·r² + phase to channel c: repeat each row r² times
                self.expand.weight.copy_(self.expand.weight[:mid].repeat_interleave(scale * scale, dim=0))
        self.shuffle = nn.PixelShuffle(scale)
        self.depthwise = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False)
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=num_groups == 0)
        self.norm = nn.GroupNorm(num_groups, out_channels) if num_groups else nn.Identity()
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, feat: Tensor) -> Tensor:
        shuffled = self.shuffle(self.expand(feat))  # (B, expand·C/r², r·h, r·w)
        return self.act(self.norm(self.pointwise(self.depthwise(shuffled))))
