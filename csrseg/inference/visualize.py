"""Overlay drawings: each instance in its own colour, with contour, class name and score."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def instance_colour(index: int) -> tuple[int, int, int]:
    """Well-separated colours (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (a one-pixel outline)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans where installed (Latin, Greek, Cyrillic ...), else Pillow's default font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", 11)
    except OSError:
        return ImageFont.load_default()


def drawable_text(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text``, or its ``\\u`` escapes when ``font`` cannot encode it (Pillow's bitmap font is Latin-1 only):
    a name drawn as ``\\u732b`` is still readable, a crash is not."""
    try:
        font.getmask(text)
    except UnicodeEncodeError:
        return text.encode("ascii", "backslashreplace").decode("ascii")
    return text


def draw_instances(
    image: np.ndarray,
    masks: np.ndarray,
    labels: list[int],
    scores: list[float] | None,
    class_names: list[str],
    alpha: float = 0.45,
) -> Image.Image:
    """``image (H, W, 3)`` uint8 and ``masks (n, H, W)`` bool -> overlay as a PIL image.

    ``scores``: drawn beside the class names; ``None`` for ground truth (names only).
    """
    canvas = image.astype(np.float32).copy()
    anchors = []
    for i, mask in enumerate(masks):
        mask = mask.astype(bool)
        if not mask.any():
            continue
        colour = np.array(instance_colour(i), dtype=np.float32)
        canvas[mask] = canvas[mask] * (1 - alpha) + colour * alpha
        canvas[mask_contour(mask)] = colour
        ys, xs = np.nonzero(mask)
        anchors.append((int(xs.min()), int(ys.min()), i))
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = label_font()
    for x, y, i in anchors:
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(labels[i])
        text = drawable_text(name if scores is None else f"{name} {scores[i]:.2f}", font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        y_text = max(0, y - (bottom - top) - 2)
        draw.rectangle((x, y_text, x + (right - left) + 2, y_text + (bottom - top) + 2), fill=instance_colour(i))
        draw.text((x + 1, y_text), text, fill=(0, 0, 0), font=font)
    return out
