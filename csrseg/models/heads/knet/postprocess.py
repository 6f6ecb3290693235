"""K-Net inference: no NMS. The last stage's class scores, top ``max_per_img`` over the N x K
(proposal, class) pairs, each pair's mask > ``mask_thr`` at the original image size.

The masks follow K-Net's path: logits upsampled x2 to stride 4, sigmoid, upsampled to the
padded input, cropped to the resized image, resized to the original.
Every step is a fixed-size tensor operation (topk over the flattened scores, gather,
interpolate, threshold) until empty masks are dropped, so the same code is what ONNX traces
(``static``); eager inference resizes each mask to the original size only within its box
(:func:`~csrseg.models.heads.paste.paste_instances`), the same pixels at the cost of the boxes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from csrseg.models.heads.common import drop_empty, upsample_masks
from csrseg.models.heads.knet.config import KNetPostprocessConfig
from csrseg.models.heads.knet.outputs import KNetOutput
from csrseg.models.heads.paste import paste_instances


def postprocess(
    outputs: KNetOutput,
    input_sizes: list[tuple[int, int]],
    orig_sizes: list[tuple[int, int]],
    cfg: KNetPostprocessConfig,
    static: bool = False,
) -> list[dict[str, Tensor]]:
    """One dict per image: ``labels (n,)``, ``scores (n,)``, ``masks``, ``boxes (n, 4)``.

    ``masks``: a :class:`~csrseg.masks.crops.MaskCrops` (each mask within its box); ``static``
    (the traced form): ``(n, H0, W0)`` bool, all masks upsampled at once.
    """
    scores_all = outputs.stage_cls[-1].float().sigmoid()  # (B, N, K)
    masks_all = outputs.stage_masks[-1].float()  # (B, N, h, w) at stride 8
    num_classes = scores_all.shape[-1]
    results = []
    for i in range(scores_all.shape[0]):
        flat = scores_all[i].flatten()
        top = flat.topk(min(cfg.max_per_img, flat.numel()))  # sorted
        proposals, labels = top.indices // num_classes, top.indices % num_classes
        logits = F.interpolate(masks_all[i][proposals][None], scale_factor=2.0, mode="bilinear", align_corners=False)[0]
        soft = logits.sigmoid()
        if static:
            masks = upsample_masks(soft, 4, input_sizes[i], orig_sizes[i], cfg.mask_thr, chunk=0)
            results.append(drop_empty(dict(labels=labels, scores=top.values, masks=masks)))
        else:
            results.append(paste_instances(labels, top.values, soft, 4, input_sizes[i], orig_sizes[i], cfg.mask_thr))
    return results
