"""ResNet backbone returning C3, C4, C5 (strides 8, 16, 32), and C2 (stride 4) when asked."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from csrseg.errors import ConfigError, CsrsegError
from csrseg.models.backbones.config import BackboneConfig

CHANNELS = {18: (128, 256, 512), 34: (128, 256, 512), 50: (512, 1024, 2048), 101: (512, 1024, 2048)}
C2_CHANNELS = {18: 64, 34: 64, 50: 256, 101: 256}


class WeightsError(CsrsegError, RuntimeError):
    """Pretrained weights that cannot be found, fetched or applied."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.pt`` (loaded with ``weights_only=True``) or ``.safetensors`` file.

    Accepts a bare state dict or one nested under ``"model"`` / ``"state_dict"``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors have no common base
        raise WeightsError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return state


def imagenet_state_dict(depth: int, arch: str = "resnet") -> dict[str, Tensor]:
    """torchvision's ImageNet weights (V1, as mmdetection's ``torchvision://resnetXX``) of
    ``resnet{depth}``, or of the light backbone ``arch`` (e.g. ``regnet_x_400mf``)."""
    name = f"resnet{depth}" if arch == "resnet" else arch
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise WeightsError(
            f"cannot download ImageNet weights for {name} ({type(exc).__name__}): put {weights.url} "
            f"at {cache} (or give model.backbone.weights=/path/to/{name}.pth), "
            f"or train from scratch with model.backbone.weights=none"
        ) from None


def describe_weights(cfg: BackboneConfig) -> str:
    """One line: where the backbone's weights come from and what is frozen."""
    if cfg.weights in (None, "", "none", "None"):
        source = "random init (from scratch)"
    elif cfg.weights == "imagenet":
        source = f"ImageNet weights (torchvision IMAGENET1K_V1, cache {torch.hub.get_dir()})"
    else:
        source = f"weights from {cfg.weights}"
    frozen = f"stem + {cfg.frozen_stages} stage(s) frozen" if cfg.frozen_stages else "nothing frozen"
    return f"backbone: {backbone_name(cfg)}, {source}, {frozen}, norm {cfg.norm}"


def backbone_name(cfg: BackboneConfig) -> str:
    """``ResNet-50``, ``regnet_x_400mf``, ...: the backbone as the logs and the demo plan name it."""
    return f"ResNet-{cfg.depth}" if cfg.arch == "resnet" else cfg.arch


class ResNetBackbone(nn.Module):
    """torchvision ResNet-{18,34,50,101} without pooling/fc.

    ``forward(images)``: ``(B, 3, H, W)`` -> ``[C3, C4, C5]`` with shapes
    ``(B, c3, H/8, W/8)``, ``(B, c4, H/16, W/16)``, ``(B, c5, H/32, W/32)``
    (``self.out_channels``: 512/1024/2048 for R50, 128/256/512 for R18). With ``levels``
    ``(2, 3, 4, 5)`` (K-Net's FPN neck) ``[C2, C3, C4, C5]``, C2 ``(B, c2, H/4, W/4)``.
    """

    def __init__(self, cfg: BackboneConfig, levels: tuple[int, ...] = (3, 4, 5)) -> None:
        super().__init__()
        if cfg.depth not in CHANNELS:
            raise ConfigError(f"backbone depth {cfg.depth} not supported; choose from {sorted(CHANNELS)}")
        if cfg.norm not in ("frozen_bn", "eval_bn", "bn"):
            raise ConfigError(f"backbone norm {cfg.norm!r} not supported; choose frozen_bn, eval_bn or bn")
        if not 0 <= cfg.frozen_stages <= 4:
            raise ConfigError(f"backbone frozen_stages={cfg.frozen_stages} must be in 0..4")
        if tuple(levels) not in ((3, 4, 5), (2, 3, 4, 5)):
            raise ValueError(f"ResNet levels {levels}: C3-C5, or C2-C5")
        self.cfg = cfg
        norm_layer = FrozenBatchNorm2d if cfg.norm == "frozen_bn" else nn.BatchNorm2d
        net = getattr(torchvision.models, f"resnet{cfg.depth}")(weights=None, norm_layer=norm_layer)
        if cfg.weights not in (None, "", "none", "None"):
            state = imagenet_state_dict(cfg.depth) if cfg.weights == "imagenet" else read_state_dict(cfg.weights)
            load_backbone_weights(net, state, source=cfg.weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.return_c2 = 2 in levels
        self.out_channels = ((C2_CHANNELS[cfg.depth],) if self.return_c2 else ()) + CHANNELS[cfg.depth]
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        stages = [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]
        return stages[: self.cfg.frozen_stages + 1] if self.cfg.frozen_stages > 0 else []

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNetBackbone":
        super().train(mode)
        # Frozen stages keep their BatchNorm statistics even when the rest trains.
        for module in self._frozen_modules():
            module.eval()
        if self.cfg.norm == "eval_bn":  # statistics stay the pretrained ones; scale and shift train
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        c2 = self.layer1(self.stem(images))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5] if self.return_c2 else [c3, c4, c5]


def load_backbone_weights(net: nn.Module, state: dict[str, Tensor], source: str, name: str = "this ResNet") -> None:
    """Copy ``state`` into a torchvision backbone ``name``; the classifier (``fc.*``, ``classifier.*``) is optional."""
    state = {k.removeprefix("backbone.body.").removeprefix("backbone."): v for k, v in state.items()}
    head = ("fc.", "classifier.")  # ImageNet classifiers (ResNet, RegNet / MobileNetV3): not used
    state = {k: v for k, v in state.items() if not k.startswith(head) and not k.endswith("num_batches_tracked")}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(head) and not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch {len(wrong)} (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise WeightsError(f"{source}: not weights of {name}: " + "; ".join(parts))
    net.load_state_dict(state, strict=False)
