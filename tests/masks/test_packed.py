"""A mask packed at a bit a pixel gives back exactly its pixels: whole, a band of rows, or a window."""

import numpy as np
import pytest
import torch

from csrseg.masks import packed as packed_module
from csrseg.masks.packed import PackedCrop


def random_masks(rng, count: int):
    """Masks of widths around multiples of 8 (the pad bits of a row's last byte), empty, full and sparse."""
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        yield rng.random((h, w)) < rng.choice([0.0, 0.05, 0.5, 0.95, 1.0])


def test_a_packed_mask_unpacks_to_its_pixels_whole_and_by_rows():
    rng = np.random.default_rng(0)
    for mask in random_masks(rng, 300):
        packed = PackedCrop.pack(mask)
        assert packed.shape == mask.shape and packed.nbytes == mask.shape[0] * ((mask.shape[1] + 7) // 8)
        assert np.array_equal(packed.unpack(), mask) and packed.unpack().dtype == bool
        start = int(rng.integers(0, mask.shape[0]))
        stop = int(rng.integers(start, mask.shape[0] + 1))
        assert np.array_equal(packed.unpack(start, stop), mask[start:stop])
        assert packed.count() == int(mask.sum())


def test_a_tensor_on_any_device_packs_as_its_numpy_mask():
    mask = torch.rand(9, 13, generator=torch.Generator().manual_seed(0)) < 0.5
    assert np.array_equal(PackedCrop.pack(mask).unpack(), mask.numpy())


@pytest.mark.parametrize("band_pixels", [packed_module.BAND_PIXELS, 5])  # 5: a row or so at a time
def test_a_window_of_a_packed_mask_is_that_window_of_its_pixels(monkeypatch, band_pixels):
    monkeypatch.setattr(packed_module, "BAND_PIXELS", band_pixels)
    rng = np.random.default_rng(1)
    for mask in random_masks(rng, 300):
        h, w = mask.shape
        top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
        bottom, right = int(rng.integers(top, h)), int(rng.integers(left, w))
        packed = PackedCrop.pack(mask)
        window = packed.window(top, bottom, left, right)
        assert np.array_equal(window.unpack(), mask[top : bottom + 1, left : right + 1])
        assert np.count_nonzero(np.unpackbits(window.bits, axis=1)[:, right - left + 1 :]) == 0  # pad bits stay 0
    whole = PackedCrop.pack(np.ones((3, 5), bool))
    assert whole.window(0, 2, 0, 4) is whole  # nothing to trim: no copy


def test_bits_that_do_not_hold_the_rows_they_claim_are_refused():
    with pytest.raises(ValueError, match="do not hold rows of 17 pixels"):
        PackedCrop(np.zeros((2, 2), np.uint8), 17)
    with pytest.raises(ValueError, match="rows of 3 pixels with bits set past the last pixel"):
        PackedCrop(np.array([[0b11110000]], np.uint8), 3)  # counts and encodings would see a 4th pixel
    assert PackedCrop(np.array([[0b11100000]], np.uint8), 3).count() == 3
    with pytest.raises(ValueError, match=r"expected \(h, w\)"):
        PackedCrop.pack(np.zeros((2, 2, 2), bool))
