"""The SOLOv2 head's settings (``model.head`` when ``model.head.type=solov2``): grids, branches,
targets, losses and Matrix NMS."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from csrseg.limits import Limit, above, at_least, fraction, one_of, open_fraction
from csrseg.models.heads.common import LossConfig


@dataclass(frozen=True)
class SOLOv2PostprocessConfig:
    """Inference: score > ``score_thr`` -> masks > ``mask_thr`` -> top ``nms_pre`` -> Matrix NMS
    (``kernel``, ``sigma``) -> score > ``update_thr`` -> top ``max_per_img``."""

    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    sigma: float = 2.0
    kernel: str = "gaussian"

    LIMITS: ClassVar[dict[str, Limit]] = dict(score_thr=fraction(), mask_thr=fraction(), nms_pre=at_least(1),
                                             update_thr=fraction(), max_per_img=at_least(1), sigma=above(0),
                                             kernel=one_of("gaussian", "linear"))


@dataclass(frozen=True)
class SOLOv2Config:
    """SOLOv2-style grids of dynamic kernels on the one fused feature (DESIGN.md, "SOLOv2 head")."""

    type: str = "solov2"
    feat_channels: int = 256
    stacked_convs: int = 4
    kernel_dim: int = 256
    num_grids: tuple[int, ...] = (40, 36, 24, 16, 12)
    scale_ranges: tuple[tuple[float, float], ...] = (
        (1, 96),
        (48, 192),
        (96, 384),
        (192, 768),
        (384, 2048),
    )
    # SOLOv2's per-level strides: a mask must cover more than its grid's stride in
    # stride-4 pixels (stride / 4 of our stride-8 pixels) to be kept at inference.
    grid_strides: tuple[int, ...] = (8, 8, 16, 32, 32)
    center_sigma: float = 0.2
    num_groups: int = 32  # at most; the largest count dividing the width is used
    # stride-8 mask targets: "binary" (SOLOv2 rescales masks to binary ones) or "soft" (the share
    # of each stride-8 pixel an instance covers, in [0, 1])
    mask_targets: str = "binary"
    # SOLOv2's conv_pred: the mask branch's 1x1 to E followed by GN + ReLU; false: a plain 1x1 conv
    mask_out_norm: bool = True
    prior_prob: float = 0.01
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: SOLOv2PostprocessConfig = field(default_factory=SOLOv2PostprocessConfig)

    LIMITS: ClassVar[dict[str, Limit]] = dict(
        feat_channels=at_least(1), stacked_convs=at_least(0), kernel_dim=at_least(1), num_grids=at_least(1),
        scale_ranges=at_least(0), grid_strides=at_least(0), center_sigma=Limit(low=0, high=1, low_open=True),
        num_groups=at_least(1), mask_targets=one_of("binary", "soft"), prior_prob=open_fraction())

    def at_full_load(self) -> SOLOv2Config:
        """The same head with post-processing keeping every candidate (for timing): with random weights
        a score threshold would let Matrix NMS and the mask upsampling skip their work."""
        post = dataclasses.replace(self.postprocess, score_thr=0.0, update_thr=0.0)
        return dataclasses.replace(self, postprocess=post)
