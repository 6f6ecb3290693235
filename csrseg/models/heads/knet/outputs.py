"""What K-Net's head returns: the type its loss and its post-processing read."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class KNetOutput(NamedTuple):
    """Raw K-Net predictions for a batch.

    ``stage_masks[s]``: ``(B, N, H/8, W/8)`` mask logits, ``s = 0`` the kernel head's, then one
    per update stage; ``stage_cls[s]``: ``(B, N, K)`` class logits of update stage ``s + 1``;
    ``sem_logits``: ``(B, K, H/8, W/8)`` auxiliary semantic logits.
    """

    stage_masks: list[Tensor]
    stage_cls: list[Tensor]
    sem_logits: Tensor
