"""The neck: C3, C4, C5 -> one fused stride-8 feature (paper Fig. 1, §III).

::

    C5 --lateral--> CSR (reweighted by C3, C4, C5) --up--> + L4(C4) --up--> + L3(C3) = fused

``up`` is Depth-to-Space (paper) or nearest-neighbour x2 (FPN). With both
switches off this is the "FPN baseline" row of Table II: FPN's lateral 1x1
convs, nearest top-down pathway and FPN's 3x3 output conv on the level that is
consumed (the stride-8 one; the other levels' output convs would be computed for
nothing). With D2S the 3x3 output conv is not used: D2S's own spatial mixing
takes its place, which is where the paper's speed gain comes from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from csrseg.errors import ConfigError
from csrseg.models.necks.config import NeckConfig
from csrseg.models.layers import CrossScaleReweighting, DepthToSpace
from csrseg.models.layers.d2s import group_count
from csrseg.models.necks.output import NeckOutput


class NearestUp(nn.Module):
    """FPN's top-down upsampling: nearest neighbour to twice the size."""

    def forward(self, feat: Tensor) -> Tensor:
        return F.interpolate(feat, scale_factor=2.0, mode="nearest")


class FusionNeck(nn.Module):
    """``forward([C3, C4, C5])`` -> :class:`NeckOutput` whose ``features`` is ``fused``, ``(B, channels, H/8, W/8)``.

    Inputs have shapes ``(B, in_channels[i], H/2^(i+3), W/2^(i+3))`` with ``H, W``
    multiples of 32.
    """

    levels = (3, 4, 5)

    def __init__(self, in_channels: Sequence[int], cfg: NeckConfig) -> None:
        super().__init__()
        if cfg.upsample not in ("d2s", "nearest"):
            raise ConfigError(f"neck.upsample={cfg.upsample!r}: choose d2s or nearest")
        if cfg.fuse not in ("sum", "mean"):
            raise ConfigError(f"neck.fuse={cfg.fuse!r}: choose sum or mean")
        if cfg.output_norm and cfg.upsample == "d2s":
            raise ConfigError("neck.output_norm=true needs neck.upsample=nearest (D2S has no output conv)")
        self.cfg = cfg
        ch = cfg.channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, ch, 1) for c in in_channels)
        self.csr = CrossScaleReweighting(in_channels, ch, cfg.csr_channels) if cfg.reweight else None
        changed = [key for key, on in (("d2s_output_conv=true", cfg.d2s_output_conv), ("d2s_expand", cfg.d2s_expand != 1),
                                       ("d2s_norm=false", not cfg.d2s_norm), ("d2s_steps", cfg.d2s_steps != "both")) if on]
        if changed and cfg.upsample != "d2s":
            raise ConfigError(f"neck.{changed[0]} needs neck.upsample=d2s")
        if cfg.d2s_icnr and cfg.d2s_expand == 1:
            raise ConfigError("neck.d2s_icnr=true needs neck.d2s_expand=2 or 4 (it initialises the expansion)")
        # which of the two top-down steps (C5 -> stride 16, stride 16 -> 8) is D2S
        d2s_at = {"d2s": {"both": (True, True), "top": (True, False), "bottom": (False, True)}[cfg.d2s_steps],
                  "nearest": (False, False)}[cfg.upsample]
        self.up = nn.ModuleList(
            DepthToSpace(ch, ch, 2, cfg.num_groups if cfg.d2s_norm else 0, expand=cfg.d2s_expand,
                         activation=cfg.d2s_norm, icnr=cfg.d2s_icnr) if d2s else NearestUp()
            for d2s in d2s_at
        )
        if d2s_at[1]:  # D2S's spatial mixing ends the neck: no output conv unless asked for
            if not cfg.output_conv:
                raise ConfigError("neck.output_conv=false needs a nearest last step (neck.upsample=nearest or "
                                  "neck.d2s_steps=top); after D2S there is none unless neck.d2s_output_conv=true")
            self.output_conv = nn.Conv2d(ch, ch, 3, padding=1) if cfg.d2s_output_conv else None
        elif cfg.d2s_output_conv:
            raise ConfigError("neck.d2s_output_conv=true needs D2S on the last step (neck.d2s_steps=both or bottom): "
                              "a nearest last step has its output conv already")
        elif not cfg.output_conv:  # the neck ends at the last sum
            if cfg.output_norm:
                raise ConfigError("neck.output_norm=true needs neck.output_conv=true (it normalises that conv)")
            self.output_conv = None
        elif cfg.output_norm:  # the control: the same GN + ReLU that ends each D2S block
            self.output_conv = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                                             nn.GroupNorm(group_count(ch, cfg.num_groups), ch), nn.ReLU(inplace=True))
        else:  # FPN's 3x3 output conv after a nearest last step
            self.output_conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, features: Sequence[Tensor]) -> NeckOutput:
        c3, c4, c5 = features
        top = self.lateral[2](c5)  # (B, ch, H/32, W/32)
        if self.csr is not None:
            top = self.csr(features, top)  # eq. 5: R ⊙ L5(C5)
        mid = self._merge(self.lateral[1](c4), self.up[0](top))  # (B, ch, H/16, W/16)
        fused = self._merge(self.lateral[0](c3), self.up[1](mid))  # (B, ch, H/8, W/8)
        if self.output_conv is not None:
            fused = self.output_conv(fused)
        return NeckOutput(fused)

    def _merge(self, lateral: Tensor, upsampled: Tensor) -> Tensor:
        if lateral.shape != upsampled.shape:
            raise ValueError(
                f"neck: level shapes {tuple(lateral.shape)} and {tuple(upsampled.shape)} differ; "
                "input height and width must be multiples of 32"
            )
        merged = lateral + upsampled
        return merged * 0.5 if self.cfg.fuse == "mean" else merged
