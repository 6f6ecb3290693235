"""Reading images from disk into RGB uint8 arrays, whatever their mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from csrseg.errors import CsrsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(CsrsegError, ValueError):
    """A file that is missing or cannot be decoded as an image."""


def to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image of any mode (L, LA, P, RGBA, CMYK, I;16, I, F) -> ``(H, W, 3)`` uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        # 16-bit / float data: stretch its actual range to 8 bits rather than clip it.
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        arr = arr.astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # convert copies even an RGB image


def read_image(path: str | Path, exif: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; EXIF orientation applied when ``exif``."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if exif:  # in place: the copy it makes otherwise is one more frame (96 MB for a 24 MP photo)
                ImageOps.exif_transpose(img, in_place=True)
            return to_rgb(img).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read as an image ({exc})") from None
