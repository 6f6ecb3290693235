"""Depth-to-Space (D2S), paper §III-B.

Pixel shuffle (``r = 2``) turns ``(C, h, w)`` into ``(C / r², r·h, r·w)`` with no
parameters, then "spatial mixing" - a depthwise-separable 3x3 convolution
(depthwise 3x3 on ``C / r²`` channels, pointwise 1x1 to ``out_channels``) - followed
by GroupNorm and ReLU (DESIGN.md fixes the normalisation the paper leaves open).
"""

from __future__ import annotations

from torch import Tensor, nn


class DepthToSpace(nn.Module):
    """Upsample ``(B, in_channels, h, w)`` to ``(B, out_channels, scale·h, scale·w)``.

    ``in_channels`` must be divisible by ``scale**2``; ``num_groups`` (GroupNorm) must
    divide ``out_channels`` (``num_groups=0`` drops the norm).
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 256, scale: int = 2, num_groups: int = 32) -> None:
        super().__init__()
        if in_channels % (scale * scale):
            raise ValueError(f"D2S: in_channels={in_channels} is not divisible by scale²={scale * scale}")
        mid = in_channels // (scale * scale)
        self.shuffle = nn.PixelShuffle(scale)
        self.depthwise = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False)
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=num_groups == 0)
        self.norm = nn.GroupNorm(num_groups, out_channels) if num_groups else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, feat: Tensor) -> Tensor:
        shuffled = self.shuffle(feat)  # (B, C/r², r·h, r·w)
        return self.act(self.norm(self.pointwise(self.depthwise(shuffled))))
