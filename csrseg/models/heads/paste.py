"""Instance masks at the original image size, each one computed and kept only within its box.

:func:`~csrseg.models.heads.common.upsample_masks` resizes every mask to the whole original image:
on a 24 MP photo with 100 instances that is 2.4 G pixels of bilinear resize and as many bytes of
masks, nearly all of them far from any instance. :func:`paste_masks` gives the same pixels at the cost
of the instances' boxes (Mask R-CNN pastes its masks within their boxes too):

1. the first, cheap step is unchanged: the probabilities upsampled to the padded input and cropped
   to the resized image (``part``, ``(in_h, in_w)`` a mask);
2. every pixel of the original image mixes one cell of 2x2 neighbouring values of ``part``
   (:func:`cell_classes`): a cell wholly below the threshold puts its pixels out of the mask, one
   wholly above it puts them in, and only the box of the cells not wholly below is looked at;
3. the pixels of the other cells are computed with PyTorch's source indices and weights and its
   kernel's arithmetic (:func:`resize_arithmetic`, checked against ``F.interpolate`` at first use),
   so every value is bit for bit ``F.interpolate``'s and the thresholded masks are identical;
   without a resize, ``part`` is thresholded as it is;
4. each mask is kept as its tight box and the crop of the mask within it, packed at a bit a pixel
   (:class:`MaskCrops`), a block of rows at a time as it is computed: its box is the full-size mask's,
   and no mask is held whole as bool, whatever the boxes (but for frames of :data:`SMALL_FRAME`,
   which cost nothing at full size).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from csrseg.masks.crops import MaskCrops, any_along, tight_boxes
from csrseg.masks.packed import PackedCrop
from csrseg.models.heads.common import _upsample

# A resize mixes values with non-negative weights summing to 1 (to a few float32 ulps): a pixel whose
# values are all above ``threshold + MARGIN`` is in its mask, one whose values are all at most
# ``threshold - MARGIN`` is not; only the others are computed. The margin only moves pixels to the
# computed ones, never changes a result.
MARGIN = 1e-4
# float32 sums computed without a fused multiply-add differ from fused ones by an ulp or two (values
# in [0, 1]): pixels this close to the threshold are recomputed with the exact fused arithmetic
REFINE_MARGIN = 1e-5
# PyTorch resizes to outputs of height + width <= 128 with another (channels-last) kernel, whose
# arithmetic is not modelled here: such frames, which cost nothing at full size, are resized so.
# resize_arithmetic checks the smallest size past it, so a kernel switch moved up would be noticed.
SMALL_FRAME = 128
BLOCK = 1 << 22  # output pixels of one mask worked at a time: bounds the temporaries


class Axis(NamedTuple):
    """A bilinear resize (``align_corners=False``) of one axis from ``in_size`` to ``out_size`` samples,
    as PyTorch computes it: output ``i`` is ``lambda0[i] * x[index0[i]] + lambda1[i] * x[index1[i]]``.
    ``index0``, ``index1``: ``(out_size,)`` long, non-decreasing; ``lambda0``, ``lambda1``: float32."""

    index0: Tensor
    index1: Tensor
    lambda0: Tensor
    lambda1: Tensor

    def covering(self, first: int, last: int) -> tuple[int, int]:
        """The outputs whose ``index0`` is in ``[first, last]``: ``(lo, hi)`` inclusive, ``hi < lo`` for none."""
        lo = int(torch.searchsorted(self.index0, first))
        hi = int(torch.searchsorted(self.index0, last, right=True)) - 1
        return lo, hi

    def part(self, lo: int, hi: int) -> Axis:
        """The outputs ``lo`` to ``hi`` inclusive."""
        return Axis(*(t[lo : hi + 1] for t in self))


def resize_axis(in_size: int, out_size: int, fused: bool, device: torch.device) -> Axis:
    """The source indices and weights of PyTorch's bilinear resize of one axis (``area_pixel_compute_source_index``
    then the clamps of its CPU kernel); ``fused``: the source coordinate computed as one multiply-add."""
    out = torch.arange(out_size, device=device)
    if in_size == out_size:  # PyTorch copies such an axis
        ones = torch.ones(out_size, device=device)
        return Axis(out, out, ones, torch.zeros_like(ones))
    scale = torch.tensor(in_size, dtype=torch.float32, device=device) / torch.tensor(out_size, dtype=torch.float32, device=device)
    centre = out.float() + 0.5
    half = torch.full_like(centre, -0.5)
    src = fma32(scale.expand_as(centre), centre, half) if fused else scale * centre - 0.5
    src = src.clamp(min=0)
    index0 = src.floor().long().clamp(max=in_size - 1)
    lambda1 = (src - index0.float()).clamp(0, 1)
    index1 = index0 + (index0 < in_size - 1).long()
    return Axis(index0, index1, 1 - lambda1, lambda1)


def fma32(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``a * b + c`` of float32 tensors with one rounding (a fused multiply-add), exactly.

    ``a * b`` is exact in float64; the float64 sum is made round-to-odd (its error, from TwoSum, moves
    an even result one ulp towards the exact sum), and a round-to-odd result with 29 spare bits rounds
    to float32 as the exact sum would: no double rounding.
    """
    prod = a.double() * b.double()
    c64 = c.double()
    total = prod + c64
    back = total - prod
    err = (prod - (total - back)) + (c64 - back)
    even = (total.view(torch.int64) & 1) == 0
    towards = torch.where(err > 0, torch.inf, -torch.inf).to(total.dtype)
    total = torch.where((err != 0) & even, torch.nextafter(total, towards), total)
    return total.float()


def mix(x0: Tensor, w0: Tensor, x1: Tensor, w1: Tensor, fused: bool) -> Tensor:
    """``x0 * w0 + x1 * w1`` in float32 as the resize kernel computes it: two products and a sum, or
    (``fused``) the second product added to the first in a multiply-add."""
    return fma32(x0, w0, x1 * w1) if fused else x0 * w0 + x1 * w1


def resize_across(part: Tensor, rows: Axis, cols: Axis, fused: bool) -> tuple[Tensor, int]:
    """The input rows the outputs ``rows`` mix, resized along the width (the kernel's first step):
    ``(k, len(cols))`` float32, row ``j`` input row ``first + j``; and ``first``.

    ``part``: ``(Hs, Ws)`` values; ``rows``, ``cols``: parts of the full resize's :class:`Axis`.
    """
    first, last = int(rows.index0[0]), int(rows.index1[-1])
    band = part[first : last + 1]
    return mix(band[:, cols.index0], cols.lambda0, band[:, cols.index1], cols.lambda1, fused), first


def resized_above(across: Tensor, first: int, rows: Axis, ys: Tensor, xs: Tensor, threshold: float,
                  fused: bool) -> Tensor:
    """Whether the resized values at ``(ys, xs)`` (``(k,)`` indices into ``rows`` and the columns of
    ``across``, from :func:`resize_across`) are above ``threshold``, exactly as ``F.interpolate``'s.

    Plain float32 arithmetic is the kernel's own without ``fused``; with it, it is an ulp or two off, and
    the few values that close to the threshold are recomputed exactly.
    """
    top, bottom = across[rows.index0[ys] - first, xs], across[rows.index1[ys] - first, xs]
    weight0, weight1 = rows.lambda0[ys], rows.lambda1[ys]
    values = top * weight0 + bottom * weight1
    above = values > threshold
    if fused:
        near = ((values - threshold).abs() <= REFINE_MARGIN).nonzero()[:, 0]
        above[near] = fma32(top[near], weight0[near], bottom[near] * weight1[near]) > threshold
    return above


def cell_classes(part: Tensor, threshold: float) -> Tensor:
    """``(c, Hs, Ws)`` values -> ``(c, Hs, Ws)`` uint8, of the cell each value is the top-left corner of
    (it, its right, lower and lower-right neighbours; at the last row and column itself, as the resize
    clamps): every output pixel mixes the values of one cell. 0: all at most ``threshold - MARGIN``
    (pixels out of the mask), 2: all above ``threshold + MARGIN`` (in it), 1: neither (computed)."""
    padded = F.pad(part[:, None], (0, 1, 0, 1), mode="replicate")[:, 0]
    corners = padded[:, :-1, :-1], padded[:, 1:, :-1], padded[:, :-1, 1:], padded[:, 1:, 1:]
    high = torch.maximum(torch.maximum(corners[0], corners[1]), torch.maximum(corners[2], corners[3]))
    low = torch.minimum(torch.minimum(corners[0], corners[1]), torch.minimum(corners[2], corners[3]))
    return (high > threshold - MARGIN).to(torch.uint8) + (low > threshold + MARGIN).to(torch.uint8)


@functools.lru_cache(maxsize=None)
def resize_arithmetic(device_type: str) -> bool | None:
    """Whether ``F.interpolate``'s bilinear resize of float32 on ``device_type`` mixes values with fused
    multiply-adds (``True``: PyTorch's AVX2 and AVX-512 CPU kernels), plain products and sums (``False``:
    its portable kernel), or neither (``None``: :func:`paste_masks` then resizes at full size).
    Found once by comparing both with ``F.interpolate`` bit for bit, up- and downsampling."""
    generator = torch.Generator().manual_seed(0)
    cases = [((20, 30), (65, 64)), ((23, 37), (157, 263)), ((150, 90), (61, 77)), ((40, 40), (40, 131)),
             ((31, 17), (250, 9))]
    for fused in (True, False):
        if all(_resize_matches(fused, src, dst, device_type, generator) for src, dst in cases):
            return fused
    return None


def _resize_matches(fused: bool, src: tuple[int, int], dst: tuple[int, int], device_type: str,
                    generator: torch.Generator) -> bool:
    x = torch.rand(src, generator=generator).to(device_type)
    want = F.interpolate(x[None, None], size=dst, mode="bilinear", align_corners=False)[0, 0]
    rows, cols = (resize_axis(s, d, fused, x.device) for s, d in zip(src, dst))
    across, first = resize_across(x, rows, cols, fused)
    top, bottom = across[rows.index0 - first], across[rows.index1 - first]
    got = mix(top, rows.lambda0[:, None].expand_as(top), bottom, rows.lambda1[:, None].expand_as(top), fused)
    return torch.equal(got, want)


class Resize(NamedTuple):
    """The resize of ``part`` to the original size: its two axes and the kernel's arithmetic."""

    rows: Axis
    cols: Axis
    fused: bool


def paste_masks(soft: Tensor, stride: int, input_size: tuple[int, int], orig_size: tuple[int, int], threshold: float,
                chunk: int = 16) -> tuple[MaskCrops, Tensor]:
    """Probabilities ``(n, h, w)`` at ``stride`` of the padded input -> the masks of
    :func:`~csrseg.models.heads.common.upsample_masks` with the same arguments, as crops; and which of
    the ``n`` kept a pixel (``(n,)`` bool): the crops are of those only, in order.

    ``soft`` must hold probabilities (values in ``[0, 1]``). The first upsampling is done ``chunk``
    masks at a time, as ``upsample_masks`` does.
    """
    n, h, w = soft.shape
    resize, full_size = None, False
    if tuple(input_size) != tuple(orig_size):
        fused = resize_arithmetic(soft.device.type) if orig_size[0] + orig_size[1] > SMALL_FRAME else None
        full_size = fused is None
        if not full_size:
            resize = Resize(resize_axis(input_size[0], orig_size[0], fused, soft.device),
                            resize_axis(input_size[1], orig_size[1], fused, soft.device), fused)
    pasted: list[tuple[PackedCrop, tuple[int, int, int, int]] | None] = []
    for start in range(0, n, max(chunk, 1)):
        piece = soft[start : start + max(chunk, 1)]
        if full_size:  # upsample_masks' own path, then cropped
            pasted += _crop_dense(_upsample(piece, stride, input_size, orig_size, threshold))
            continue
        if resize is None:  # the upsampled masks are the masks: upsampled only where a pixel can be
            pasted += _paste_windowed(piece, stride, input_size, threshold)
            continue
        padded = F.interpolate(piece[:, None], size=(h * stride, w * stride), mode="bilinear", align_corners=False)
        part = padded[:, 0, : input_size[0], : input_size[1]]
        pasted += _paste_resized(part, resize, threshold)
    kept = [p for p in pasted if p is not None]
    boxes = torch.tensor([box for _, box in kept], dtype=torch.float32, device=soft.device).reshape(-1, 4)
    masks = MaskCrops([crop for crop, _ in kept], boxes, (int(orig_size[0]), int(orig_size[1])))
    return masks, torch.tensor([p is not None for p in pasted], dtype=torch.bool, device=soft.device)


def _crop_dense(masks: Tensor) -> list[tuple[PackedCrop, tuple[int, int, int, int]] | None]:
    """``(n, H, W)`` bool masks -> each one's crop, packed, and tight box, ``None`` for an empty one."""
    rows, cols = any_along(masks, 2), any_along(masks, 1)
    out = []
    for i, (x0, y0, x1, y1) in enumerate(tight_boxes(rows, cols).long().tolist()):
        out.append(None if x1 < x0 else (PackedCrop.pack(masks[i, y0 : y1 + 1, x0 : x1 + 1]), (x0, y0, x1, y1)))
    return out


def _paste_windowed(piece: Tensor, stride: int, input_size: tuple[int, int],
                    threshold: float) -> list[tuple[PackedCrop, tuple[int, int, int, int]] | None]:
    """``(c, h, w)`` probabilities at ``stride`` -> each mask of ``F.interpolate(piece, x stride)`` cropped to
    ``input_size`` and thresholded, as its crop and tight box (``None`` for an empty one), the resize
    computed only over the window of the input cells that may give a pixel above ``threshold``.

    Every output pixel mixes one cell of input values (:func:`cell_classes`); one whose cell is wholly
    at most ``threshold - MARGIN`` is out of the mask. The window is those cells' box grown by a cell
    on each side, so the kept outputs' source indices and weights are the full resize's exactly (the
    scale is ``1 / stride`` either way, and no kept output reaches a clamp the full resize does not
    have); grown further where needed so the window's output is not a frame that PyTorch resizes with
    its other kernel (:data:`SMALL_FRAME`).
    """
    _, h, w = piece.shape
    active = cell_classes(piece, threshold) > 0
    cell_boxes = tight_boxes(any_along(active, 2), any_along(active, 1)).long().tolist()
    rows_axis = resize_axis(h, h * stride, False, piece.device)  # source indices only: exact either way
    cols_axis = resize_axis(w, w * stride, False, piece.device)
    out = []
    for values, (c0, r0, c1, r1) in zip(piece, cell_boxes):
        (y_lo, y_hi), (x_lo, x_hi) = rows_axis.covering(r0, r1), cols_axis.covering(c0, c1)
        y_hi, x_hi = min(y_hi, input_size[0] - 1), min(x_hi, input_size[1] - 1)
        if r1 < r0 or y_hi < y_lo or x_hi < x_lo:
            out.append(None)
            continue
        (wr0, wr1), (wc0, wc1) = _window(r0, r1, h, c0, c1, w, stride)
        window = values[wr0 : wr1 + 1, wc0 : wc1 + 1].contiguous()
        up = F.interpolate(window[None, None], size=(window.shape[0] * stride, window.shape[1] * stride),
                           mode="bilinear", align_corners=False)[0, 0]
        region = up[y_lo - wr0 * stride : y_hi - wr0 * stride + 1, x_lo - wc0 * stride : x_hi - wc0 * stride + 1] > threshold
        out.append(_crop_placed(region, x_lo, y_lo))
    return out


def _crop_placed(region: Tensor, x_lo: int, y_lo: int) -> tuple[PackedCrop, tuple[int, int, int, int]] | None:
    """The crop and tight box, in image coordinates, of ``region`` ``(h, w)`` bool, the part of a mask
    whose top-left pixel is ``(x_lo, y_lo)``; ``None`` if it holds no pixel."""
    pasted = _crop_dense(region[None])[0]
    if pasted is None:
        return None
    crop, (x0, y0, x1, y1) = pasted
    return crop, (x_lo + x0, y_lo + y0, x_lo + x1, y_lo + y1)


def _window(r0: int, r1: int, h: int, c0: int, c1: int, w: int, stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The input rows and columns (inclusive) to resize for the cells ``r0..r1`` x ``c0..c1`` of an
    ``(h, w)`` map: a cell more on each side (within the map), then more until the output's height +
    width passes :data:`SMALL_FRAME` or the window is the whole map."""
    rows, cols = [max(r0 - 1, 0), min(r1 + 1, h - 1)], [max(c0 - 1, 0), min(c1 + 1, w - 1)]
    while (rows[1] - rows[0] + cols[1] - cols[0] + 2) * stride <= SMALL_FRAME and (rows != [0, h - 1] or cols != [0, w - 1]):
        rows = [max(rows[0] - 1, 0), min(rows[1] + 1, h - 1)]
        cols = [max(cols[0] - 1, 0), min(cols[1] + 1, w - 1)]
    return (rows[0], rows[1]), (cols[0], cols[1])


def _paste_resized(part: Tensor, resize: Resize, threshold: float) -> list[tuple[PackedCrop, tuple[int, int, int, int]] | None]:
    """``(c, in_h, in_w)`` probabilities -> each mask's crop at the original size and tight box, ``None``
    for one without a pixel there.

    Every output pixel mixes one cell of input values (:func:`cell_classes`): the pixels of cells wholly
    above or below the threshold are decided at once, the others computed; only the outputs of the
    cells not wholly below it are looked at.
    """
    classes = cell_classes(part, threshold)
    active = classes > 0
    cell_boxes = tight_boxes(any_along(active, 2), any_along(active, 1)).long().tolist()
    out = []
    for values, cells, (c0, r0, c1, r1) in zip(part, classes, cell_boxes):
        (y_lo, y_hi), (x_lo, x_hi) = resize.rows.covering(r0, r1), resize.cols.covering(c0, c1)
        if r1 < r0 or y_hi < y_lo or x_hi < x_lo:
            out.append(None)
            continue
        out.append(_paste_blocks(values, cells, resize, (x_lo, y_lo, x_hi, y_hi), threshold))
    return out


def _paste_blocks(values: Tensor, cells: Tensor, resize: Resize, region: tuple[int, int, int, int],
                  threshold: float) -> tuple[PackedCrop, tuple[int, int, int, int]] | None:
    """One mask's pixels within ``region`` (inclusive ``x_lo, y_lo, x_hi, y_hi`` of the original image)
    -> its packed crop and tight box, ``None`` for one without a pixel there.

    Decided :data:`BLOCK` pixels at a time and each block packed at once: a mask that covers a 24 MP
    photo is never held as 24 MB of bool (a hundred of them, each held until packed, left the heap
    fragmented by 200 MB).
    """
    x_lo, y_lo, x_hi, y_hi = region
    height, width = y_hi - y_lo + 1, x_hi - x_lo + 1
    cols = resize.cols.part(x_lo, x_hi)
    step = max(1, BLOCK // width)
    bits = np.empty((height, (width + 7) // 8), dtype=np.uint8)
    block = torch.empty((min(step, height), width), dtype=torch.bool, device=values.device)
    rows_hit, cols_hit = torch.zeros(height, dtype=torch.bool), torch.zeros(width, dtype=torch.bool)
    for y in range(y_lo, y_hi + 1, step):
        stop = min(y + step, y_hi + 1)
        decided = block[: stop - y]
        _decide(values, cells, resize.rows.part(y, stop - 1), cols, threshold, resize.fused, decided)
        rows_hit[y - y_lo : stop - y_lo] = any_along(decided[None], 2)[0].cpu()
        cols_hit |= any_along(decided[None], 1)[0].cpu()
        bits[y - y_lo : stop - y_lo] = np.packbits(decided.cpu().numpy(), axis=1)
    (x0, y0, x1, y1), = tight_boxes(rows_hit[None], cols_hit[None]).long().tolist()
    if x1 < x0:
        return None
    return PackedCrop(bits, width).window(y0, y1, x0, x1), (x_lo + x0, y_lo + y0, x_lo + x1, y_lo + y1)


def _decide(values: Tensor, cells: Tensor, rows: Axis, cols: Axis, threshold: float, fused: bool, out: Tensor) -> None:
    """Into ``out``, the ``(len(rows), len(cols))`` block of ``F.interpolate(values) > threshold``: from
    the classes of the cells its pixels mix, those of mixed cells computed.

    Output rows that mix the same input rows see the same cells: the cells' classes are spread along
    the output columns once per input row, then copied row by row to the output rows.
    """
    first = int(rows.index0[0])
    line = cells[first : int(rows.index0[-1]) + 1].index_select(1, cols.index0)
    local = rows.index0 - first
    torch.index_select(line == 2, 0, local, out=out)
    mixed = line == 1
    if bool(mixed.any()):
        ys, xs = mixed.index_select(0, local).nonzero(as_tuple=True)
        across, first_row = resize_across(values, rows, cols, fused)
        out[ys, xs] = resized_above(across, first_row, rows, ys, xs, threshold, fused)


def paste_instances(labels: Tensor, scores: Tensor, soft: Tensor, stride: int, input_size: tuple[int, int],
                    orig_size: tuple[int, int], threshold: float) -> dict:
    """The eager form of ``drop_empty(dict(labels, scores, masks=upsample_masks(soft, ...)))``: the same
    instances, ``labels (n,)``, ``scores (n,)``, ``boxes (n, 4)``, with ``masks`` as :class:`MaskCrops`."""
    masks, kept = paste_masks(soft, stride, input_size, orig_size, threshold)
    return dict(labels=labels[kept], scores=scores[kept], masks=masks, boxes=masks.boxes)
