import torch

from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.common import binary_rescale
from csrseg.models.heads.solov2.targets import assign_targets, center_cells, instance_geometry

CFG = SOLOv2Config(num_grids=(8, 4), scale_ranges=((1, 64), (32, 512)), grid_strides=(8, 8))


def _square(y0, x0, size, pad=128):
    mask = torch.zeros(pad, pad, dtype=torch.uint8)
    mask[y0 : y0 + size, x0 : x0 + size] = 1
    return mask


def test_geometry_of_a_square():
    cy, cx, h, w = instance_geometry(_square(10, 20, 30)[None])
    assert (h.item(), w.item()) == (30, 30)
    assert cy.item() == 25 and cx.item() == 35  # centre of pixels 10..39 is 24.5, +0.5 for pixel centres


def test_instance_in_two_scale_ranges_is_positive_on_both_grids():
    # 48 px square: sqrt(48*48) = 48 lies in (1, 64) and in (32, 512)
    targets = assign_targets([torch.tensor([2])], [_square(40, 40, 48)[None]], (128, 128), 3, CFG)
    assert targets[0].pos_cell.numel() > 0 and targets[1].pos_cell.numel() > 0
    assert (targets[0].labels[targets[0].labels != 3] == 2).all()


def test_instance_outside_a_range_is_not_assigned_there():
    targets = assign_targets([torch.tensor([0])], [_square(0, 0, 100)[None]], (128, 128), 3, CFG)
    assert targets[0].pos_cell.numel() == 0 and targets[1].pos_cell.numel() > 0


def test_only_centre_region_cells_are_positive():
    # 60 px square at (30, 30)-(89, 89) on a 128 px input; 8x8 grid of 16 px cells.
    # centre 60 -> cell 3; half size 0.2 * 30 = 6 px -> 54..66 -> cells 3..4, inside 2..4.
    targets = assign_targets([torch.tensor([1])], [_square(30, 30, 60)[None]], (128, 128), 3, CFG)
    positive = {(int(c) // 8, int(c) % 8) for c in targets[0].pos_cell}
    assert positive == {(3, 3), (3, 4), (4, 3), (4, 4)}
    assert center_cells(60.0, 60.0, 6.0, 6.0, 128, 128, 8) == (3, 4, 3, 4)


def test_centre_region_is_clipped_to_3x3_around_centre():
    top, down, left, right = center_cells(64.0, 64.0, 60.0, 60.0, 128, 128, 8)
    assert (top, down, left, right) == (3, 5, 3, 5)


def test_smaller_instance_wins_a_shared_cell_and_masks_follow():
    big = _square(16, 16, 60)
    small = _square(30, 30, 30)
    targets = assign_targets([torch.tensor([0, 1])], [torch.stack([big, small])], (128, 128), 3, CFG)
    level = targets[0]
    centre_cell = 2 * 8 + 2  # both centres fall in cell (2, 2)
    assert level.labels.view(-1)[centre_cell] == 1
    idx = (level.pos_cell == centre_cell).nonzero().item()
    # binary target: stride-8 pixels at least half covered by rows/columns 30..59:
    # 4, 5, 6 fully and 7 half (56..59) in each direction, so 4x4 minus the quarter-covered corner
    assert set(level.masks[idx].unique().tolist()) == {0.0, 1.0}
    assert level.masks[idx].sum().item() == 15


def test_binary_rescale_keeps_an_instance_thinner_than_a_target_pixel():
    thin = torch.zeros(1, 64, 64, dtype=torch.uint8)
    thin[0, 20:23, 8:40] = 1  # 3 px tall: at most 3/8 of any stride-8 pixel
    target = binary_rescale(thin)
    assert target.sum() > 0 and set(target.unique().tolist()) == {0.0, 1.0}
    assert target[0, 2, 1:5].eq(1).all()  # the best-covered row, where the stripe lies
    assert binary_rescale(torch.zeros(1, 64, 64)).sum() == 0


def test_masks_are_downsampled_to_stride_8_and_batch_indices_kept():
    masks = [_square(8, 8, 40)[None], torch.zeros(0, 128, 128, dtype=torch.uint8)]
    targets = assign_targets([torch.tensor([0]), torch.zeros(0, dtype=torch.long)], masks, (128, 128), 3, CFG)
    level = targets[0]
    assert level.masks.shape[1:] == (16, 16)
    assert (level.pos_batch == 0).all()
    assert (level.labels[1] == 3).all()  # image without instances: all background


def test_soft_targets_keep_each_stride8_pixels_covered_share_binary_ones_round_it():
    import dataclasses

    # 12 px square at (4, 4)-(15, 15): stride-8 pixel (0, 0) is covered on 4x4 of its 8x8 pixels,
    # (0, 1) and (1, 0) on 4x8, (1, 1) on 8x8
    mask = _square(4, 4, 12)[None]
    expected_soft = torch.tensor([[0.25, 0.5], [0.5, 1.0]])
    soft = assign_targets([torch.tensor([0])], [mask], (128, 128), 3, dataclasses.replace(CFG, mask_targets="soft"))
    binary = assign_targets([torch.tensor([0])], [mask], (128, 128), 3, CFG)
    assert torch.equal(soft[0].masks[0, :2, :2], expected_soft)
    assert torch.equal(binary[0].masks[0, :2, :2], torch.tensor([[0.0, 1.0], [1.0, 1.0]]))  # >= half covered
    assert soft[0].masks[0, 2:].sum() == 0 and soft[0].masks[0, :, 2:].sum() == 0
