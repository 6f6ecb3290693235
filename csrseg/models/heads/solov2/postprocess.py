"""Inference post-processing: grid cells -> scored binary masks (DESIGN.md).

sigmoid scores -> local maxima (2x2 max-pool) -> score > ``score_thr`` -> masks at
stride 8 > ``mask_thr`` -> drop masks not larger than their grid's stride counted at
stride 4 -> score x maskness -> top ``nms_pre`` -> Matrix NMS (gaussian, σ=2) ->
score > ``update_thr`` -> top ``max_per_img`` -> masks upsampled to the original
image size (eager: each within its box, :func:`~csrseg.models.heads.paste.paste_instances`);
boxes derived from the masks (SOLOv2's order, DESIGN.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from csrseg.models.heads.common import drop_empty, upsample_masks
from csrseg.models.heads.paste import paste_instances
from csrseg.models.heads.solov2.config import SOLOv2PostprocessConfig
from csrseg.models.heads.solov2.outputs import SOLOv2Output


def points_nms(scores: Tensor) -> Tensor:
    """Keep only local maxima of ``(B, K, S, S)`` scores in a 2x2 window; others become 0."""
    pooled = F.max_pool2d(scores, kernel_size=2, stride=1, padding=1)[..., :-1, :-1]
    return scores * (pooled == scores).to(scores.dtype)


def matrix_nms(masks: Tensor, labels: Tensor, scores: Tensor, sigma: float = 2.0, kernel: str = "gaussian") -> Tensor:
    """Matrix NMS (SOLOv2) of masks sorted by descending score.

    Args:
        masks: ``(n, h*w)`` (or ``(n, h, w)``) binary masks, sorted by ``scores`` descending.
        labels: ``(n,)``; only masks of the same label suppress each other.
        scores: ``(n,)`` descending.
    Returns:
        ``(n,)`` decayed scores: ``score_j * min_i f(iou_ij) / f(comp_i)`` over higher-scored ``i``,
        ``comp_i`` being the largest IoU of ``i`` with a higher-scored mask of its class;
        ``f(x) = exp(-σ x²)`` (gaussian) or ``1 - x`` (linear).
    """
    n = scores.shape[0]
    if n == 0:
        return scores
    flat = masks.reshape(n, -1).to(scores.dtype)
    inter = flat @ flat.T
    areas = flat.sum(1)
    union = areas[:, None] + areas[None, :] - inter
    iou = (inter / union.clamp(min=1e-6)).triu(diagonal=1)  # iou[i, j], i scored above j
    same = (labels[:, None] == labels[None, :]).to(scores.dtype).triu(diagonal=1)
    iou = iou * same
    compensate = iou.max(dim=0).values  # (n,): comp_i
    if kernel == "gaussian":
        decay = torch.exp(-sigma * iou**2) / torch.exp(-sigma * compensate[:, None] ** 2)
    elif kernel == "linear":
        decay = (1 - iou) / (1 - compensate[:, None]).clamp(min=1e-6)
    else:
        raise ValueError(f"matrix NMS kernel {kernel!r}: choose gaussian or linear")
    return scores * decay.min(dim=0).values


def postprocess_image(
    cls_scores: Tensor,
    kernels: Tensor,
    cell_strides: Tensor,
    mask_feats: Tensor,
    input_size: tuple[int, int],
    orig_size: tuple[int, int],
    cfg: SOLOv2PostprocessConfig,
    static: bool = False,
) -> dict[str, Tensor]:
    """One image's cells -> instances, in SOLOv2's order.

    Every cell with a class score above ``score_thr`` gets its mask; masks not larger
    than their grid's stride counted at stride 4 (SOLOv2's rule; our masks are at
    stride 8, so the stride is divided by 4) are dropped; scores are multiplied by
    maskness; only then the ``nms_pre`` best go to Matrix NMS.

    Args:
        cls_scores: ``(N, K)`` sigmoid scores after :func:`points_nms`, all grids concatenated.
        kernels: ``(N, E)`` dynamic kernels of those cells.
        cell_strides: ``(N,)`` stride of each cell's grid (its minimum mask area at stride 4).
        mask_feats: ``(E, h, w)`` at stride 8 of the padded input.
        input_size: ``(H_in, W_in)`` of the resized image before padding.
        orig_size: ``(H0, W0)`` of the original image.
        static: examine every cell and keep all ``nms_pre`` candidates to the end, masking
            out the rejected ones instead of dropping them: no data-dependent shapes until
            the final selection, as ONNX export needs. Results are the same: a rejected
            candidate gets score 0 and an empty mask, so it sorts last and suppresses
            nothing in Matrix NMS.
    Returns:
        dict with ``labels (n,)``, ``scores (n,)``, ``masks``, ``boxes (n, 4)`` xyxy; ``masks`` a
        :class:`~csrseg.masks.crops.MaskCrops`, or ``(n, H0, W0)`` bool when ``static``.
    """
    num_classes = cls_scores.shape[1]
    e, h, w = mask_feats.shape
    feats = mask_feats.reshape(e, -1)
    if static:
        cells = torch.arange(cls_scores.shape[0], device=cls_scores.device)
    else:  # eager: only cells with a candidate need a mask
        cells = (cls_scores > cfg.score_thr).any(dim=1).nonzero().flatten()
    areas, maskness = mask_stats(kernels[cells], feats, cfg.mask_thr)
    valid = (areas > cell_strides[cells] / 4).to(cls_scores.dtype)
    cell_scores = cls_scores[cells]
    cand = torch.where(cell_scores > cfg.score_thr, cell_scores, torch.zeros_like(cell_scores))
    cand = (cand * (maskness * valid)[:, None]).flatten()  # (n_cells * K,)
    top = torch.topk(cand, min(cfg.nms_pre, cand.numel()))  # nms_pre after maskness (SOLOv2), sorted
    scores, idx = top.values, top.indices
    if not static:
        count = int((scores > 0).sum())
        scores, idx = scores[:count], idx[:count]
    picked, labels = cells[idx // num_classes], idx % num_classes

    soft = torch.sigmoid(kernels[picked] @ feats)  # (n, h*w)
    binary = (soft > cfg.mask_thr) & (scores > 0)[:, None]
    scores = matrix_nms(binary, labels, scores, cfg.sigma, cfg.kernel)
    order = torch.argsort(scores, descending=True)[: cfg.max_per_img]
    soft, scores, labels = soft[order], scores[order], labels[order]
    keep = scores > cfg.update_thr
    soft, scores, labels = soft[keep], scores[keep], labels[keep]

    soft = soft.reshape(-1, h, w)
    if not static:
        return paste_instances(labels, scores, soft, 8, input_size, orig_size, cfg.mask_thr)
    masks = upsample_masks(soft, 8, input_size, orig_size, cfg.mask_thr, chunk=0)
    return drop_empty(dict(labels=labels, scores=scores, masks=masks))


def mask_stats(kernels: Tensor, feats: Tensor, threshold: float, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Area and maskness of the masks of ``(n, E)`` kernels on ``(E, h*w)`` features, each ``(n,)``.

    Maskness is the mean probability inside the binary mask (SOLOv2). Done ``chunk``
    kernels at a time so that a thousand candidate masks never sit in memory together.
    """
    areas, maskness = [], []
    for start in range(0, kernels.shape[0], chunk):
        soft = torch.sigmoid(kernels[start : start + chunk] @ feats)
        binary = (soft > threshold).to(soft.dtype)
        area = binary.sum(1)
        areas.append(area)
        maskness.append((soft * binary).sum(1) / area.clamp(min=1))
    if not areas:
        empty = feats.new_zeros(0)
        return empty, empty
    return torch.cat(areas), torch.cat(maskness)


def postprocess(
    outputs: SOLOv2Output,
    input_sizes: list[tuple[int, int]],
    orig_sizes: list[tuple[int, int]],
    grid_strides: tuple[int, ...],
    cfg: SOLOv2PostprocessConfig,
    static: bool = False,
) -> list[dict[str, Tensor]]:
    """Batch of raw :class:`SOLOv2Output` -> one instance dict per image (see :func:`postprocess_image`)."""
    b = outputs.mask_feats.shape[0]
    scores = [points_nms(torch.sigmoid(lg.float())) for lg in outputs.cls_logits]
    flat_scores = torch.cat([s.permute(0, 2, 3, 1).reshape(b, -1, s.shape[1]) for s in scores], dim=1)
    flat_kernels = torch.cat([k.permute(0, 2, 3, 1).reshape(b, -1, k.shape[1]) for k in outputs.kernels], dim=1)
    cell_strides = torch.cat(
        [torch.full((lg.shape[-2] * lg.shape[-1],), float(s), device=flat_scores.device) for lg, s in zip(outputs.cls_logits, grid_strides)]
    )
    return [
        postprocess_image(
            flat_scores[i], flat_kernels[i].float(), cell_strides, outputs.mask_feats[i].float(),
            input_sizes[i], orig_sizes[i], cfg, static,
        )
        for i in range(b)
    ]
