"""K-Net's training loss: per image and stage, Hungarian matching, then eq. 6 on the matches.

For the kernel head's initial masks (round 0) and each update stage (rounds 1..S), stage
weights 1 (K-Net's ``stage_loss_weights``):

- ``L_cls``: sigmoid focal loss over all ``N x K`` (proposal, class) pairs, matched proposals
  positive for their class, normalised by the number of matches (K-Net's avg_factor); the
  kernel head predicts no classes, so round 0 has none. ``cls_type="ce"``: BCE averaged over pairs.
- ``L_dice``: ``1 - 2Σab/(Σa²+Σb²)`` per matched mask, averaged over matches.
- pixel term: sigmoid focal (eq. 6, ``mask_type="focal"``) or BCE (K-Net, ``"bce"``) of the
  matched masks, averaged over pixels, then over matches.
- ``total = cls_weight·L_cls + dice_weight·L_dice + focal_weight·pixel`` summed over rounds,
  plus ``semantic_weight`` x the auxiliary semantic focal loss (normalised by foreground pixels).

Masks are compared at stride 4: predictions upsampled x2 (bilinear), ground truth area-downsampled
(soft targets, as K-Net's bilinear downsampling gives). Round ``r`` is matched on round ``r - 1``'s
predictions (K-Net's ``post_assign=False``; round 0 on its own) unless ``assign_on_previous`` is off.
Counts are summed over processes and losses scaled by the world size, as in the SOLOv2 loss, so
DDP's averaged gradient is one process's over the whole batch; an image without instances gives
only background terms, and the mask terms are then exact zeros that keep every parameter in the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from csrseg.errors import ConfigError
from csrseg.models.heads.common import dice_loss, global_sum
from csrseg.models.heads.knet.config import KNetConfig
from csrseg.models.heads.knet.matcher import hungarian, match_cost
from csrseg.models.heads.knet.outputs import KNetOutput


def stride4_targets(gt_masks: Tensor) -> Tensor:
    """``(G, H, W)`` binary masks at the padded input -> ``(G, H/4, W/4)`` covered fractions."""
    if gt_masks.numel() == 0:
        return gt_masks.new_zeros((0, gt_masks.shape[-2] // 4, gt_masks.shape[-1] // 4), dtype=torch.float32)
    return F.avg_pool2d(gt_masks[:, None].float(), 4)[:, 0]


def paint_semantic(labels: Tensor, masks: Tensor, num_classes: int) -> Tensor:
    """``(G,)`` labels and ``(G, h, w)`` covered fractions -> ``(h, w)`` class map, ``num_classes`` = background.

    A pixel takes the label of the last instance covering at least half of it.
    """
    out = torch.full(masks.shape[-2:], num_classes, dtype=torch.long, device=masks.device)
    for label, mask in zip(labels, masks):
        out[mask >= 0.5] = label
    return out


class KNetLoss(nn.Module):
    """``forward(outputs, gt_labels, gt_masks)`` -> dict of scalar losses (``"loss"``: the total)."""

    def __init__(self, num_classes: int, cfg: KNetConfig) -> None:
        super().__init__()
        if cfg.loss.cls_type not in ("focal", "ce"):
            raise ConfigError(f"model.head.loss.cls_type={cfg.loss.cls_type!r}: choose focal or ce")
        if cfg.mask_cost not in ("bce", "linear"):
            raise ConfigError(f"model.head.mask_cost={cfg.mask_cost!r}: choose bce or linear")
        if cfg.loss.mask_type not in ("focal", "bce"):
            raise ConfigError(f"model.head.loss.mask_type={cfg.loss.mask_type!r}: choose focal or bce")
        self.num_classes = num_classes
        self.cfg = cfg
        self.loss_cfg = cfg.loss

    def forward(self, outputs: KNetOutput, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        device = outputs.sem_logits.device
        targets = [stride4_targets(m) for m in gt_masks]
        num_props = outputs.stage_masks[0].shape[1]
        num_pos, world = global_sum(sum(min(num_props, len(t)) for t in targets), device)
        norm = max(num_pos, 1.0)
        up = [F.interpolate(m.float(), scale_factor=2.0, mode="bilinear", align_corners=False) for m in outputs.stage_masks]
        cls = [None] + [c.float() for c in outputs.stage_cls]  # round 0 (kernel head) has no classes

        matches: dict[int, list[tuple[Tensor, Tensor]]] = {}
        totals = dict(loss_cls=up[0].new_zeros(()), loss_dice=up[0].new_zeros(()), loss_pix=up[0].new_zeros(()))
        for r in range(len(up)):
            source = max(r - 1, 0) if self.cfg.assign_on_previous else r
            if source not in matches:
                matches[source] = self._match(cls[source], up[source], gt_labels, targets)
            dice, pix = self._mask_terms(up[r], targets, matches[source])
            totals["loss_dice"] = totals["loss_dice"] + dice / norm * world
            totals["loss_pix"] = totals["loss_pix"] + pix / norm * world
            if cls[r] is not None:
                totals["loss_cls"] = totals["loss_cls"] + self._cls_term(cls[r], gt_labels, matches[source], norm) * world
        loss_sem = self._semantic_term(outputs.sem_logits, gt_labels, targets) * world

        lc = self.loss_cfg
        total = (lc.cls_weight * totals["loss_cls"] + lc.dice_weight * totals["loss_dice"]
                 + lc.focal_weight * totals["loss_pix"] + self.cfg.semantic_weight * loss_sem)
        pix_name = "loss_focal" if lc.mask_type == "focal" else "loss_mask"
        return {"loss": total, "loss_cls": totals["loss_cls"], "loss_dice": totals["loss_dice"],
                pix_name: totals["loss_pix"], "loss_sem": loss_sem}

    @torch.no_grad()
    def _match(self, cls: Tensor | None, masks: Tensor, gt_labels: list[Tensor], targets: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per image, (proposal indices, gt indices) on the masks' device.

        The batch's cost matrices leave the device in one copy and the assignments return in one:
        on a GPU each copy waits for all queued work, and one per image and index tensor (about 150 a
        step with 8 images and 4 rounds) kept it idle for much of a demo-sized step.
        """
        device = masks.device
        costs = {b: match_cost(None if cls is None else cls[b], masks[b], labels, target, self.cfg)
                 for b, (labels, target) in enumerate(zip(gt_labels, targets)) if len(labels)}
        flat = torch.cat([c.flatten() for c in costs.values()]).cpu() if costs else torch.zeros(0)
        pairs: dict[int, tuple[Tensor, Tensor]] = {}
        start = 0
        for b, cost in costs.items():
            pairs[b] = hungarian(flat[start:start + cost.numel()].view(cost.shape))
            start += cost.numel()
        empty = torch.zeros(0, dtype=torch.long)
        indices = [pairs.get(b, (empty, empty)) for b in range(len(gt_labels))]
        lengths = [len(props) for props, _ in indices]
        on_device = torch.cat([torch.cat(pair) for pair in indices]).to(device).split([2 * n for n in lengths])
        return [(both[:n], both[n:]) for both, n in zip(on_device, lengths)]

    def _mask_terms(self, masks: Tensor, targets: list[Tensor], matches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Sums over matched masks of the Dice loss and of the pixel-mean pixel loss."""
        zero = masks.sum() * 0.0  # exact zero that keeps every mask parameter in the graph (DDP)
        dice_sum, pix_sum = zero, zero.clone()
        for b, (props, gts) in enumerate(matches):
            if props.numel() == 0:
                continue
            pred = masks[b][props.to(masks.device)].flatten(1)
            target = targets[b][gts.to(masks.device)].flatten(1)
            dice_sum = dice_sum + dice_loss(pred, target).sum()
            if self.loss_cfg.mask_type == "focal":
                pix = sigmoid_focal_loss(pred, target, self.loss_cfg.mask_focal_alpha, self.loss_cfg.focal_gamma, reduction="none")
            else:
                pix = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            pix_sum = pix_sum + pix.mean(dim=1).sum()
        return dice_sum, pix_sum

    def _cls_term(self, cls: Tensor, gt_labels: list[Tensor], matches: list[tuple[Tensor, Tensor]], norm: float) -> Tensor:
        b, n, k = cls.shape
        onehot = torch.zeros_like(cls)
        for i, (props, gts) in enumerate(matches):
            if props.numel():
                onehot[i, props.to(cls.device), gt_labels[i][gts.to(gt_labels[i].device)].to(cls.device)] = 1.0
        if self.loss_cfg.cls_type == "focal":
            return sigmoid_focal_loss(cls, onehot, self.loss_cfg.focal_alpha, self.loss_cfg.focal_gamma, reduction="sum") / norm
        pairs, _ = global_sum(b * n, cls.device)
        return F.binary_cross_entropy_with_logits(cls, onehot, reduction="sum") / pairs

    def _semantic_term(self, sem_logits: Tensor, gt_labels: list[Tensor], targets: list[Tensor]) -> Tensor:
        logits = F.interpolate(sem_logits.float(), scale_factor=2.0, mode="bilinear", align_corners=False)  # stride 4
        painted = torch.stack([
            paint_semantic(labels.to(logits.device), target.to(logits.device), self.num_classes)
            for labels, target in zip(gt_labels, targets)
        ])  # (B, h, w)
        onehot = F.one_hot(painted, self.num_classes + 1)[..., : self.num_classes].permute(0, 3, 1, 2).to(logits.dtype)
        fg, _ = global_sum(float((painted < self.num_classes).sum()), logits.device)
        loss = sigmoid_focal_loss(logits, onehot, self.loss_cfg.focal_alpha, self.loss_cfg.focal_gamma, reduction="sum")
        return loss / max(fg, 1.0)
