import dataclasses
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from csrseg.config import ConfigError, load_config, without_pretrained
from csrseg.models.backbones.config import BackboneConfig
from csrseg.models import build_model
from csrseg.models.backbones import resnet as backbone_mod
from csrseg.models.backbones.resnet import ResNetBackbone, WeightsError


@pytest.mark.parametrize("depth,channels", [(18, (128, 256, 512)), (50, (512, 1024, 2048))])
def test_levels_have_strides_8_16_32(depth, channels):
    net = ResNetBackbone(BackboneConfig(depth=depth, weights=None)).eval()
    with torch.no_grad():
        c3, c4, c5 = net(torch.randn(1, 3, 448, 640))
    assert c3.shape == (1, channels[0], 56, 80)
    assert c4.shape == (1, channels[1], 28, 40)
    assert c5.shape == (1, channels[2], 14, 20)


def test_stem_and_stage1_frozen_by_default_and_bn_frozen(tmp_path):
    _, path = _random_resnet_file(tmp_path)
    net = ResNetBackbone(BackboneConfig(depth=18, weights=str(path)))
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters() if p.dim() > 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_trainable_bn_keeps_frozen_stages_in_eval_mode():
    net = ResNetBackbone(BackboneConfig(depth=18, weights=None, norm="bn", frozen_stages=1)).train()
    assert not net.stem[1].training and net.layer2[0].bn1.training


def _random_resnet_file(tmp_path, depth=18, name="r18.pth"):
    torch.manual_seed(123)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    for p in reference.parameters():
        p.data.normal_()
    path = tmp_path / name
    torch.save(reference.state_dict(), path)
    return reference, path


def test_local_weight_file_sets_exactly_those_values(tmp_path):
    reference, path = _random_resnet_file(tmp_path)
    net = ResNetBackbone(BackboneConfig(depth=18, weights=str(path)))
    torch.testing.assert_close(net.stem[0].weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(net.layer3[0].bn1.running_var, reference.layer3[0].bn1.running_var, rtol=0, atol=0)


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    reference, _ = _random_resnet_file(tmp_path / "hub" / "checkpoints", name=url.rsplit("/", 1)[1])
    net = ResNetBackbone(BackboneConfig(depth=18, weights="imagenet"))
    torch.testing.assert_close(net.layer2[0].conv1.weight, reference.layer2[0].conv1.weight, rtol=0, atol=0)


def test_no_network_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(backbone_mod.torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError, match=str(tmp_path / "hub" / "checkpoints")):
        ResNetBackbone(BackboneConfig(depth=18, weights="imagenet"))


def test_weights_of_another_depth_are_refused_with_the_key(tmp_path):
    _, path = _random_resnet_file(tmp_path, depth=18)
    with pytest.raises(WeightsError, match="shape mismatch|missing"):
        ResNetBackbone(BackboneConfig(depth=50, weights=str(path)))


def test_garbage_weight_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        ResNetBackbone(BackboneConfig(depth=18, weights=str(path)))


def test_unsupported_depth_is_a_config_error():
    with pytest.raises(ConfigError):
        ResNetBackbone(BackboneConfig(depth=42))


def test_paper_presets_ask_for_imagenet_and_none_trains_everything():
    assert load_config("paper").model.backbone.weights == "imagenet"
    scratch = load_config("paper", ["model.backbone.weights=none"]).model.backbone
    assert (scratch.weights, scratch.frozen_stages, scratch.norm) == (None, 0, "bn")
    net = ResNetBackbone(dataclasses.replace(scratch, depth=18))
    assert all(p.requires_grad for p in net.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_offline_paper_training_is_one_line_with_the_cache_path_and_the_way_out(synth_root, tmp_path, capsys):
    from csrseg.cli import main

    argv = ["train", "--config", "paper", "--data", str(synth_root), "--out", str(tmp_path / "run"),
            "--set", "model.backbone.depth=18"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    expected = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
    assert err.startswith("csrseg: error:") and str(expected) in err and "model.backbone.weights=none" in err
    assert "\n" not in err


def test_without_pretrained_keeps_the_architecture_and_fetches_nothing():
    cfg = load_config("paper", ["model.backbone.depth=18"])
    model = build_model(without_pretrained(cfg))  # the autouse fixture refuses any download
    # BatchNorm stays as the preset has it (the K-Net presets: statistics frozen), not trainable from scratch
    assert model.backbone.cfg.norm == cfg.model.backbone.norm != "bn"
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())


def test_c2_is_returned_when_asked():
    net = ResNetBackbone(BackboneConfig(depth=18, weights=None, frozen_stages=0, norm="bn"), levels=(2, 3, 4, 5))
    feats = net(torch.randn(1, 3, 64, 96))
    assert net.out_channels == (64, 128, 256, 512)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]


def test_eval_bn_trains_scale_and_shift_but_keeps_the_statistics():
    torch.manual_seed(0)
    net = ResNetBackbone(BackboneConfig(depth=18, weights=None, frozen_stages=1, norm="eval_bn")).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    before = net.layer2[0].bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(net.layer2[0].bn1.running_mean, before)
    assert net.layer2[0].bn1.weight.requires_grad and not net.layer1[0].bn1.weight.requires_grad
