"""The backbone's settings (``model.backbone``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from csrseg.limits import Limit, between, one_of

RESNET_DEPTHS = (18, 34, 50, 101)
#: light torchvision families for CPUs (:mod:`csrseg.models.backbones.light`)
LIGHT_ARCHS = ("regnet_x_400mf", "regnet_y_400mf", "regnet_x_800mf", "regnet_y_800mf", "mobilenet_v3_large",
               "mobilenet_v3_small")
NORMS = ("frozen_bn", "eval_bn", "bn")


@dataclass(frozen=True)
class BackboneConfig:
    """torchvision backbone returning C3, C4, C5.

    ``arch``: ``resnet`` (of ``depth``; the paper's) or a light torchvision family for
    CPUs (``regnet_x_400mf``, ``regnet_y_400mf``, ``regnet_x_800mf``, ``regnet_y_800mf``,
    ``mobilenet_v3_large``, ``mobilenet_v3_small``; see :mod:`csrseg.models.backbones.light`).

    ``weights``: ``"imagenet"`` (the paper's setting: torchvision's weight API, cached
    under ``$TORCH_HOME``), a path to a ``.pth`` / ``.safetensors`` state dict, or
    ``None`` / ``"none"`` (random init, training from scratch: the config loader
    then unfreezes every stage and makes BatchNorm trainable, since a frozen random
    stem is never right).
    ``frozen_stages``: 0 freezes nothing, 1 the stem and stage 1 (detection
    practice), up to 4. ``norm``: ``frozen_bn`` (BatchNorm in eval mode, no grad),
    ``eval_bn`` (statistics frozen, scale and shift trained outside the frozen stages:
    mmcv's ``norm_eval=True, requires_grad=True``, K-Net's setting, whose parameter
    count the paper reports) or ``bn`` (trainable, for training from scratch).
    """

    arch: str = "resnet"
    depth: int = 50
    weights: str | None = "imagenet"
    frozen_stages: int = 1
    norm: str = "frozen_bn"

    LIMITS: ClassVar[dict[str, Limit]] = dict(arch=one_of("resnet", *LIGHT_ARCHS), depth=one_of(*RESNET_DEPTHS),
                                             frozen_stages=between(0, 4), norm=one_of(*NORMS))
    FREE: ClassVar[tuple[str, ...]] = ("weights",)  # a name or a path: read, with its own one-line errors, when built
