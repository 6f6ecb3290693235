"""SOLOv2-style kernel head on the single fused feature (``model.head.type=solov2``).

Kernel branch: the fused feature is resized to S x S for every grid S, two
normalised coordinate channels are appended, ``stacked_convs`` x (conv3x3, GN,
ReLU), then conv3x3 -> E: one dynamic 1x1 kernel per grid cell. Class branch:
the same resized feature without coordinates, ``stacked_convs`` x (conv3x3, GN,
ReLU), conv3x3 -> K logits. Mask branch: fused feature + coordinates,
``stacked_convs`` x (conv3x3, GN, ReLU), 1x1 -> E + GN + ReLU mask features. The mask of
cell (i, j) is ``sigmoid(kernel_ij · mask_feats)`` at stride 8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csrseg.errors import ConfigError
from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.solov2.loss import SOLOLoss
from csrseg.models.heads.solov2.outputs import SOLOv2Output
from csrseg.models.heads.solov2.postprocess import postprocess
from csrseg.models.layers.d2s import group_count
from csrseg.models.layers.position import coord_channels
from csrseg.models.necks.output import NeckOutput


def conv_stack(in_channels: int, channels: int, depth: int, num_groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(group_count(channels, num_groups), channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SOLOv2Head(nn.Module):
    """``forward(neck)``: ``neck.features`` ``(B, C, H/8, W/8)`` -> :class:`SOLOv2Output`; :meth:`loss`,
    :meth:`postprocess`. A neck's ``semantic`` feature, if any, is not read."""

    def __init__(self, in_channels: int, num_classes: int, cfg: SOLOv2Config) -> None:
        super().__init__()
        if len(cfg.num_grids) != len(cfg.scale_ranges) or len(cfg.num_grids) != len(cfg.grid_strides):
            raise ConfigError("head.num_grids, head.scale_ranges and head.grid_strides must have the same length")
        self.cfg = cfg
        self.num_classes = num_classes
        ch = cfg.feat_channels
        self.kernel_convs = conv_stack(in_channels + 2, ch, cfg.stacked_convs, cfg.num_groups)
        self.kernel_out = nn.Conv2d(ch, cfg.kernel_dim, 3, padding=1)
        self.cls_convs = conv_stack(in_channels, ch, cfg.stacked_convs, cfg.num_groups)
        self.cls_out = nn.Conv2d(ch, num_classes, 3, padding=1)
        self.mask_convs = conv_stack(in_channels + 2, ch, cfg.stacked_convs, cfg.num_groups)
        if cfg.mask_targets not in ("binary", "soft"):
            raise ConfigError(f"model.head.mask_targets={cfg.mask_targets!r}: choose binary or soft")
        if cfg.mask_out_norm:  # SOLOv2's conv_pred: the 1x1 to E is a conv-GN-ReLU like the convs before it
            self.mask_out = nn.Sequential(
                nn.Conv2d(ch, cfg.kernel_dim, 1, bias=False),
                nn.GroupNorm(group_count(cfg.kernel_dim, cfg.num_groups), cfg.kernel_dim),
                nn.ReLU(inplace=True),
            )
        else:
            self.mask_out = nn.Sequential(nn.Conv2d(ch, cfg.kernel_dim, 1))
        self._init_weights()
        self.criterion = SOLOLoss(num_classes, cfg)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Focal-loss prior: every cell starts at probability prior_prob for every class.
        nn.init.constant_(self.cls_out.bias, -math.log((1 - self.cfg.prior_prob) / self.cfg.prior_prob))

    def forward(self, neck: NeckOutput) -> SOLOv2Output:
        fused = neck.features
        cls_logits, kernels = [], []
        for size in self.cfg.num_grids:
            grid_feat = F.interpolate(fused, size=(size, size), mode="bilinear", align_corners=False)
            kernel_in = torch.cat([grid_feat, coord_channels(grid_feat)], dim=1)
            kernels.append(self.kernel_out(self.kernel_convs(kernel_in)))  # (B, E, S, S)
            cls_logits.append(self.cls_out(self.cls_convs(grid_feat)))  # (B, K, S, S)
        mask_in = torch.cat([fused, coord_channels(fused)], dim=1)
        mask_feats = self.mask_out(self.mask_convs(mask_in))  # (B, E, H/8, W/8)
        return SOLOv2Output(cls_logits, kernels, mask_feats)

    def loss(self, outputs: SOLOv2Output, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        """Eq. 6 losses (:class:`SOLOLoss`); ``gt_masks[b]`` is ``(N_b, H, W)`` at the padded input size."""
        return self.criterion(outputs, gt_labels, gt_masks)

    def postprocess(self, outputs: SOLOv2Output, input_sizes: list[tuple[int, int]],
                    orig_sizes: list[tuple[int, int]], static: bool = False) -> list[dict[str, Tensor]]:
        """Instances per image (Matrix NMS); ``static`` keeps shapes fixed for ONNX export."""
        return postprocess(outputs, input_sizes, orig_sizes, self.cfg.grid_strides, self.cfg.postprocess, static)
