"""An exponential moving average of the weights (``train.ema``), as YOLO and timm keep one.

The average is what a run evaluates and saves as its model (``best.pt``'s ``model``, ``last.pt``'s
``ema``: what predict, eval and export load from a run's checkpoint); the raw weights keep training
and stay in ``last.pt``'s ``model`` for a resume. Every floating-point entry of the state dict is
averaged, BatchNorm's running statistics included; integer buffers are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """``module``: a copy of ``model`` holding the average. After ``updates`` steps the decay is
    ``decay * (1 - exp(-updates / warmup))``: early on the average follows the weights closely (the
    first weights are far from any good ones), later it keeps about ``1 / (1 - decay)`` steps."""

    def __init__(self, model: nn.Module, decay: float, warmup: int) -> None:
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s weights (the same architecture)."""
        self.updates += 1
        decay = self.current_decay()
        ours = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                ours[name].lerp_(value.detach().to(ours[name].dtype), 1 - decay)
            else:
                ours[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates

