"""How big the objects of a dataset are at the model's input, and what to do when they are too small.

An object of ``s`` pixels (``sqrt(area)``) at the input covers about ``s / 8`` cells of the stride-8
feature both heads read: under :data:`SMALL` px it is one or two cells, where masks come out as
blobs and small objects are missed (APS near 0). Two ways keep more pixels: a larger input size
(a step costs the square of it) or training on crops at the image's own scale (``input.crop``; a step
costs the crop, and prediction runs in tiles of it).
"""

from __future__ import annotations

import math

import numpy as np

from csrseg.data.coco import CocoIndex
from csrseg.data.transforms import InputConfig

SMALL = 16.0  # px at the input: about two stride-8 cells


def input_scale(height: int, width: int, cfg: InputConfig) -> float:
    """The factor an ``height`` x ``width`` image is resized by on its way into the network."""
    if cfg.crop:
        return cfg.crop_scale
    return min(cfg.short_side / min(height, width), cfg.max_size / max(height, width))


def object_sizes(index: CocoIndex, cfg: InputConfig | None = None) -> np.ndarray:
    """``sqrt(area)`` of every non-crowd instance, in the image's own pixels (``cfg`` None) or at the
    input ``cfg`` makes of its image. Areas come from the annotation file (no mask is decoded)."""
    sizes = []
    for image in index.images:
        scale = 1.0 if cfg is None else input_scale(image["height"], image["width"], cfg)
        for ann in index.anns_by_image.get(image["id"], []):
            if ann.get("iscrowd", 0):
                continue
            area = ann.get("area") or (ann["bbox"][2] * ann["bbox"][3] if ann.get("bbox") else 0.0)
            sizes.append(math.sqrt(max(float(area), 0.0)) * scale)
    return np.asarray(sizes, dtype=np.float64)


def size_advice(native: np.ndarray, cfg: InputConfig, images: list[tuple[int, int]]) -> list[str]:
    """One line on the objects' size at the input, and, where most are under :data:`SMALL` px, which
    setting keeps them above it and what a step then costs against today's. ``native``: sizes in
    the images' own pixels; ``images``: their ``(height, width)``."""
    if not len(native) or not images:
        return []
    heights = np.array([h for h, _ in images], dtype=np.float64)
    widths = np.array([w for _, w in images], dtype=np.float64)
    scale = float(np.median([input_scale(int(h), int(w), cfg) for h, w in zip(heights, widths)]))
    at_input = native * scale
    small = float((at_input < SMALL).mean())
    median = float(np.median(at_input))
    where = (f"crops of {cfg.crop} px at scale {cfg.crop_scale:g}" if cfg.crop
             else f"input short side {cfg.short_side}, long side at most {cfg.max_size}")
    lines = [f"objects at the input ({where}): median {median:.0f} px, {small:.0%} under {SMALL:.0f} px"]
    if small <= 0.5:
        return lines
    # the scale that brings the median object to SMALL px, and what a step costs at it
    needed = SMALL / max(float(np.median(native)), 1e-6)
    pixels_now = float(np.median(heights * widths)) * scale**2 if not cfg.crop else cfg.crop**2
    if not cfg.crop:
        side = int(math.ceil(cfg.short_side * needed / scale / 32) * 32)
        longest = int(math.ceil(cfg.max_size * needed / scale / 32) * 32)
        cost = float(np.median(heights * widths)) * needed**2 / pixels_now
        crop_cost = cfg.short_side**2 / pixels_now
        lines.append(f"most objects would be under {SMALL:.0f} px: input.short_side={side} input.max_size={longest} "
                     f"keeps the median one at {SMALL:.0f} px (a step then costs about {cost:.1f}x today's), or "
                     f"train on crops at the image's own scale, input.crop={cfg.short_side} input.crop_scale="
                     f"{max(needed, 1.0):.2g} (a step then costs about {crop_cost:.1f}x today's; predict in tiles: "
                     f"--tile {round(cfg.short_side / max(needed, 1.0))})")
    else:
        crop_scale = max(needed, cfg.crop_scale)
        lines.append(f"most objects would be under {SMALL:.0f} px: input.crop_scale={crop_scale:.2g} keeps the median "
                     f"one at {SMALL:.0f} px (a step costs the same {cfg.crop} px crop; predict in tiles: "
                     f"--tile {round(cfg.crop / crop_scale)})")
    return lines
