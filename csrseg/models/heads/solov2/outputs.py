"""What the SOLOv2 head returns: the type its loss and its post-processing read."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class SOLOv2Output(NamedTuple):
    """Raw head predictions for a batch.

    ``cls_logits[l]``: ``(B, K, S_l, S_l)``; ``kernels[l]``: ``(B, E, S_l, S_l)``;
    ``mask_feats``: ``(B, E, H/8, W/8)``.
    """

    cls_logits: list[Tensor]
    kernels: list[Tensor]
    mask_feats: Tensor
