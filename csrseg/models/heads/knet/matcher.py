"""Hungarian matching of K-Net's proposals to ground-truth instances (one image, one stage).

cost = ``cost_cls`` · focal class cost + ``cost_dice`` · Dice cost + ``cost_mask`` · mask BCE cost
(K-Net's det config: 2, 4, 1), masks compared at stride 4. The assignment minimising the
total cost is ``scipy.optimize.linear_sum_assignment``'s; unmatched proposals are background.
The mask cost is BCE as DESIGN.md asks (``mask_cost="bce"``), which ranks the same perfect matches
first and punishes confident mistakes more, or K-Net's own linear ``-(p·t + (1-p)·(1-t))``
(``"linear"``), bounded in [0, 1] so that near-duplicate masks differ in it by less than in BCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from csrseg.models.heads.knet.config import KNetConfig


def focal_class_cost(cls_logits: Tensor, gt_labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """``(N, K)`` logits, ``(G,)`` labels -> ``(N, G)``: focal loss of calling proposal n class g,
    minus its loss of calling it background (DETR-style focal cost)."""
    probs = cls_logits.sigmoid()
    pos = -alpha * (1 - probs) ** gamma * F.logsigmoid(cls_logits)
    neg = -(1 - alpha) * probs**gamma * F.logsigmoid(-cls_logits)
    return (pos - neg)[:, gt_labels]


def dice_cost(mask_logits: Tensor, gt_masks: Tensor) -> Tensor:
    """``(N, P)`` logits, ``(G, P)`` targets in [0, 1] -> ``(N, G)`` Dice loss of every pair."""
    probs = mask_logits.sigmoid()
    inter = probs @ gt_masks.T
    denom = (probs * probs).sum(1)[:, None] + (gt_masks * gt_masks).sum(1)[None, :] + 1e-3
    return 1 - 2 * inter / denom


def mask_bce_cost(mask_logits: Tensor, gt_masks: Tensor) -> Tensor:
    """``(N, P)`` logits, ``(G, P)`` targets -> ``(N, G)`` pixel-mean binary cross-entropy of every pair."""
    pos = F.logsigmoid(mask_logits) @ gt_masks.T
    neg = F.logsigmoid(-mask_logits) @ (1 - gt_masks).T
    return -(pos + neg) / mask_logits.shape[1]


def mask_linear_cost(mask_logits: Tensor, gt_masks: Tensor) -> Tensor:
    """``(N, P)`` logits, ``(G, P)`` targets -> ``(N, G)``: K-Net's ``-(p·t + (1-p)·(1-t))`` per pixel, averaged."""
    probs = mask_logits.sigmoid()
    return -(probs @ gt_masks.T + (1 - probs) @ (1 - gt_masks).T) / mask_logits.shape[1]


MASK_COSTS = {"bce": mask_bce_cost, "linear": mask_linear_cost}


def match_cost(cls_logits: Tensor | None, mask_logits: Tensor, gt_labels: Tensor, gt_masks: Tensor,
               cfg: KNetConfig) -> Tensor:
    """The ``(N, G)`` matching cost; ``cls_logits`` ``None`` for the kernel head (it has no classes)."""
    mask_logits, gt_masks = mask_logits.float().flatten(1), gt_masks.float().flatten(1)
    cost = cfg.cost_dice * dice_cost(mask_logits, gt_masks) + cfg.cost_mask * MASK_COSTS[cfg.mask_cost](mask_logits, gt_masks)
    if cls_logits is not None and cfg.cost_cls:
        cost = cost + cfg.cost_cls * focal_class_cost(cls_logits.float(), gt_labels)
    return cost


def hungarian(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of an ``(N, G)`` cost -> (proposal indices, gt indices),
    ``min(N, G)`` pairs sorted by proposal. Non-finite costs (a diverging model) count as huge."""
    cost = torch.nan_to_num(cost.detach().float().cpu(), nan=1e8, posinf=1e8, neginf=-1e8)
    rows, cols = linear_sum_assignment(cost.double().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
