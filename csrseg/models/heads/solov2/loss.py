"""Training loss, paper eq. 6: ``L = α·L_cls + β·L_dice + γ·L_focal`` (α, β, γ = 1, 2, 3).

- ``L_cls``: sigmoid focal loss over all grid cells of all grids, normalised by the
  number of positive cells + 1 (``cls_type="ce"``: binary cross-entropy averaged
  over cells, the paper's literal wording).
- ``L_dice``: ``1 - 2Σab / (Σa² + Σb²)`` per positive cell's mask, averaged over positives.
- ``L_focal``: pixel-wise sigmoid focal loss of the same masks, averaged over
  pixels, then over positives.

Counts are summed over all processes under DDP and each process's loss is scaled
by the world size, so the averaged gradient equals that of one process holding
the whole batch. An image (or a batch) without instances contributes only
``L_cls``; the mask terms are then an exact zero that still touches every head
parameter, so DDP finds no unused parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from csrseg.errors import ConfigError
from csrseg.models.heads.common import dice_loss, global_sum
from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.solov2.outputs import SOLOv2Output
from csrseg.models.heads.solov2.targets import GridTargets, assign_targets


class SOLOLoss(nn.Module):
    """``forward(outputs, gt_labels, gt_masks)`` -> dict of scalar losses.

    ``gt_labels[b]``: ``(N_b,)`` int64; ``gt_masks[b]``: ``(N_b, H, W)`` binary at the
    padded input size ``(H, W) = 8 * mask_feats.shape[-2:]``.
    """

    def __init__(self, num_classes: int, head_cfg: SOLOv2Config) -> None:
        super().__init__()
        if head_cfg.loss.cls_type not in ("focal", "ce"):
            raise ConfigError(f"model.head.loss.cls_type={head_cfg.loss.cls_type!r}: choose focal or ce")
        self.num_classes = num_classes
        self.head_cfg = head_cfg
        self.cfg = head_cfg.loss

    def forward(self, outputs: SOLOv2Output, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        mask_feats = outputs.mask_feats
        pad_size = (mask_feats.shape[-2] * 8, mask_feats.shape[-1] * 8)
        targets = assign_targets(gt_labels, gt_masks, pad_size, self.num_classes, self.head_cfg)
        num_pos, world = global_sum(sum(t.pos_cell.numel() for t in targets), mask_feats.device)

        loss_cls = self._cls_loss(outputs.cls_logits, targets, num_pos) * world
        dice_sum, focal_sum = self._mask_loss_sums(outputs, targets)
        loss_dice = dice_sum / max(num_pos, 1.0) * world
        loss_focal = focal_sum / max(num_pos, 1.0) * world
        total = self.cfg.cls_weight * loss_cls + self.cfg.dice_weight * loss_dice + self.cfg.focal_weight * loss_focal
        return dict(loss=total, loss_cls=loss_cls, loss_dice=loss_dice, loss_focal=loss_focal)

    def _cls_loss(self, cls_logits: list[Tensor], targets: list[GridTargets], num_pos: float) -> Tensor:
        logits = torch.cat([lg.permute(0, 2, 3, 1).reshape(-1, self.num_classes) for lg in cls_logits])
        labels = torch.cat([t.labels.reshape(-1) for t in targets])
        onehot = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes].to(logits.dtype)
        logits = logits.float()
        if self.cfg.cls_type == "focal":
            loss = sigmoid_focal_loss(logits, onehot.float(), self.cfg.focal_alpha, self.cfg.focal_gamma, reduction="sum")
            return loss / (num_pos + 1.0)
        # Cells are averaged over the whole batch of all processes, like the focal normaliser.
        cells, _ = global_sum(logits.shape[0], logits.device)
        return F.binary_cross_entropy_with_logits(logits, onehot.float(), reduction="sum") / cells

    def _mask_loss_sums(self, outputs: SOLOv2Output, targets: list[GridTargets]) -> tuple[Tensor, Tensor]:
        mask_feats = outputs.mask_feats  # (B, E, h, w)
        b, e, h, w = mask_feats.shape
        # Exact zeros that keep every kernel and mask parameter in the graph.
        dice_sum = sum(k.sum() for k in outputs.kernels) * 0.0 + mask_feats.sum() * 0.0
        focal_sum = dice_sum.clone()
        for kernels, target in zip(outputs.kernels, targets):
            if target.pos_cell.numel() == 0:
                continue
            flat_kernels = kernels.float().permute(0, 2, 3, 1).reshape(b, -1, e)  # (B, S*S, E), fp32 under AMP
            pos_kernels = flat_kernels[target.pos_batch, target.pos_cell]  # (P, E)
            # Dynamic 1x1 conv image by image: (P_b, E) @ (E, h*w) never builds a (P, E, h, w)
            # tensor. Positives are grouped by image in ascending order (assign_targets).
            logits = torch.cat(
                [pos_kernels[target.pos_batch == i] @ mask_feats[i].float().reshape(e, -1) for i in range(b)]
            )
            mask_targets = target.masks.reshape(-1, h * w).float()
            dice_sum = dice_sum + dice_loss(logits, mask_targets).sum()
            focal = sigmoid_focal_loss(logits, mask_targets, self.cfg.mask_focal_alpha, self.cfg.focal_gamma, reduction="none")
            focal_sum = focal_sum + focal.mean(dim=1).sum()
        return dice_sum, focal_sum
