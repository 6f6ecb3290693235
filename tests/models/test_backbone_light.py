"""Light torchvision backbones return C3, C4, C5 at strides 8, 16, 32, like the ResNet."""

import pytest
import torch
import torchvision

from csrseg.errors import ConfigError
from csrseg.models.backbones.config import BackboneConfig
from csrseg.models.backbones.resnet import WeightsError
from csrseg.models.backbones.light import LightBackbone


@pytest.mark.parametrize("arch", ["regnet_x_400mf", "mobilenet_v3_small"])
def test_light_backbone_levels_have_strides_8_16_32_and_announced_channels(arch):
    net = LightBackbone(BackboneConfig(arch=arch, weights=None, frozen_stages=0, norm="bn")).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 96, 160))
    assert [tuple(f.shape[-2:]) for f in feats] == [(12, 20), (6, 10), (3, 5)]
    assert tuple(f.shape[1] for f in feats) == net.out_channels


def test_light_backbone_loads_a_local_state_dict_and_refuses_a_foreign_one(tmp_path):
    source = torchvision.models.regnet_x_400mf(weights=None)
    path = tmp_path / "rx400.pth"
    torch.save(source.state_dict(), path)
    net = LightBackbone(BackboneConfig(arch="regnet_x_400mf", weights=str(path), frozen_stages=0, norm="bn"))
    assert torch.equal(net.stages[0][0][0].weight, source.stem[0].weight)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match="not weights of regnet_x_400mf: missing"):
        LightBackbone(BackboneConfig(arch="regnet_x_400mf", weights=str(tmp_path / "r18.pth"), frozen_stages=0, norm="bn"))


def test_light_backbone_refuses_frozen_random_stages_and_unknown_names():
    with pytest.raises(ConfigError, match="trains all its stages"):
        LightBackbone(BackboneConfig(arch="regnet_x_400mf", weights=None, frozen_stages=1, norm="frozen_bn"))
    with pytest.raises(ConfigError, match="model.backbone.arch"):
        LightBackbone(BackboneConfig(arch="vgg16", weights=None, frozen_stages=0, norm="bn"))
