"""Target assignment: which grid cells are positive for which instance (SOLOv2 rule).

For every instance and every grid whose scale range contains ``sqrt(w*h)`` of the
instance's box (ranges overlap, so an instance can be positive on two grids),
the cells around the mask's centre of mass within ``center_sigma`` x half the
box size are positive, clipped to the 3 x 3 cells around the centre cell. Where
instances compete for a cell the smaller one wins (it is assigned last).
Coordinates are those of the padded input; the grid covers the padded input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.common import binary_rescale


@dataclass
class GridTargets:
    """Targets of one grid level for a batch.

    ``labels``: ``(B, S, S)`` class index or ``num_classes`` for background.
    ``pos_batch``: ``(P,)`` image index of each positive cell.
    ``pos_cell``: ``(P,)`` flat cell index ``i * S + j`` of each positive cell.
    ``masks``: ``(P, H/8, W/8)`` binary float target mask (:func:`binary_rescale`), or each stride-8
    pixel's covered share with ``mask_targets="soft"``.
    """

    labels: Tensor
    pos_batch: Tensor
    pos_cell: Tensor
    masks: Tensor


def instance_geometry(masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For ``(N, H, W)`` binary masks: centre of mass ``(cy, cx)`` and box size ``(h, w)``, each ``(N,)``."""
    masks = masks.float()
    n, height, width = masks.shape
    area = masks.sum(dim=(1, 2)).clamp(min=1)
    ys = torch.arange(height, dtype=torch.float32, device=masks.device)
    xs = torch.arange(width, dtype=torch.float32, device=masks.device)
    rows, cols = masks.sum(dim=2), masks.sum(dim=1)  # (N, H), (N, W)
    cy = (rows * ys).sum(1) / area + 0.5
    cx = (cols * xs).sum(1) / area + 0.5
    row_any, col_any = rows > 0, cols > 0
    y0 = torch.where(row_any, ys, torch.full_like(ys, height)).min(1).values
    y1 = torch.where(row_any, ys, torch.full_like(ys, -1)).max(1).values
    x0 = torch.where(col_any, xs, torch.full_like(xs, width)).min(1).values
    x1 = torch.where(col_any, xs, torch.full_like(xs, -1)).max(1).values
    return cy, cx, (y1 - y0 + 1).clamp(min=0), (x1 - x0 + 1).clamp(min=0)


def center_cells(cy: float, cx: float, half_h: float, half_w: float, pad_h: int, pad_w: int, grid: int) -> tuple[int, int, int, int]:
    """Inclusive cell range ``(top, down, left, right)`` of the centre region on an S x S grid."""
    coord_h = int(cy / pad_h * grid)
    coord_w = int(cx / pad_w * grid)
    top = max(0, int((cy - half_h) / pad_h * grid), coord_h - 1)
    down = min(grid - 1, int((cy + half_h) / pad_h * grid), coord_h + 1)
    left = max(0, int((cx - half_w) / pad_w * grid), coord_w - 1)
    right = min(grid - 1, int((cx + half_w) / pad_w * grid), coord_w + 1)
    return top, down, left, right


def assign_targets(
    gt_labels: list[Tensor],
    gt_masks: list[Tensor],
    pad_size: tuple[int, int],
    num_classes: int,
    cfg: SOLOv2Config,
) -> list[GridTargets]:
    """Assign every image's instances to grid cells.

    Args:
        gt_labels: per image ``(N_i,)`` int64 labels in ``[0, num_classes)``.
        gt_masks: per image ``(N_i, H, W)`` binary masks at the padded input size.
        pad_size: ``(H, W)`` of the padded input (multiples of 8).
    Returns one :class:`GridTargets` per grid of ``cfg.num_grids``.
    """
    pad_h, pad_w = pad_size
    feat_h, feat_w = pad_h // 8, pad_w // 8
    device = gt_masks[0].device if gt_masks else torch.device("cpu")
    per_level: list[dict[str, list]] = [dict(labels=[], batch=[], cell=[], masks=[]) for _ in cfg.num_grids]
    for b, (labels, masks) in enumerate(zip(gt_labels, gt_masks)):
        if masks.numel():
            if cfg.mask_targets == "soft":
                small = F.avg_pool2d(masks[:, None].float(), 8)[:, 0]  # (N, H/8, W/8) coverage in [0, 1]
            else:
                small = binary_rescale(masks)  # (N, H/8, W/8)
            cy, cx, box_h, box_w = instance_geometry(masks)
            scale = (box_h * box_w).sqrt()
            order = torch.argsort(box_h * box_w, descending=True).tolist()  # small instances assigned last
        for level, (grid, (lo, hi)) in enumerate(zip(cfg.num_grids, cfg.scale_ranges)):
            owner = torch.full((grid, grid), -1, dtype=torch.long)
            if masks.numel():
                for idx in order:
                    if not (lo <= scale[idx] <= hi) or box_h[idx] == 0:
                        continue
                    top, down, left, right = center_cells(
                        float(cy[idx]), float(cx[idx]),
                        0.5 * float(box_h[idx]) * cfg.center_sigma,
                        0.5 * float(box_w[idx]) * cfg.center_sigma,
                        pad_h, pad_w, grid,
                    )
                    owner[top : down + 1, left : right + 1] = idx
            owner = owner.to(device)
            cell_labels = torch.full((grid, grid), num_classes, dtype=torch.long, device=device)
            pos = (owner >= 0).flatten().nonzero().flatten()
            inst = owner.flatten()[pos]
            if pos.numel():
                cell_labels.view(-1)[pos] = labels[inst]
                per_level[level]["masks"].append(small[inst])
            per_level[level]["labels"].append(cell_labels)
            per_level[level]["batch"].append(torch.full_like(pos, b))
            per_level[level]["cell"].append(pos)
    out = []
    for level, grid in enumerate(cfg.num_grids):
        parts = per_level[level]
        masks = torch.cat(parts["masks"]) if parts["masks"] else torch.zeros((0, feat_h, feat_w), device=device)
        out.append(GridTargets(torch.stack(parts["labels"]), torch.cat(parts["batch"]), torch.cat(parts["cell"]), masks))
    return out
