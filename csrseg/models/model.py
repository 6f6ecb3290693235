"""The whole network: backbone -> neck -> head, with its loss and post-processing."""

from __future__ import annotations

from torch import Tensor, nn

from csrseg.config import Config, ModelConfig
from csrseg.models.backbone import ResNetBackbone
from csrseg.models.backbone_light import LightBackbone
from csrseg.models.head import HeadOutput, KernelHead
from csrseg.models.losses import SOLOLoss
from csrseg.models.neck import FusionNeck
from csrseg.models.postprocess import postprocess


class CSRSeg(nn.Module):
    """Instance segmentation with the CSR + D2S neck (paper Fig. 1).

    ``forward(images)``: normalised ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 32
    -> :class:`HeadOutput`. :meth:`loss` and :meth:`predict` turn that into losses
    or instances.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetBackbone(cfg.backbone) if cfg.backbone.arch == "resnet" else LightBackbone(cfg.backbone)
        self.neck = FusionNeck(self.backbone.out_channels, cfg.neck)
        self.head = KernelHead(cfg.neck.channels, cfg.num_classes, cfg.head)
        self.criterion = SOLOLoss(cfg.num_classes, cfg.head, cfg.loss)

    def forward(self, images: Tensor) -> HeadOutput:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be padded to multiples of 32")
        fused = self.neck(self.backbone(images))  # (B, C, H/8, W/8)
        return self.head(fused)

    def loss(self, outputs: HeadOutput, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        """Eq. 6 losses; ``gt_masks[b]`` is ``(N_b, H, W)`` at the padded input size."""
        return self.criterion(outputs, gt_labels, gt_masks)

    def postprocess(
        self, outputs: HeadOutput, input_sizes: list[tuple[int, int]], orig_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Instances per image: ``labels``, ``scores``, ``masks (n, H0, W0)`` bool, ``boxes``."""
        return postprocess(outputs, input_sizes, orig_sizes, self.cfg.head.grid_strides, self.cfg.postprocess)

    def predict(
        self, images: Tensor, input_sizes: list[tuple[int, int]], orig_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        return self.postprocess(self(images), input_sizes, orig_sizes)


def build_model(cfg: Config | ModelConfig) -> CSRSeg:
    """Build the network of a :class:`Config` (or just its ``model`` part)."""
    return CSRSeg(cfg.model if isinstance(cfg, Config) else cfg)
