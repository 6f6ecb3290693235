"""K-Net's head (``model.head.type=knet``, the paper's; DESIGN.md, K-Net's det config).

::

    F (C, H/8) -> loc branch -> init_kernels (1x1, C -> N) = initial mask logits
               -> seg branch -> 1x1 C -> K = auxiliary semantic logits
    (a branch: ``branch_convs`` x 3x3 conv-GN-ReLU, then 1x1 conv-GN-ReLU; K-Net's is the 1x1 alone)
    kernels_0 = init_kernels' weights + loc+seg features pooled under each binary initial mask
    stage s = 1..S:  F_s = 1x1(F);  pooled = Σ_hw [sigmoid(mask) > 0.5] · F_s
                     kernels = KernelUpdator(pooled, kernels) -> self-attention + LN -> FFN + LN
                     class logits = Linear(ReLU(LN(Linear(kernels))))          (B, N, K)
                     masks = (Linear(ReLU(LN(Linear(kernels))))) · F_s        (B, N, H/8, W/8)

``forward`` returns every stage's masks and classes (all are supervised); the last
stage's are the prediction. With K-Net's own neck the two branches read its localisation and
semantic features; with the fusion neck both read the one fused feature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from csrseg.errors import ConfigError
from csrseg.models.heads.knet.config import POSITIONS, KNetConfig
from csrseg.models.layers.d2s import group_count
from csrseg.models.layers.position import coord_channels, sine_position_encoding
from csrseg.models.necks.output import NeckOutput
from csrseg.models.heads.knet.loss import KNetLoss
from csrseg.models.heads.knet.outputs import KNetOutput
from csrseg.models.heads.knet.postprocess import postprocess


def pool_under_masks(mask_logits: Tensor, feats: Tensor, threshold: float) -> Tensor:
    """Sum of ``(B, C, h, w)`` features under each binary ``sigmoid(mask) > threshold`` -> ``(B, N, C)``,
    in fp32 whatever autocast says: a sum over a whole mask passes 1e3-1e6, and the gated update
    multiplies two projections of it (:class:`KernelUpdator`), far past fp16's 65504."""
    with torch.autocast(feats.device.type, enabled=False):
        binary = (mask_logits.float().sigmoid() > threshold).float()
        return torch.einsum("bnhw,bchw->bnc", binary, feats.float())


def linear_ln_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(channels, channels, bias=False), nn.LayerNorm(channels), nn.ReLU(inplace=True))


class KernelUpdator(nn.Module):
    """K-Net's gated kernel update: ``forward(pooled (B, N, C), kernels (B, N, C)) -> (B, N, C)``.

    Both inputs are projected to (in, out) halves; their product gates how much of the
    pooled feature (``update_gate``) and of the old kernel (``input_gate``) the new one takes,
    each gate a sigmoid of a LayerNorm'd projection; then Linear-LN-ReLU.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.dynamic_layer = nn.Linear(channels, 2 * channels)  # from the pooled feature
        self.input_layer = nn.Linear(channels, 2 * channels)  # from the current kernel
        self.input_gate = nn.Linear(channels, channels)
        self.update_gate = nn.Linear(channels, channels)
        self.input_gate_norm = nn.LayerNorm(channels)
        self.update_gate_norm = nn.LayerNorm(channels)
        self.pooled_norm = nn.LayerNorm(channels)
        self.kernel_norm = nn.LayerNorm(channels)
        self.out = nn.Sequential(nn.Linear(channels, channels), nn.LayerNorm(channels), nn.ReLU(inplace=True))

    def forward(self, pooled: Tensor, kernels: Tensor) -> Tensor:
        with torch.autocast(pooled.device.type, enabled=False):  # see pool_under_masks: fp32 until the norms
            return self._update(pooled.float(), kernels.float())

    def _update(self, pooled: Tensor, kernels: Tensor) -> Tensor:
        c = self.channels
        dyn = self.dynamic_layer(pooled)
        param_in, param_out = dyn[..., :c], dyn[..., c:]
        inp = self.input_layer(kernels)
        input_in, input_out = inp[..., :c], inp[..., c:]
        gate_feats = input_in * param_in
        input_gate = self.input_gate_norm(self.input_gate(gate_feats)).sigmoid()
        update_gate = self.update_gate_norm(self.update_gate(gate_feats)).sigmoid()
        updated = update_gate * self.pooled_norm(param_out) + input_gate * self.kernel_norm(input_out)
        return self.out(updated)


class KernelUpdateStage(nn.Module):
    """One K-Net stage: ``forward(feats, kernels, masks) -> (cls (B, N, K), masks (B, N, h, w), kernels)``.

    ``feats``: ``(B, C, h, w)``; ``kernels``: ``(B, N, C)``; ``masks``: ``(B, N, h, w)`` logits of
    the previous stage.
    """

    def __init__(self, channels: int, num_classes: int, cfg: KNetConfig) -> None:
        super().__init__()
        if cfg.num_heads < 1 or channels % cfg.num_heads:
            raise ConfigError(f"model.head.num_heads={cfg.num_heads} must divide the kernel width "
                              f"(model.neck.channels={channels}), e.g. {group_count(channels, cfg.num_heads or 1)}")
        self.cfg = cfg
        self.feat_transform = nn.Conv2d(channels, channels, 1)
        self.updator = KernelUpdator(channels)
        self.attention = nn.MultiheadAttention(channels, cfg.num_heads, batch_first=True)
        self.attention_norm = nn.LayerNorm(channels)
        self.ffn = nn.Sequential(
            nn.Linear(channels, cfg.ffn_channels), nn.ReLU(inplace=True), nn.Linear(cfg.ffn_channels, channels)
        )
        self.ffn_norm = nn.LayerNorm(channels)
        self.cls_branch = linear_ln_relu(channels)
        self.cls_out = nn.Linear(channels, num_classes)
        self.mask_branch = linear_ln_relu(channels)
        self.mask_out = nn.Linear(channels, channels)
        for param in self.parameters():  # K-Net: xavier for every matrix, defaults for norms and biases
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))

    def forward(self, feats: Tensor, kernels: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.feat_transform(feats)
        pooled = pool_under_masks(masks, feats, self.cfg.hard_mask_thr)  # (B, N, C)
        kernels = self.updator(pooled, kernels)
        kernels = self.attention_norm(kernels + self.attention(kernels, kernels, kernels, need_weights=False)[0])
        kernels = self.ffn_norm(kernels + self.ffn(kernels))
        cls_logits = self.cls_out(self.cls_branch(kernels))
        mask_kernels = self.mask_out(self.mask_branch(kernels))
        masks = torch.einsum("bnc,bchw->bnhw", mask_kernels, feats)  # dynamic 1x1 conv
        return cls_logits, masks, kernels




def branch(in_channels: int, channels: int, convs: int, num_groups: int) -> nn.Sequential:
    """One of the kernel head's two branches: ``convs`` x (3x3 conv, GN, ReLU), then K-Net's 1x1 conv-GN-ReLU."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
                   nn.GroupNorm(num_groups, channels), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(channels if convs else in_channels, channels, 1, bias=False), nn.GroupNorm(num_groups, channels),
               nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class KNetHead(nn.Module):
    """``forward(neck)`` -> :class:`KNetOutput`; :meth:`loss` (eq. 6 per stage), :meth:`postprocess` (no NMS).

    ``neck.features``: ``(B, C, H/8, W/8)`` feeds the localisation branch, and the segmentation branch
    too unless the neck gives a ``semantic`` feature of its own (K-Net's neck).
    """

    def __init__(self, in_channels: int, num_classes: int, cfg: KNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        ch, g = in_channels, group_count(in_channels, cfg.num_groups)  # a count that divides the width
        if cfg.position not in POSITIONS:
            raise ConfigError(f"model.head.position={cfg.position!r}: choose {', '.join(POSITIONS)}")
        if cfg.branch_convs < 0:
            raise ConfigError(f"model.head.branch_convs={cfg.branch_convs}: must be at least 0")
        in_ch = ch + 2 if cfg.position == "coords" else ch
        self.loc_conv = branch(in_ch, ch, cfg.branch_convs, g)
        self.seg_conv = branch(in_ch, ch, cfg.branch_convs, g)
        self.init_kernels = nn.Conv2d(ch, cfg.num_proposals, 1, bias=False)
        self.sem_out = nn.Conv2d(ch, num_classes, 1)
        self.stages = nn.ModuleList(KernelUpdateStage(ch, num_classes, cfg) for _ in range(cfg.num_stages))
        for conv in (*(m for m in (*self.loc_conv, *self.seg_conv) if isinstance(m, nn.Conv2d)), self.sem_out):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(self.sem_out.bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))
        nn.init.normal_(self.init_kernels.weight, std=cfg.kernel_init_std)
        self.criterion = KNetLoss(num_classes, cfg)

    def kernel_head(self, neck: NeckOutput) -> tuple[Tensor, Tensor, Tensor]:
        """The kernel head ("rpn"): ``(feats (B, C, h, w), initial mask logits (B, N, h, w), semantic
        logits (B, K, h, w))``; ``feats`` (localisation + segmentation branch) is what every stage pools."""
        loc_in = self._with_position(neck.features)
        sem_in = loc_in if neck.semantic is None else self._with_position(neck.semantic)
        loc = self.loc_conv(loc_in)  # (B, C, h, w)
        sem = self.seg_conv(sem_in)
        return loc + sem, self.init_kernels(loc), self.sem_out(sem)

    def forward(self, neck: NeckOutput) -> KNetOutput:
        feats, masks, sem_logits = self.kernel_head(neck)
        b = feats.shape[0]
        kernels = self.init_kernels.weight[:, :, 0, 0][None].expand(b, -1, -1)  # (B, N, C)
        kernels = kernels + pool_under_masks(masks, feats, self.cfg.hard_mask_thr)
        stage_masks, stage_cls = [masks], []
        for stage in self.stages:
            cls_logits, masks, kernels = stage(feats, kernels, masks)
            stage_masks.append(masks)
            stage_cls.append(cls_logits)
        return KNetOutput(stage_masks, stage_cls, sem_logits)

    def _with_position(self, feat: Tensor) -> Tensor:
        if self.cfg.position == "sine":
            return feat + sine_position_encoding(feat)
        if self.cfg.position == "coords":
            return torch.cat([feat, coord_channels(feat)], dim=1)
        return feat

    def loss(self, outputs: KNetOutput, gt_labels: list[Tensor], gt_masks: list[Tensor]) -> dict[str, Tensor]:
        """Eq. 6 losses of the kernel head and every stage, plus the semantic loss (:class:`KNetLoss`)."""
        return self.criterion(outputs, gt_labels, gt_masks)

    def postprocess(self, outputs: KNetOutput, input_sizes: list[tuple[int, int]],
                    orig_sizes: list[tuple[int, int]], static: bool = False) -> list[dict[str, Tensor]]:
        """The last stage's top ``max_per_img`` (proposal, class) pairs with their masks; no NMS."""
        return postprocess(outputs, input_sizes, orig_sizes, self.cfg.postprocess, static)
