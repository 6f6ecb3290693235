"""Pieces both heads use: the eq. 6 loss settings, Dice loss, binary mask targets, cross-process sums,
mask upsampling, boxes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from csrseg.masks.crops import any_along
from csrseg.limits import Limit, at_least, fraction, one_of


@dataclass(frozen=True)
class LossConfig:
    """Paper eq. 6: ``cls_weight * L_cls + dice_weight * L_dice + focal_weight * L_focal``; each head's
    config holds one, with that head's defaults."""

    cls_weight: float = 1.0
    dice_weight: float = 2.0
    focal_weight: float = 3.0
    cls_type: str = "focal"  # "focal" (SOLOv2/K-Net practice) or "ce" (paper's wording)
    # pixel-wise mask term weighted by focal_weight: "focal" (eq. 6) or "bce" (K-Net's original
    # loss, with cls_weight 2, dice_weight 4, focal_weight 1: the `knet` preset)
    mask_type: str = "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # alpha of the pixel-wise mask focal loss; 0.25 (the classification value) under-weights
    # foreground pixels and leaves masks under-confident, 0.5 weighs both sides alike
    mask_focal_alpha: float = 0.5

    LIMITS: ClassVar[dict[str, Limit]] = dict(
        cls_weight=at_least(0), dice_weight=at_least(0), focal_weight=at_least(0), cls_type=one_of("focal", "ce"),
        mask_type=one_of("focal", "bce"), focal_alpha=fraction(), focal_gamma=at_least(0), mask_focal_alpha=fraction())


def dice_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-mask Dice loss ``1 - 2Σab / (Σa² + Σb²)`` (SOLOv2 form). ``(P, ...)`` logits and targets -> ``(P,)``."""
    probs = torch.sigmoid(logits).flatten(1)
    targets = targets.flatten(1)
    inter = (probs * targets).sum(1)
    denom = (probs * probs).sum(1) + (targets * targets).sum(1) + 1e-6
    return 1 - 2 * inter / denom


def binary_rescale(masks: Tensor, stride: int = 8) -> Tensor:
    """``(N, H, W)`` binary masks -> ``(N, H/stride, W/stride)`` binary float targets.

    A target pixel is on when at least half of it is covered (SOLOv2 rescales its masks
    to binary ones). An instance thinner than a target pixel would get an empty target
    and teach its cell an empty mask, so it keeps its best-covered pixel(s) instead.
    """
    cover = F.avg_pool2d(masks[:, None].float(), stride)[:, 0]
    binary = cover >= 0.5
    peak = cover.flatten(1).amax(dim=1)[:, None, None]
    lost = (~binary.flatten(1).any(dim=1))[:, None, None] & (peak > 0)
    return (binary | (lost & (cover == peak))).float()


def global_sum(value: float, device: torch.device) -> tuple[float, int]:
    """Sum of ``value`` over all processes, and the world size (1 without DDP).

    Losses are normalised by such global counts and scaled by the world size, so that the
    gradient DDP averages equals that of one process holding the whole batch.
    """
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([float(value)], device=device)
        dist.all_reduce(t)
        return float(t.item()), dist.get_world_size()
    return float(value), 1


def boxes_from_masks(masks: Tensor) -> Tensor:
    """``(n, H, W)`` bool -> ``(n, 4)`` inclusive ``x0, y0, x1, y1``; zeros for an empty mask.

    Vectorised (torchvision's ``masks_to_boxes`` loops over masks, which ONNX tracing cannot follow).
    """
    return _boxes(any_along(masks, 2), any_along(masks, 1))


def _boxes(rows: Tensor, cols: Tensor) -> Tensor:
    """Boxes from which rows ``(n, H)`` and columns ``(n, W)`` of each mask hold a pixel."""
    height, width = rows.shape[1], cols.shape[1]
    ys = torch.arange(height, device=rows.device, dtype=torch.float32)
    xs = torch.arange(width, device=rows.device, dtype=torch.float32)
    big = float(max(height, width))
    y0 = torch.where(rows, ys, torch.full_like(ys, big)).amin(dim=1)
    y1 = torch.where(rows, ys, torch.full_like(ys, -1.0)).amax(dim=1)
    x0 = torch.where(cols, xs, torch.full_like(xs, big)).amin(dim=1)
    x1 = torch.where(cols, xs, torch.full_like(xs, -1.0)).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def upsample_masks(
    soft: Tensor, stride: int, input_size: tuple[int, int], orig_size: tuple[int, int], threshold: float, chunk: int = 16
) -> Tensor:
    """Probabilities ``(n, h, w)`` at ``stride`` of the padded input -> binary masks ``(n, H0, W0)``.

    Upsampled to the padded input ``(h * stride, w * stride)``, cropped to the unpadded
    ``input_size``, resized to ``orig_size``; done ``chunk`` masks at a time (0: all at once)
    so 100 full-size float masks need not sit in memory together. This full-size form is what the
    ONNX export traces; eager inference gets the same masks within their boxes
    (:func:`~csrseg.models.heads.paste.paste_masks`).
    """
    n = soft.shape[0]
    if chunk <= 0:
        return _upsample(soft, stride, input_size, orig_size, threshold)
    out = torch.zeros((n, *orig_size), dtype=torch.bool, device=soft.device)
    for start in range(0, n, chunk):
        out[start : start + chunk] = _upsample(soft[start : start + chunk], stride, input_size, orig_size, threshold)
    return out


def _upsample(soft: Tensor, stride: int, input_size, orig_size, threshold: float) -> Tensor:
    h, w = soft.shape[-2:]
    padded = F.interpolate(soft[:, None], size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    # sizes as one tensor: traced for ONNX they are computed from the image, and the branch below
    # becomes an ONNX If
    sizes = torch.stack([torch.as_tensor(v, device=soft.device) for v in (*input_size, *orig_size)])
    return _crop_resize_threshold(padded, sizes, threshold)


def _crop_resize_threshold_eager(padded: Tensor, sizes: Tensor, threshold: float) -> Tensor:
    """``(n, 1, Hp, Wp)`` probabilities -> ``(n, H0, W0)`` bool: crop to ``sizes[:2]`` (the unpadded
    input), resize to ``sizes[2:]`` (the original image), threshold.

    When the two sizes are equal (the image needed no resize) the bilinear resize is the identity,
    so it is skipped and the threshold comes before the crop: the crop then copies 1 byte a pixel,
    not 4. Same result; at 1333x800 it takes a third of the post-processing off the ONNX path.
    Scripted (not traced) so that the export keeps both branches.
    """
    in_h, in_w, out_h, out_w = int(sizes[0]), int(sizes[1]), int(sizes[2]), int(sizes[3])
    # threshold before dropping the (size 1) channel axis, and drop it with a reshape: indexing it
    # (``[:, 0]``) copies the tensor in ONNX, and a scripted ``squeeze`` exports as yet another If
    if in_h == out_h and in_w == out_w:
        return (padded > threshold).flatten(0, 1)[:, :in_h, :in_w]
    part = padded[:, :, :in_h, :in_w]
    resized = torch.nn.functional.interpolate(part, size=[out_h, out_w], mode="bilinear", align_corners=False)
    return (resized > threshold).flatten(0, 1)


with warnings.catch_warnings():
    # TorchScript is deprecated, but the ONNX export (torch.onnx, dynamo=False) traces, and only a
    # scripted function keeps a branch in a traced graph
    warnings.simplefilter("ignore", FutureWarning)
    _crop_resize_threshold = torch.jit.script(_crop_resize_threshold_eager)


def drop_empty(result: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop instances whose mask lost all its pixels (a small original size sampled from it); add boxes.

    Two passes over the full-size masks (which rows, which columns hold a pixel) give both the
    boxes and the empty masks; the masks are copied once, when the empty ones are dropped.
    """
    masks = result["masks"]
    rows, cols = any_along(masks, 2), any_along(masks, 1)
    nonempty = rows.any(dim=1)
    return dict(labels=result["labels"][nonempty], scores=result["scores"][nonempty], masks=masks[nonempty],
                boxes=_boxes(rows, cols)[nonempty])
