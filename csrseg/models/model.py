"""The whole network: backbone -> neck -> head, with the head's loss and post-processing.

The neck (``model.neck.type``) and the head (``model.head.type``) are chosen here, once;
everything else (training, evaluation, export, benchmark) calls the head's interface
(:mod:`csrseg.models.heads`) through :class:`CSRSeg` and never asks which one runs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from csrseg.config import Config, ConfigError, ModelConfig
from csrseg.models.backbones.resnet import ResNetBackbone
from csrseg.models.backbones.light import LightBackbone
from csrseg.models.heads.knet import KNetHead
from csrseg.models.heads.solov2 import SOLOv2Head
from csrseg.models.necks.fusion import FusionNeck
from csrseg.models.necks.fpn_semantic import FPNSemanticNeck

NECKS = ("fusion", "fpn_semantic")
HEADS = ("knet", "solov2")


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """ResNet (the paper's; C2 too for K-Net's own neck) or a light torchvision family."""
    if cfg.backbone.arch == "resnet":
        return ResNetBackbone(cfg.backbone, return_c2=cfg.neck.type == "fpn_semantic")
    if cfg.neck.type == "fpn_semantic":
        raise ConfigError(f"model.neck.type=fpn_semantic needs C2, which only the ResNet backbone gives "
                          f"(model.backbone.arch={cfg.backbone.arch})")
    return LightBackbone(cfg.backbone)


def build_neck(in_channels: tuple[int, ...], cfg: ModelConfig) -> nn.Module:
    if cfg.neck.type == "fusion":
        return FusionNeck(in_channels, cfg.neck)
    return FPNSemanticNeck(in_channels, cfg.neck)


def build_head(in_channels: int, cfg: ModelConfig) -> nn.Module:
    if cfg.head.type == "knet":
        return KNetHead(in_channels, cfg.num_classes, cfg.head.knet, cfg.loss, cfg.postprocess)
    return SOLOv2Head(in_channels, cfg.num_classes, cfg.head, cfg.loss, cfg.postprocess)


class CSRSeg(nn.Module):
    """Instance segmentation with the CSR + D2S neck (paper Fig. 1).

    ``forward(images)``: normalised ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 32
    -> the head's raw outputs. :meth:`loss` and :meth:`postprocess` turn those into
    losses or instances.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.neck.type not in NECKS:
            raise ConfigError(f"model.neck.type={cfg.neck.type!r}: choose {' or '.join(NECKS)}")
        if cfg.head.type not in HEADS:
            raise ConfigError(f"model.head.type={cfg.head.type!r}: choose {' or '.join(HEADS)}")
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.neck = build_neck(self.backbone.out_channels, cfg)
        self.head = build_head(cfg.neck.channels, cfg)

    def forward(self, images: Tensor) -> Any:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be padded to multiples of 32")
        fused = self.neck(self.backbone(images))  # (B, C, H/8, W/8), or K-Net's (loc, sem) pair
        return self.head(fused)

    def loss(self, outputs: Any, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        """The head's losses (``"loss"``: the total); ``gt_masks[b]`` is ``(N_b, H, W)`` at the padded input size."""
        return self.head.loss(outputs, gt_labels, gt_masks)

    def postprocess(
        self, outputs: Any, input_sizes: list[tuple[int, int]], orig_sizes: list[tuple[int, int]], static: bool = False
    ) -> list[dict[str, Tensor]]:
        """Instances per image: ``labels``, ``scores``, ``masks (n, H0, W0)`` bool, ``boxes``.

        ``static``: the form the ONNX export traces (no data-dependent shapes until the end).
        """
        return self.head.postprocess(outputs, input_sizes, orig_sizes, static)

    def predict(
        self, images: Tensor, input_sizes: list[tuple[int, int]], orig_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        return self.postprocess(self(images), input_sizes, orig_sizes)


def build_model(cfg: Config | ModelConfig) -> CSRSeg:
    """Build the network of a :class:`Config` (or just its ``model`` part)."""
    return CSRSeg(cfg.model if isinstance(cfg, Config) else cfg)
