import dataclasses
import math

import torch

from csrseg.models.heads.common import LossConfig
from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.common import dice_loss
from csrseg.models.heads.solov2.outputs import SOLOv2Output
from csrseg.models.heads.solov2.loss import SOLOLoss

HEAD = SOLOv2Config(num_grids=(4,), scale_ranges=((1, 1000),), grid_strides=(8,), kernel_dim=2)


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_disjoint():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    perfect = torch.where(target > 0, 50.0, -50.0)
    assert dice_loss(perfect, target).item() < 1e-6
    disjoint = torch.where(target > 0, -50.0, 50.0)
    assert abs(dice_loss(disjoint, target).item() - 1) < 1e-6


def _outputs(num_classes=3, requires_grad=True):
    torch.manual_seed(0)
    cls = torch.full((1, num_classes, 4, 4), -4.0, requires_grad=requires_grad)
    kernels = torch.randn(1, 2, 4, 4, requires_grad=requires_grad)
    feats = torch.randn(1, 2, 8, 8, requires_grad=requires_grad)
    return SOLOv2Output([cls], [kernels], feats)


def test_image_without_instances_gives_only_the_classification_loss():
    criterion = SOLOLoss(3, HEAD)
    out = _outputs()
    losses = criterion(out, [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, 64, 64, dtype=torch.uint8)])
    assert losses["loss_dice"].item() == 0 and losses["loss_focal"].item() == 0
    # all 16 cells x 3 classes are negatives: focal = (1 - alpha) * p^gamma * -log(1 - p), normaliser 0 + 1
    p = 1 / (1 + math.exp(4.0))
    expected = 48 * 0.75 * p**2 * -math.log(1 - p)
    assert abs(losses["loss_cls"].item() - expected) < 1e-5
    assert abs(losses["loss"].item() - expected) < 1e-5
    losses["loss"].backward()
    assert out.kernels[0].grad is not None and out.mask_feats.grad is not None  # still in the graph (DDP)


def test_perfect_mask_prediction_has_zero_dice_and_weights_follow_eq6():
    criterion = SOLOLoss(3, HEAD)
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, 16:48, 16:48] = 1
    feats = torch.zeros(1, 2, 8, 8)
    feats[0, 0] = torch.where(torch.nn.functional.avg_pool2d(mask[None].float(), 8)[0, 0] > 0, 1.0, -1.0)
    kernels = torch.zeros(1, 2, 4, 4)
    kernels[0, 0] = 100.0
    cls = torch.full((1, 3, 4, 4), -4.0)
    losses = criterion(SOLOv2Output([cls], [kernels], feats), [torch.tensor([1])], [mask])
    assert losses["loss_dice"].item() < 1e-4
    total = losses["loss_cls"] + 2 * losses["loss_dice"] + 3 * losses["loss_focal"]
    assert torch.allclose(losses["loss"], total)


def test_cross_entropy_option_is_finite_and_differs():
    out = _outputs(requires_grad=False)
    gt = ([torch.tensor([0])], [torch.ones(1, 64, 64, dtype=torch.uint8)])
    focal = SOLOLoss(3, dataclasses.replace(HEAD, loss=LossConfig(cls_type="focal")))(out, *gt)["loss_cls"]
    ce = SOLOLoss(3, dataclasses.replace(HEAD, loss=LossConfig(cls_type="ce")))(out, *gt)["loss_cls"]
    assert torch.isfinite(ce) and not torch.allclose(focal, ce)


def test_mask_focal_alpha_default_weighs_foreground_and_background_alike():
    assert LossConfig().mask_focal_alpha == 0.5
