"""K-Net's head settings (``model.head`` when ``model.head.type=knet``): K-Net's det config
(``knet_s3_r50_fpn``), its losses and its inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from csrseg.limits import Limit, at_least, fraction, one_of, open_fraction
from csrseg.models.heads.common import LossConfig

POSITIONS = ("none", "sine", "coords")  # what model.head.position may add to the head's input


@dataclass(frozen=True)
class KNetPostprocessConfig:
    """Inference: the top ``max_per_img`` (proposal, class) pairs of the last stage, masks > ``mask_thr``."""

    mask_thr: float = 0.5
    max_per_img: int = 100

    LIMITS: ClassVar[dict[str, Limit]] = dict(mask_thr=fraction(), max_per_img=at_least(1))


@dataclass(frozen=True)
class KNetConfig:
    """K-Net's head: kernel head + iterative kernel-update stages.

    ``cost_*`` weigh the Hungarian matching cost (focal class, Dice, mask BCE); ``semantic_weight``
    the auxiliary semantic focal loss of the kernel head. ``assign_on_previous``: each stage is
    matched on the previous stage's predictions (the kernel head's for stage 1), as K-Net does;
    off, on its own. ``loss``: eq. 6 (the paper's 1, 2, 3 by default; the ``knet`` preset sets
    K-Net's own weights).
    """

    type: str = "knet"
    num_proposals: int = 100
    num_stages: int = 3
    ffn_channels: int = 2048
    num_heads: int = 8
    num_groups: int = 32  # at most; the largest count dividing the width is used
    kernel_init_std: float = 1.0
    hard_mask_thr: float = 0.5
    prior_prob: float = 0.01
    cost_cls: float = 2.0
    cost_dice: float = 4.0
    cost_mask: float = 1.0
    semantic_weight: float = 1.0
    assign_on_previous: bool = True
    # What K-Net's own neck gives its head that one fused feature (CSR + D2S) does not, as choices; the
    # defaults are the head as K-Net defines it. branch_convs: 3x3 conv-GN-ReLU layers on each of the
    # two branches before its 1x1 (the paper writes of four per branch); position: "sine" adds DETR's
    # encoding to the head's input (as K-Net's neck adds it to P5), "coords" appends x, y channels to
    # each branch's input (as SOLOv2 does); mask_cost: the matching's mask term, "bce" (pixel-mean
    # BCE, DESIGN.md) or "linear" (K-Net's own, -(p t + (1-p)(1-t)) per pixel, bounded in [0, 1]).
    branch_convs: int = 0
    position: str = "none"
    mask_cost: str = "bce"
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: KNetPostprocessConfig = field(default_factory=KNetPostprocessConfig)

    LIMITS: ClassVar[dict[str, Limit]] = dict(
        num_proposals=at_least(1), num_stages=at_least(1), ffn_channels=at_least(1), num_heads=at_least(1),
        num_groups=at_least(1), kernel_init_std=at_least(0), hard_mask_thr=fraction(), prior_prob=open_fraction(),
        cost_cls=at_least(0), cost_dice=at_least(0), cost_mask=at_least(0), semantic_weight=at_least(0),
        branch_convs=at_least(0), position=one_of(*POSITIONS), mask_cost=one_of("bce", "linear"))

    def at_full_load(self) -> KNetConfig:
        """The same head with post-processing keeping every candidate (for timing): K-Net keeps its
        top ``max_per_img`` whatever their scores already."""
        return self
