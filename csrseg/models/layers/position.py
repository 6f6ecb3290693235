"""Position as features: where a pixel is, for layers that otherwise cannot tell (1x1 convs, dynamic kernels)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_position_encoding(feat: Tensor, temperature: float = 10000.0) -> Tensor:
    """DETR's normalised sine encoding of ``(B, C, h, w)`` positions -> ``(B, C, h, w)``.

    ``C / 2`` channels encode y, then ``C / 2`` x; within each half sines and cosines
    alternate over geometrically spaced frequencies; positions run over (0, 2π].
    """
    b, c, h, w = feat.shape
    half = c // 2
    ys = torch.arange(1, h + 1, device=feat.device, dtype=torch.float32) / (h + 1e-6) * 2 * math.pi
    xs = torch.arange(1, w + 1, device=feat.device, dtype=torch.float32) / (w + 1e-6) * 2 * math.pi
    dim_t = torch.arange(half, device=feat.device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def encode(pos: Tensor) -> Tensor:  # (n,) -> (n, half), sin and cos interleaved
        angles = pos[:, None] / dim_t
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(h, w, half)
    pos_x = encode(xs)[None, :, :].expand(h, w, half)
    pos = torch.cat([pos_y, pos_x], dim=2).permute(2, 0, 1)  # (C, h, w)
    return pos[None].expand(b, -1, -1, -1).to(feat.dtype)


def coord_channels(feat: Tensor) -> Tensor:
    """``(B, C, h, w)`` -> ``(B, 2, h, w)`` of x and y in [-1, 1] (CoordConv)."""
    b, _, h, w = feat.shape
    ys = torch.linspace(-1, 1, h, device=feat.device, dtype=feat.dtype)
    xs = torch.linspace(-1, 1, w, device=feat.device, dtype=feat.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])[None].expand(b, -1, -1, -1)
