"""The neck's settings (``model.neck``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from csrseg.limits import Limit, at_least, one_of

NECK_TYPES = ("fusion", "fpn_semantic", "fpn_semantic_c3")  # csrseg.models.necks.NECKS builds each


@dataclass(frozen=True)
class NeckConfig:
    """The neck: ``type`` ``fusion`` (CSR + D2S, paper Fig. 1, with its ablation switches,
    Tables II, III) or ``fpn_semantic`` (K-Net's FPN on C2-C5 + SemanticFPN, Table II row 1,
    which reads only ``channels`` and ``num_groups``; ``fpn_semantic_c3``: the same on C3-C5, an
    ablation).

    ``reweight``: Cross-Scale Reweighting on C5 (paper) or a plain lateral conv.
    ``upsample``: ``d2s`` (paper) or ``nearest`` (the FPN baseline).
    ``fuse``: ``sum`` (default) or ``mean`` of the merged levels.
    ``output_norm``: GroupNorm + ReLU after the FPN baseline's 3x3 output conv. Off in the
    paper's baseline; a control that gives nearest upsampling the normalisation D2S
    brings with it, to tell D2S's learned upsampling from its GN + ReLU.
    ``output_conv``: FPN's 3x3 output conv after a nearest last step (``upsample=nearest`` or
    ``d2s_steps=top``). False: the neck ends at the last sum, which is how the paper words its neck
    ("the fused feature and the low-level feature C3 are summed"); an ablation (issue 31).
    ``d2s_output_conv``: a 3x3 convolution after the D2S path's last sum, as the FPN baseline has
    one after its own. The paper's Fig. 1 ends the neck at the sum (a 1x1 lateral of C3 plus the D2S
    output, no 3x3 over them); an ablation (issue 31): does K-Net's head lack that context?
    ``d2s_expand``: channels multiplied by a 1x1 conv before each D2S shuffle (1: DESIGN.md's D2S,
    the shuffle keeps ``channels / 4``; 4: ESPCN's sub-pixel layer, which the paper cites, keeps
    ``channels``; see :mod:`csrseg.models.layers.d2s`).
    ``d2s_norm``: GroupNorm + ReLU at the end of each D2S block (DESIGN.md's; the paper names only the
    depthwise-separable conv). Off, D2S is linear, as the nearest path it replaces: an ablation (issue 31).
    ``d2s_icnr``: with ``d2s_expand`` > 1, the expansion starts as ICNR, i.e. D2S starts as nearest
    upsampling + spatial mixing, free of the shuffle's checkerboard (an ablation, issue 31).
    ``d2s_steps``: which top-down steps D2S takes, ``both`` (DESIGN.md's reading of Fig. 1), ``top``
    (only C5 -> stride 16; the step to stride 8 is nearest + FPN's 3x3 output conv: the paper's last
    words on the neck, "C5 reweighted by CSR and the original C4 are fused together by the D2S module.
    The fused feature and the low-level feature C3 are summed", read literally) or ``bottom`` (only
    stride 16 -> 8). An ablation (issue 31): which D2S is it that K-Net's head loses on?
    """

    type: str = "fusion"
    channels: int = 256
    csr_channels: int = 256
    reweight: bool = True
    upsample: str = "d2s"
    fuse: str = "sum"
    # GroupNorm groups, at most: a width this does not divide gets the largest count that does
    num_groups: int = 32
    output_norm: bool = False
    output_conv: bool = True
    d2s_output_conv: bool = False
    d2s_expand: int = 1
    d2s_norm: bool = True
    d2s_icnr: bool = False
    d2s_steps: str = "both"

    LIMITS: ClassVar[dict[str, Limit]] = dict(type=one_of(*NECK_TYPES), channels=at_least(1), csr_channels=at_least(1),
                                             upsample=one_of("d2s", "nearest"), fuse=one_of("sum", "mean"),
                                             num_groups=at_least(1), d2s_expand=one_of(1, 2, 4),
                                             d2s_steps=one_of("both", "top", "bottom"))
