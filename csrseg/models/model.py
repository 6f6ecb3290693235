"""The whole network: backbone -> neck -> head, with the head's loss and post-processing.

The backbone, the neck (``model.neck.type``) and the head (``model.head.type``) are built here,
once; everything else (training, evaluation, export, benchmark) calls the head's interface
(:mod:`csrseg.models.heads`) through :class:`CSRSeg` and never asks which one runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from csrseg.errors import ConfigError
from csrseg.models.backbones import build_backbone
from csrseg.models.config import ModelConfig
from csrseg.models.heads import HEADS
from csrseg.models.necks import build_neck, neck_class


def build_head(in_channels: int, cfg: ModelConfig) -> nn.Module:
    """The head ``cfg.head.type`` names (:data:`csrseg.models.heads.HEADS`), on ``in_channels`` features."""
    if cfg.head.type not in HEADS:
        raise ConfigError(f"model.head.type={cfg.head.type!r}: choose {' or '.join(HEADS)}")
    return HEADS[cfg.head.type].build(in_channels, cfg.num_classes, cfg.head)


class CSRSeg(nn.Module):
    """Instance segmentation with the CSR + D2S neck (paper Fig. 1).

    ``forward(images)``: normalised ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 32
    -> the head's raw outputs. :meth:`loss` and :meth:`postprocess` turn those into
    losses or instances.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels = neck_class(cfg.neck).levels  # the backbone levels this neck reads
        self.backbone = build_backbone(cfg.backbone, levels)
        self.neck = build_neck(self.backbone.out_channels, cfg.neck)
        self.head = build_head(cfg.neck.channels, cfg)

    def forward(self, images: Tensor) -> Any:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be padded to multiples of 32")
        return self.head(self.neck(self.backbone(images)))

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


class _WithModel(Protocol):
    model: ModelConfig


def build_model(cfg: ModelConfig | _WithModel) -> CSRSeg:
    """Build the network of a run config (its ``model`` part) or of a :class:`ModelConfig`."""
    return CSRSeg(cfg if isinstance(cfg, ModelConfig) else cfg.model)
