"""Geometric and photometric transforms; masks follow every geometric step.

A sample is ``image`` ``(3, H, W)`` float in [0, 255] and ``masks`` ``(N, H, W)``
uint8. Normalisation happens last; padding to a multiple of ``size_divisor``
happens in :func:`collate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor



@dataclass(frozen=True)
class InputConfig:
    """Resize / flip / normalise / pad. ``train_short_sides`` enables multi-scale training."""

    short_side: int = 800
    max_size: int = 1333
    train_short_sides: tuple[int, ...] = ()
    flip_prob: float = 0.5
    size_divisor: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def target_size(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """Size keeping the aspect ratio with short side ``short_side`` and long side <= ``max_size``."""
    scale = min(short_side / min(height, width), max_size / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


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


@dataclass
class Transform:
    """Resize (random short side among ``train_short_sides`` when training), flip, normalise."""

    cfg: InputConfig
    train: bool

    def __call__(self, image: Tensor, masks: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        short = self.cfg.short_side
        if self.train and self.cfg.train_short_sides:
            short = int(rng.choice(self.cfg.train_short_sides))
        image, masks = resize(image, masks, target_size(image.shape[-2], image.shape[-1], short, self.cfg.max_size))
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
