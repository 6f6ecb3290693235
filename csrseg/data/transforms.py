"""Geometric and photometric transforms; masks follow every geometric step.

A sample is ``image`` ``(3, H, W)`` float in [0, 255] and ``masks`` ``(N, H, W)``
uint8. Normalisation happens last; padding to a multiple of ``size_divisor``
happens in :func:`collate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from csrseg.limits import Limit, above, at_least, finite, fraction


@dataclass(frozen=True)
class InputConfig:
    """Resize / flip / normalise / pad. ``train_short_sides`` enables multi-scale training.

    ``crop``: train on ``crop`` x ``crop`` crops (tiles) of the image scaled by ``crop_scale`` (1: its
    own pixels) instead of the whole image resized to ``short_side``/``max_size``: small objects keep
    their pixels and a step costs the crop, not the frame. An instance cut by the crop's edge is the
    part the crop holds. 0: off. A model trained on crops predicts in tiles of its crop at the
    frame's scale, ``crop / crop_scale`` px, without being asked (predict, eval, evaluation while
    training; :func:`csrseg.inference.tiling.model_tile`).
    """

    short_side: int = 800
    max_size: int = 1333
    train_short_sides: tuple[int, ...] = ()
    flip_prob: float = 0.5
    size_divisor: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop: int = 0
    crop_scale: float = 1.0

    LIMITS: ClassVar[dict[str, Limit]] = dict(
        short_side=at_least(1), max_size=at_least(1), train_short_sides=at_least(1), flip_prob=fraction(),
        size_divisor=at_least(1), mean=finite(), std=above(0), crop=at_least(0), crop_scale=above(0))


def target_size(height, width, short_side: int, max_size: int, scale: float | None = None):
    """``(H, W)`` an image of ``height`` x ``width`` is resized to: keeping the aspect ratio, short side
    ``short_side`` and long side at most ``max_size``, or scaled by ``scale`` when given (a model
    trained on crops sees every image at its ``crop_scale``); each side rounded half to even and at
    least 1. Written once for Python numbers (the data pipeline) and 0-d float64 tensors (the ONNX
    export traces it: :class:`csrseg.deploy.onnx.ExportModel`), so both resize alike."""
    if isinstance(height, Tensor):
        lo, hi = torch.minimum, torch.maximum

        def side(value: Tensor) -> Tensor:
            return torch.round(value).long().clamp(min=1)
    else:
        lo, hi = min, max

        def side(value: float) -> int:
            return max(1, int(round(value)))
    if scale is None:
        scale = lo(short_side / lo(height, width), max_size / hi(height, width))
    return side(height * scale), side(width * scale)


def network_size(height, width, cfg: InputConfig, short_side: int | None = None):
    """:func:`target_size` as the model's ``cfg`` asks at inference (``short_side`` in place of its own
    for multi-scale training)."""
    return target_size(height, width, short_side or cfg.short_side, cfg.max_size,
                       scale=cfg.crop_scale if cfg.crop else None)


def resize(image: Tensor, masks: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Bilinear resize of the image; masks resized bilinearly and re-thresholded at 0.5."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, masks
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if masks.shape[0]:
        masks = F.interpolate(masks[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        masks = (masks >= 0.5).to(torch.uint8)
    else:
        masks = masks.new_zeros((0, *size))
    return image, masks


def hflip(image: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    return image.flip(-1), masks.flip(-1)


def normalize(image: Tensor, cfg: InputConfig) -> Tensor:
    mean = torch.tensor(cfg.mean, dtype=image.dtype, device=image.device)[:, None, None] * 255
    std = torch.tensor(cfg.std, dtype=image.dtype, device=image.device)[:, None, None] * 255
    return (image - mean) / std


# a training crop is centred on a random object this often (else placed anywhere), so that sparse
# frames still give the crops objects to learn from
OBJECT_CENTRED = 0.5


def crop_window(height: int, width: int, cfg: InputConfig, boxes: np.ndarray, rng: np.random.Generator
                ) -> tuple[int, int, int, int]:
    """Where a training crop of ``cfg.crop`` px (at ``cfg.crop_scale``) falls in an ``height`` x ``width``
    image: ``(y0, x0, y1, x1)`` in the image's own pixels. ``boxes``: ``(n, 4)`` xyxy of its objects;
    with :data:`OBJECT_CENTRED` probability the crop is centred on one of them."""
    side = max(1, int(round(cfg.crop / cfg.crop_scale)))
    h, w = min(side, height), min(side, width)
    if len(boxes) and rng.random() < OBJECT_CENTRED:
        x0, y0, x1, y1 = boxes[int(rng.integers(len(boxes)))]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        top, left = int(round(cy - h / 2)), int(round(cx - w / 2))
    else:
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    top, left = min(max(top, 0), height - h), min(max(left, 0), width - w)
    return top, left, top + h, left + w


@dataclass
class Transform:
    """Resize (random short side among ``train_short_sides`` when training), flip, normalise. With
    ``cfg.crop``, training samples arrive already cropped (:func:`crop_window`) and are scaled by
    ``crop_scale``, and evaluation scales the whole image by ``crop_scale`` (tiled by the caller)."""

    cfg: InputConfig
    train: bool

    def __call__(self, image: Tensor, masks: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        short = self.cfg.short_side
        if self.train and self.cfg.train_short_sides and not self.cfg.crop:
            short = int(rng.choice(self.cfg.train_short_sides))
        image, masks = resize(image, masks, network_size(int(image.shape[-2]), int(image.shape[-1]), self.cfg, short))
        if self.train and rng.random() < self.cfg.flip_prob:
            image, masks = hflip(image, masks)
        return normalize(image, self.cfg), masks


def pad_to(tensor: Tensor, height: int, width: int) -> Tensor:
    """Zero-pad the last two dims (bottom and right) to ``(height, width)``."""
    return F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]))


def collate(samples: list[dict], size_divisor: int = 32) -> tuple[Tensor, list[dict]]:
    """Stack samples into ``(B, 3, H, W)`` padded to a multiple of ``size_divisor``.

    Returns the images and per-image targets with ``masks`` padded to the same size.
    """
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)
    height = -(-height // size_divisor) * size_divisor
    width = -(-width // size_divisor) * size_divisor
    images = torch.stack([pad_to(s["image"], height, width) for s in samples])
    targets = []
    for s in samples:
        target = {k: v for k, v in s.items() if k != "image"}
        target["masks"] = pad_to(s["masks"], height, width)
        targets.append(target)
    return images, targets
