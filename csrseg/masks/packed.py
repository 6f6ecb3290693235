"""A binary mask at one bit a pixel (:class:`PackedCrop`): how instances keep their masks.

A 24 MP photo's hundred masks that each cover the frame are 2.4 GB as bool arrays and 300 MB packed;
packing or unpacking one such mask takes about 2 ms (numpy's ``packbits``), against the tens of
milliseconds each consumer (encoding, drawing) spends on it anyway. Rows are packed one by one, so a
band of rows unpacks without the rest (what the overlay reads).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

BAND_PIXELS = 1 << 22  # pixels unpacked at a time by :meth:`PackedCrop.window`: 4 MB of bool
BITS_SET = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)  # a byte's pixels (numpy < 2 has no bitwise_count)


class PackedCrop:
    """An ``(h, w)`` bool mask packed row by row: ``bits`` ``(h, ceil(w / 8))`` uint8 as
    ``np.packbits(mask, axis=1)`` gives it (a row's first pixel in its first byte's high bit, the
    bits past ``w`` zero)."""

    __slots__ = ("bits", "width")

    def __init__(self, bits: np.ndarray, width: int) -> None:
        if bits.dtype != np.uint8 or bits.ndim != 2 or bits.shape[1] != (width + 7) // 8:
            raise ValueError(f"packed bits of shape {bits.shape} and dtype {bits.dtype} do not hold rows of {width} pixels")
        if width % 8 and bits.size and np.any(bits[:, -1] & (0xFF >> (width % 8))):  # what counts and encodes rely on
            raise ValueError(f"packed rows of {width} pixels with bits set past the last pixel")
        self.bits, self.width = bits, int(width)

    @classmethod
    def pack(cls, mask: np.ndarray | Tensor) -> PackedCrop:
        """``(h, w)`` bool (numpy, or a tensor on any device) -> packed."""
        if isinstance(mask, Tensor):
            mask = mask.cpu().numpy()
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"a mask of shape {mask.shape}: expected (h, w)")
        return cls(np.packbits(mask, axis=1), mask.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.bits.shape[0]), self.width)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def unpack(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start`` to ``stop`` (exclusive; default all) as a fresh ``(rows, w)`` bool array."""
        return np.unpackbits(self.bits[start:stop], axis=1, count=self.width).view(bool)

    def window(self, top: int, bottom: int, left: int, right: int) -> PackedCrop:
        """Rows ``top`` to ``bottom`` and columns ``left`` to ``right`` (inclusive), packed on their own:
        ``self`` when that is all of it; otherwise a copy, made a band of rows at a time, so that
        neither the whole mask unpacked nor this one's bits are held for it."""
        if (top, bottom, left, right) == (0, self.shape[0] - 1, 0, self.width - 1):
            return self
        if (left, right) == (0, self.width - 1):
            return PackedCrop(self.bits[top : bottom + 1].copy(), self.width)
        width = right - left + 1
        bits = np.empty((bottom - top + 1, (width + 7) // 8), dtype=np.uint8)
        step = max(1, BAND_PIXELS // self.width)
        for start in range(top, bottom + 1, step):
            stop = min(start + step, bottom + 1)
            bits[start - top : stop - top] = np.packbits(self.unpack(start, stop)[:, left : right + 1], axis=1)
        return PackedCrop(bits, width)

    def count(self) -> int:
        """The mask's pixels."""
        return int(BITS_SET[self.bits].sum(dtype=np.int64))

    def __repr__(self) -> str:
        return f"PackedCrop(shape={self.shape})"
