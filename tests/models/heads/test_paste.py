"""Masks resized within their boxes are the full-size path's masks, pixel for pixel, and so are their boxes.

The reference is the full-size path eager inference took before (and the ONNX export still traces):
``drop_empty(upsample_masks(...))``, every mask resized to the whole original image.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from csrseg.models.heads.common import drop_empty, upsample_masks
from csrseg.masks.crops import MaskCrops
from csrseg.models.heads import paste
from csrseg.models.heads.paste import fma32, paste_instances, resize_arithmetic

ROOT = Path(__file__).resolve().parents[3]


def probability_maps(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """``(n, h, w)`` probabilities: blobs from a pixel to most of the map, some at its edges, a few that
    never reach 0.5 (dropped as empty), on noise."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.arange(height)[:, None].float(), torch.arange(width)[None].float()
    maps = []
    for i in range(n):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([height, width])
        if i % 5 == 1:  # on a corner
            cy, cx = cy.new_tensor(0.0), cx.new_tensor(width - 1.0)
        radius = 0.3 + torch.rand(1, generator=g) * min(height, width) / 2
        dist = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt() / radius
        logits = (1 - dist) * 6 if i % 7 != 3 else torch.full_like(dist, -5.0)  # some never pass the threshold
        maps.append(torch.sigmoid(logits + torch.randn(height, width, generator=g) * 0.7))
    return torch.stack(maps)


def full_size(soft: torch.Tensor, stride: int, input_size, orig_size, threshold: float = 0.5) -> dict:
    """The reference: every mask resized to the whole image, empty ones dropped."""
    labels, scores = torch.arange(len(soft)), torch.linspace(1, 0, len(soft))
    return drop_empty(dict(labels=labels, scores=scores, masks=upsample_masks(soft, stride, input_size, orig_size, threshold)))


def pasted(soft: torch.Tensor, stride: int, input_size, orig_size, threshold: float = 0.5) -> dict:
    labels, scores = torch.arange(len(soft)), torch.linspace(1, 0, len(soft))
    return paste_instances(labels, scores, soft, stride, input_size, orig_size, threshold)


def assert_same_instances(ours: dict, reference: dict) -> None:
    assert isinstance(ours["masks"], MaskCrops)
    for key in ("labels", "scores", "boxes"):
        assert torch.equal(ours[key], reference[key]), key
    assert torch.equal(ours["masks"].dense(), reference["masks"])


# (h, w) at stride, stride, input size (the resized image within the padded input), original size
CASES = {
    "upsampled x3.5": ((16, 25), 8, (120, 200), (420, 700)),
    "K-Net stride 4, odd sizes": ((30, 50), 4, (117, 198), (379, 641)),
    "downsampled": ((16, 16), 8, (128, 125), (97, 93)),
    "no resize": ((16, 25), 8, (125, 196), (125, 196)),
    "no resize, K-Net stride 4, odd sizes": ((50, 84), 4, (199, 333), (199, 333)),
    "no resize, a small frame": ((6, 7), 4, (22, 27), (22, 27)),
    "one axis resized": ((16, 25), 8, (125, 196), (125, 391)),
    "a frame the kernel resizes differently": ((8, 8), 8, (64, 60), (60, 56)),
}


@pytest.mark.numerics
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_pasted_masks_and_boxes_equal_the_full_size_path(case):
    (h, w), stride, input_size, orig_size = case
    soft = probability_maps(24, h, w, seed=sum(orig_size))
    reference = full_size(soft, stride, input_size, orig_size)
    assert 0 < len(reference["labels"]) < 24  # some instances kept, some dropped as empty
    assert_same_instances(pasted(soft, stride, input_size, orig_size), reference)


@pytest.mark.numerics
@pytest.mark.parametrize("block", [1, 1500, 10000])  # a row at a time, two rows, a dozen or so
def test_masks_decided_and_packed_block_by_block_are_the_full_size_paths(monkeypatch, block):
    monkeypatch.setattr(paste, "BLOCK", block)
    for (h, w), stride, input_size, orig_size in (CASES["upsampled x3.5"], CASES["K-Net stride 4, odd sizes"]):
        soft = probability_maps(12, h, w, seed=block)
        assert_same_instances(pasted(soft, stride, input_size, orig_size), full_size(soft, stride, input_size, orig_size))


def test_a_mask_that_covers_the_frame_is_held_packed():
    soft = torch.full((3, 16, 25), 0.9)  # every mask covers the whole photo: its box is the photo
    masks = pasted(soft, 8, (120, 200), (1200, 2000))["masks"]
    assert masks.int_boxes() == [(0, 0, 1999, 1199)] * 3
    assert all(crop.nbytes == 1200 * 250 and crop.count() == 1200 * 2000 for crop in masks.crops)


@pytest.mark.numerics
@pytest.mark.parametrize("threshold", [0.5, 0.4])
def test_pixels_within_an_ulp_of_the_threshold_fall_as_in_the_full_size_resize(threshold):
    # every resized value lies within a few ulps of the threshold: decided by the last bit of
    # the kernel's arithmetic (with or without fused multiply-adds)
    g = torch.Generator().manual_seed(0)
    soft = threshold + (torch.rand(6, 17, 23, generator=g) - 0.5) * 1e-5
    soft[0] = threshold
    for orig_size in [(201, 290), (97, 533)]:
        reference = full_size(soft, 8, (130, 180), orig_size, threshold)
        assert_same_instances(pasted(soft, 8, (130, 180), orig_size, threshold), reference)


@pytest.mark.numerics
@pytest.mark.parametrize("threshold", [0.5, 0.4])
def test_near_threshold_pixels_of_a_window_fall_as_in_the_whole_maps_resize(threshold):
    # without a resize only a window around each mask is upsampled: its values must be the whole
    # map's to the last bit, here all within a few ulps of the threshold, at the window's edges too
    g = torch.Generator().manual_seed(1)
    soft = torch.full((4, 40, 60), 0.1)
    for i, (y, x) in enumerate([(5, 6), (0, 0), (30, 48), (17, 25)]):
        soft[i, y : y + 9, x : x + 11] = threshold + (torch.rand(min(9, 40 - y), min(11, 60 - x), generator=g) - 0.5) * 1e-5
    reference = full_size(soft, 4, (157, 237), (157, 237), threshold)
    assert len(reference["labels"]) == 4
    assert_same_instances(pasted(soft, 4, (157, 237), (157, 237), threshold), reference)


@pytest.mark.numerics
def test_this_cpus_resize_arithmetic_is_modelled():
    # otherwise every mask is resized at full size: right, but as slow as before
    assert resize_arithmetic("cpu") is not None


def test_the_portable_kernels_arithmetic_is_modelled_too():
    # CPUs without AVX2 (and ATEN_CPU_CAPABILITY=default) resize without fused multiply-adds
    script = (
        "import torch; from tests.models.heads import test_paste as t; "
        "from csrseg.models.heads.paste import resize_arithmetic; "
        "assert resize_arithmetic('cpu') is False, resize_arithmetic('cpu'); "
        "[t.test_pasted_masks_and_boxes_equal_the_full_size_path(c) for c in t.CASES.values()]; "
        "t.test_pixels_within_an_ulp_of_the_threshold_fall_as_in_the_full_size_resize(0.5)"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_fma32_rounds_once_where_float64_would_round_twice():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24, halfway between two float32s; a tiny addend puts the exact
    # sum just above halfway (round up), which float64 loses, leaving a tie that rounds to even (down)
    a = torch.tensor([1 + 2**-12], dtype=torch.float32)
    tiny = torch.tensor([2.0**-70], dtype=torch.float32)
    up = torch.tensor([1 + 2**-11 + 2**-23], dtype=torch.float32)
    assert (a.double() * a.double() + tiny.double()).float().item() != up.item()
    assert torch.equal(fma32(a, a, tiny), up)
    assert torch.equal(fma32(a, a, -tiny), torch.tensor([1 + 2**-11], dtype=torch.float32))


def test_crops_of_full_size_masks_give_those_masks_back():
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(5, 30, 40, generator=g) > 0.9
    masks[3] = False
    masks[3, 29, 0] = True  # one pixel in a corner
    crops = MaskCrops.from_dense(masks)
    assert torch.equal(crops.dense(), masks) and crops.shape == (5, 30, 40)
    assert torch.equal(crops.boxes, drop_empty(dict(labels=torch.arange(5), scores=torch.ones(5), masks=masks))["boxes"])
    assert [tuple(c.shape) for c in crops.crops][3] == (1, 1)
    assert torch.equal(crops.select([4, 1]).dense(), masks[[4, 1]])


def test_any_along_is_any_on_contiguous_and_strided_masks():
    from csrseg.masks.crops import any_along

    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 60, 90, generator=generator) > 0.995
    masks[2] = False  # an empty mask
    for view in (masks, masks[:, 5:50, 7:80], masks.transpose(1, 2)):
        for dim in (1, 2):
            got = any_along(view, dim)
            assert got.dtype == torch.bool and torch.equal(got, view.any(dim=dim))
