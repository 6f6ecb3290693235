"""A synthetic COCO-format instance segmentation dataset of coloured shapes.

Four classes (circle, rectangle, triangle, star), 1-10 instances per image,
sizes from ~10 px to ~60 % of the image side, random rotation and colour, on
textured, noisy backgrounds. Shapes are drawn in order, so a later shape hides
an earlier one; every annotation is the *visible* part (instances hidden below
``min_visible`` pixels are dropped). Unoccluded polygons are written as COCO
polygons, everything else as compressed RLE, so both paths of a COCO reader are
exercised. Output is deterministic for a given seed.

Layout (the same as COCO 2017 with split names ``train`` and ``val``)::

    OUT/annotations/instances_train.json   OUT/train/000000.png ...
    OUT/annotations/instances_val.json     OUT/val/000000.png ...
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CLASSES = ("circle", "rectangle", "triangle", "star")


@dataclass(frozen=True)
class SynthSpec:
    image_size: int = 256
    min_instances: int = 1
    max_instances: int = 10
    min_size: float = 10.0
    max_size_frac: float = 0.6
    min_visible: int = 20


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient + blotchy low-frequency texture + pixel noise, ``(size, size, 3)`` uint8."""
    base = rng.uniform(0, 255, 3)
    tilt = rng.uniform(-80, 80, 3)
    ramp = np.linspace(-0.5, 0.5, size)
    angle = rng.uniform(0, 2 * math.pi)
    field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    img = base + field[..., None] * tilt
    cells = int(rng.integers(4, 16))
    blotches = rng.normal(0, rng.uniform(10, 40), (cells, cells, 3))
    blotches = np.asarray(Image.fromarray(np.uint8(np.clip(blotches + 128, 0, 255))).resize((size, size), Image.BILINEAR), dtype=np.float64) - 128
    img = img + blotches + rng.normal(0, rng.uniform(3, 15), (size, size, 3))
    # a few thin random lines, as clutter that is not an object
    canvas = Image.fromarray(np.uint8(np.clip(img, 0, 255)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 6))):
        pts = [tuple(rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(pts, fill=tuple(int(c) for c in rng.uniform(0, 255, 3)), width=int(rng.integers(1, 3)))
    return np.asarray(canvas)


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float, aspect: float) -> list[tuple[float, float]]:
    if kind == "rectangle":
        corners = [(-1, -aspect), (1, -aspect), (1, aspect), (-1, aspect)]
        scale = radius / math.hypot(1, aspect)
        pts = [(x * scale, y * scale) for x, y in corners]
    elif kind == "triangle":
        pts = [(radius * math.cos(a), radius * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:  # star: 5 points, inner radius 0.45
        pts = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in pts]


def render_image(rng: np.random.Generator, spec: SynthSpec) -> tuple[np.ndarray, list[dict]]:
    """One image and its instances (``label``, ``mask`` (H, W) bool, ``polygon`` or None)."""
    size = spec.image_size
    img = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(img)
    shapes = []
    for _ in range(int(rng.integers(spec.min_instances, spec.max_instances + 1))):
        label = int(rng.integers(len(CLASSES)))
        kind = CLASSES[label]
        # log-uniform object size (its bounding extent, in pixels)
        extent = math.exp(rng.uniform(math.log(spec.min_size), math.log(spec.max_size_frac * size)))
        radius = extent / 2
        cx, cy = rng.uniform(radius * 0.3, size - radius * 0.3, 2)
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        mask_img = Image.new("L", (size, size), 0)
        mdraw = ImageDraw.Draw(mask_img)
        if kind == "circle":
            box = (cx - radius, cy - radius, cx + radius, cy + radius)
            draw.ellipse(box, fill=colour)
            mdraw.ellipse(box, fill=1)
            polygon = None
        else:
            polygon = _polygon(kind, cx, cy, radius, rng.uniform(0, 2 * math.pi), rng.uniform(0.35, 1.0))
            draw.polygon(polygon, fill=colour)
            mdraw.polygon(polygon, fill=1)
        shapes.append(dict(label=label, mask=np.asarray(mask_img, dtype=bool), polygon=polygon))
    # what stays visible: each mask minus every later one
    covered = np.zeros((size, size), dtype=bool)
    instances = []
    for shape in reversed(shapes):
        visible = shape["mask"] & ~covered
        occluded = bool((shape["mask"] & covered).any())
        covered |= shape["mask"]
        if visible.sum() < spec.min_visible:
            continue
        clipped = shape["polygon"] is not None and not all(0 <= x < size and 0 <= y < size for x, y in shape["polygon"])
        polygon = None if occluded or clipped else shape["polygon"]
        instances.append(dict(label=shape["label"], mask=visible, polygon=polygon))
    instances.reverse()
    return np.asarray(img), instances


def write_split(out: Path, split: str, num_images: int, seed: int, spec: SynthSpec) -> Path:
    """Render ``num_images`` images into ``out/split`` and ``out/annotations/instances_split.json``."""
    rng = np.random.default_rng(seed)
    image_dir = out / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        pixels, instances = render_image(rng, spec)
        name = f"{index:06d}.png"
        Image.fromarray(pixels).save(image_dir / name)
        image_id = index + 1
        images.append(dict(id=image_id, file_name=name, height=spec.image_size, width=spec.image_size))
        for inst in instances:
            rle = mask_utils.encode(np.asfortranarray(inst["mask"].astype(np.uint8)))
            segmentation = dict(size=rle["size"], counts=rle["counts"].decode("ascii"))
            if inst["polygon"] is not None:
                polygon = [[round(v, 2) for xy in inst["polygon"] for v in xy]]
                poly_rle = mask_utils.merge(mask_utils.frPyObjects(polygon, spec.image_size, spec.image_size))
                # pycocotools rasterises a polygon slightly differently from PIL; keep the polygon
                # only where that difference is negligible (large shapes), else the exact RLE.
                if mask_utils.iou([poly_rle], [rle], [0])[0, 0] >= 0.9:
                    segmentation, rle = polygon, poly_rle
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=inst["label"] + 1,
                    segmentation=segmentation,
                    area=float(mask_utils.area(rle)),
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    iscrowd=0,
                )
            )
    categories = [dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(CLASSES)]
    path = out / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return path


def make_synthetic_dataset(
    out: str | Path, num_images: int = 200, seed: int = 0, val_fraction: float = 0.2, spec: SynthSpec = SynthSpec()
) -> Path:
    """Write train and val splits (``val_fraction`` of ``num_images``, at least 1) under ``out``."""
    out = Path(out)
    num_val = max(1, round(num_images * val_fraction))
    num_train = max(1, num_images - num_val)
    write_split(out, "train", num_train, seed * 2 + 0, spec)
    write_split(out, "val", num_val, seed * 2 + 1, spec)
    return out
