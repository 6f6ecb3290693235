"""BatchNorm folded into the convolutions for inference: the same network to float32 rounding, no
BatchNorm pass left, and what a checkpoint's Predictor runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from csrseg.config import without_pretrained
from csrseg.inference.predictor import Predictor
from csrseg.models import build_model
from csrseg.models.backbones.config import BackboneConfig
from csrseg.models.backbones.resnet import ResNetBackbone
from csrseg.models.fold import NORMS, fold_batch_norms

from tests.conftest import fake_checkpoint, match_instances


@pytest.fixture(autouse=True)
def _ieee_fp32():
    """Both sides in IEEE float32: oneDNN may otherwise run fp32 convolutions in a reduced precision
    (bf16 or tf32 where the CPU has it), which would hide or fake a difference."""
    before = torch.backends.mkldnn.conv.fp32_precision
    torch.backends.mkldnn.conv.fp32_precision = "ieee"
    yield
    torch.backends.mkldnn.conv.fp32_precision = before


def _scrambled_statistics(net: nn.Module) -> None:
    """Statistics and affine terms far from the identity, so a fold that dropped one would show."""
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, NORMS):
            c = module.running_mean.numel()
            module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(c, generator=generator) * 2 + 0.2)
            module.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(c, generator=generator) - 0.5)


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_a_folded_resnet_gives_the_same_features(norm):
    torch.manual_seed(0)
    net = ResNetBackbone(BackboneConfig(depth=50, norm=norm, weights=None, frozen_stages=0)).eval()
    _scrambled_statistics(net)
    folded = copy.deepcopy(net)
    assert fold_batch_norms(folded) == 53  # the stem, 16 blocks of three, four shortcuts
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for want, got in zip(net(x), folded(x)):
            # float32: the fold rounds the scaled weights once; relative to the feature's range
            assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_folding_a_model_in_training_mode_is_refused():
    net = ResNetBackbone(BackboneConfig(depth=18, norm="bn", weights=None, frozen_stages=0))
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norms(net.train())


def test_a_norm_that_does_not_follow_a_conv_is_left_alone():
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4)).eval()
    assert fold_batch_norms(net) == 0
    assert isinstance(net[1], nn.BatchNorm2d) and isinstance(net[3], nn.GroupNorm)


def test_a_checkpoints_predictor_runs_folded_and_finds_what_the_trained_model_finds(tmp_path, synth_root):
    path = fake_checkpoint(tmp_path, cls_bias=0.0)
    predictor = Predictor(path, device="cpu", score_thr=0.05)
    assert not any(isinstance(m, NORMS) for m in predictor.model.modules())
    assert predictor.model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    ckpt = torch.load(path, weights_only=True)
    model = build_model(without_pretrained(predictor.cfg))
    model.load_state_dict(ckpt["model"])
    assert any(isinstance(m, NORMS) for m in model.modules())
    trained = Predictor.for_model(model.eval(), predictor.cfg, predictor.class_names, predictor.cat_ids, "cpu",
                                  score_thr=0.05)
    images = sorted((synth_root / "val").glob("*.png"))[:2]
    assert len(images) == 2
    for image in images:
        ours, theirs = predictor.predict(image), trained.predict(image)
        assert ours, "the fake checkpoint scores candidates everywhere: an empty list would test nothing"
        match_instances(ours, theirs, min_iou=0.99, score_tol=1e-4)
