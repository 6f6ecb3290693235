"""Overlay drawings: each instance in its own colour, with contour, class name and score."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from csrseg.masks.packed import PackedCrop

BAND_PIXELS = 1 << 20  # image pixels blended at a time: a band of rows, 12 MB of float32


def instance_colour(index: int) -> tuple[int, int, int]:
    """Well-separated colours (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (a one-pixel outline)."""
    return rows_contour(mask, 0, mask.shape[0])


def rows_contour(mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start`` to ``stop`` (exclusive) of :func:`mask_contour` of ``mask``, from those rows and
    the one on each side: a band's outline without the whole mask's."""
    lo, hi = max(start - 1, 0), min(stop + 1, mask.shape[0])
    padded = np.zeros((stop - start + 2, mask.shape[1] + 2), dtype=bool)
    padded[lo - start + 1 : hi - start + 1, 1:-1] = mask[lo:hi]
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask[start:stop] & ~inner


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


def draw_predictions(image: np.ndarray, instances: Sequence, class_names: list[str],
                     track_ids: Sequence[int] | None = None) -> Image.Image:
    """The overlay of :class:`~csrseg.inference.predictor.Instance` s on ``image`` ``(H, W, 3)`` uint8,
    drawn from their packed crops (unpacked a band of rows at a time); with ``track_ids`` (one per
    instance), each in its track's colour and tagged ``#id``, so an object keeps its colour from frame
    to frame."""
    return draw_instances(image, [i.packed for i in instances], [i.label for i in instances],
                          [i.score for i in instances], class_names, origins=[i.origin for i in instances],
                          track_ids=track_ids)


class Placed(NamedTuple):
    """A mask trimmed to its tight box, the box's corners inclusive in the image; its rows are read
    a band at a time (:meth:`rows`): a whole photo's hundred masks, unpacked or outlined at once,
    would be gigabytes. ``source``: the crop it was trimmed from (bool, or packed), the tight box
    starting at its row ``top`` and column ``left``."""

    source: np.ndarray | PackedCrop
    top: int
    left: int
    x0: int
    y0: int
    x1: int
    y1: int

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` (exclusive) of the trimmed mask, ``(stop - start, x1 - x0 + 1)`` bool."""
        width = self.x1 - self.x0 + 1
        if isinstance(self.source, PackedCrop):
            rows = self.source.unpack(self.top + start, self.top + stop)
        else:
            rows = self.source[self.top + start : self.top + stop]
        return rows[:, self.left : self.left + width]


def place(mask: np.ndarray | PackedCrop, origin: tuple[int, int]) -> Placed | None:
    """A crop (bool, or packed) whose top-left pixel lies at ``origin`` ``(x0, y0)`` -> trimmed to its
    pixels; ``None`` for an empty one. Outside the crop the mask is empty, so its outline is the crop's."""
    if isinstance(mask, PackedCrop):
        rows = np.flatnonzero(mask.bits.any(axis=1))
        cols = np.flatnonzero(np.unpackbits(np.bitwise_or.reduce(mask.bits, axis=0), count=mask.width)) \
            if len(rows) else rows
    else:
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    x0, y0 = origin[0] + int(cols[0]), origin[1] + int(rows[0])
    return Placed(mask, int(rows[0]), int(cols[0]), x0, y0, origin[0] + int(cols[-1]), origin[1] + int(rows[-1]))


def draw_instances(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: list[int],
    scores: list[float] | None,
    class_names: list[str],
    alpha: float = 0.45,
    origins: Sequence[tuple[int, int]] | None = None,
    track_ids: Sequence[int] | None = None,
) -> Image.Image:
    """``image (H, W, 3)`` uint8 and masks -> overlay as a PIL image.

    ``masks``: ``(n, H, W)`` bool; or, with ``origins``, crops: ``masks[i]`` ``(h_i, w_i)`` bool (or
    a :class:`~csrseg.masks.packed.PackedCrop`) with its top-left pixel at ``origins[i]`` ``(x0, y0)``,
    empty outside. ``scores``: drawn beside the
    class names; ``None`` for ground truth (names only). ``track_ids``: colour by track, not by place
    in the list, and ``#id`` before each name.
    """
    placed = [place(mask, origin) for mask, origin in zip(masks, origins or [(0, 0)] * len(masks))]
    colours = [instance_colour(k) for k in (track_ids if track_ids is not None else range(len(placed)))]
    out = blend(image, placed, alpha, colours)
    draw_labels(out, [(p.x0, p.y0, i) for i, p in enumerate(placed) if p is not None], labels, scores, class_names,
                colours, track_ids)
    return out


def draw_labels(out: Image.Image, anchors: list[tuple[int, int, int]], labels: list[int], scores: list[float] | None,
                class_names: list[str], colours: Sequence[tuple[int, int, int]] | None = None,
                track_ids: Sequence[int] | None = None) -> None:
    """Each instance's class (and score; ``#track`` first with ``track_ids``) on a tag of its colour
    (``colours[i]``, default :func:`instance_colour` of ``i``) just above its top-left ``(x, y)``:
    ``anchors`` holds ``(x, y, i)`` for instance ``i``."""
    draw = ImageDraw.Draw(out)
    font = label_font()
    for x, y, i in anchors:
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(labels[i])
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        text = drawable_text(text if track_ids is None else f"#{track_ids[i]} {text}", font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        y_text = max(0, y - (bottom - top) - 2)
        draw.rectangle((x, y_text, x + (right - left) + 2, y_text + (bottom - top) + 2), fill=colours[i] if colours else instance_colour(i))
        draw.text((x + 1, y_text), text, fill=(0, 0, 0), font=font)


def blend(image: np.ndarray, placed: list[Placed | None], alpha: float,
          colours: Sequence[tuple[int, int, int]] | None = None) -> Image.Image:
    """``image (H, W, 3)`` uint8 with each mask blended in its colour (``colours[i]``, default
    :func:`instance_colour` of ``i``) and outlined, in order -> a PIL image.

    The result of one float32 canvas of the whole image, every mask blended into it
    (``pixel * (1 - alpha) + colour * alpha``, a product and a sum each rounded to float32) and every
    outline painted, truncated to uint8 at the end. Worked a band of rows at a time, each mask over
    its box only, so the cost follows what the masks cover; the band's canvas (12 MB: larger bands
    measured faster than cache-sized ones, whose per-call costs dominate) is laid out a channel at a
    time, so that each blend is two PyTorch passes over contiguous floats and a select (a hundred
    masks that each cover a 24 MP photo: about 4.5 s on two cores, against 45 s for numpy's broadcast
    arithmetic; RESULTS.md, issue 32). Each band is written into the PIL image as it is finished: no
    second copy of the image is held beside it.
    """
    image = np.asarray(image, dtype=np.uint8)
    out = Image.fromarray(image)
    height, width = image.shape[:2]
    step = max(1, BAND_PIXELS // max(width, 1))
    rgb = [np.array(c, dtype=np.float32) for c in (colours or [instance_colour(i) for i in range(len(placed))])]
    paint = [torch.from_numpy(c)[:, None] for c in rgb]
    shift = [torch.from_numpy(c * alpha)[:, None, None] for c in rgb]  # float32, as numpy rounds colour * alpha
    keep = float(np.float32(1 - alpha))
    # one buffer for every blend: a fresh temporary this large is a fresh mapping from the OS each
    # time, and its page faults cost more than the arithmetic
    scratch = torch.empty(3 * step * width, dtype=torch.float32)
    for top in range(0, height, step):
        bottom = min(top + step, height)
        inside = [(i, p) for i, p in enumerate(placed) if p is not None and p.y0 < bottom and p.y1 >= top]
        if not inside:
            continue
        left, right = min(p.x0 for _, p in inside), max(p.x1 for _, p in inside) + 1
        # (3, rows, columns), a channel after the other: astype alone would keep the pixels' channels interleaved
        canvas = torch.from_numpy(np.ascontiguousarray(image[top:bottom, left:right].transpose(2, 0, 1), dtype=np.float32))
        flat = canvas.view(3, -1)
        for i, p in inside:
            y_lo, y_hi = max(top, p.y0), min(bottom, p.y1 + 1)
            first, last = max(y_lo - p.y0 - 1, 0), min(y_hi - p.y0 + 1, p.y1 - p.y0 + 1)  # a row more each side
            window = p.rows(first, last)
            mask = np.ascontiguousarray(window[y_lo - p.y0 - first : y_hi - p.y0 - first])
            region = canvas[:, y_lo - top : y_hi - top, p.x0 - left : p.x1 + 1 - left]
            if np.count_nonzero(mask) == mask.size:  # the same arithmetic, in place, without a select
                region.mul_(keep).add_(shift[i])
            else:
                blended = scratch[: region.numel()].view(region.shape)
                torch.mul(region, keep, out=blended).add_(shift[i])
                torch.where(torch.from_numpy(mask), blended, region, out=region)
            # the outline is a few pixels of the band: painted through their indices, not a boolean pass
            outline = np.flatnonzero(rows_contour(window, y_lo - p.y0 - first, y_hi - p.y0 - first))
            ys, xs = np.divmod(outline, p.x1 - p.x0 + 1)
            flat[:, torch.from_numpy((ys + y_lo - top) * (right - left) + xs + p.x0 - left)] = paint[i]
        band = canvas.clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        out.paste(Image.fromarray(band), (left, top))
    return out
