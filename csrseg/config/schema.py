"""The run's configuration: the model's, the input pipeline's and the training recipe's settings.

The model's parts own their settings (:mod:`csrseg.models.config`, each head's folder), the input
pipeline its own (:class:`csrseg.data.transforms.InputConfig`); :class:`Config` puts them together
with the training recipe, which lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from csrseg.data.transforms import InputConfig
from csrseg.limits import Limit, above, at_least, between, fraction, one_of
from csrseg.models.config import ModelConfig
from csrseg.runtime.precision import CHOICES as PRECISIONS  # the precision names: defined once, there

SCHEDULES = ("step", "cosine", "linear")  # the lr decays of csrseg.engine.schedule


@dataclass(frozen=True)
class TrainConfig:
    """K-Net's 1x recipe used by the paper (§IV-A). ``batch_size`` is the total over all processes.

    ``precision``: ``auto`` (on CUDA bf16 where the GPU computes it, else fp16 with loss scaling;
    on a CPU whichever of fp32 and bf16 a short probe of the run's own step finds faster), or
    ``fp32``, ``bf16``, ``fp16`` as asked (:mod:`csrseg.runtime.precision`).
    """

    epochs: int = 12
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.25
    schedule: str = "step"  # step (at milestones) | cosine | linear (to lr_gamma over the run): engine/schedule.py
    milestones: tuple[int, ...] = (8, 11)
    lr_gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_ratio: float = 0.001
    clip_grad: float = 1.0
    batch_size: int = 4
    workers: int = 2
    precision: str = "auto"
    channels_last: bool = False  # NHWC memory format (oneDNN's NHWC kernels); see benchmarks/train_speed.py
    seed: int = 0
    eval_interval: int = 1
    max_iters: int = 0  # >0 stops after this many iterations in total (quick runs, tests)
    max_bad_steps: int = 10  # consecutive non-finite losses before training stops
    # exponential moving average of the weights (0: off; YOLO's 0.9998): evaluated and saved as the
    # model; its decay ramps up over about ema_warmup steps (csrseg.engine.ema)
    ema: float = 0.0
    ema_warmup: int = 2000
    patience: int = 0  # stop after this many evaluations in a row without a new best AP (0: never)
    # a time budget (0: none; csrseg train --time): the lr follows half a cosine over the time and the
    # run ends when it is spent, or at its own end, whichever comes first (csrseg.engine.budget)
    time_hours: float = 0.0

    LIMITS: ClassVar[dict[str, Limit]] = dict(
        epochs=at_least(1), lr=above(0), weight_decay=at_least(0), backbone_lr_mult=at_least(0),
        schedule=one_of(*SCHEDULES), milestones=at_least(0), lr_gamma=at_least(0), warmup_iters=at_least(0),
        warmup_ratio=fraction(), clip_grad=at_least(0), batch_size=at_least(1), workers=at_least(0),
        precision=one_of(*PRECISIONS), seed=between(0, 2**32 - 1), eval_interval=at_least(1), max_iters=at_least(0),
        max_bad_steps=at_least(1), ema=Limit(low=0, high=1, high_open=True), ema_warmup=at_least(0),
        patience=at_least(0), time_hours=at_least(0))  # seed: numpy's generators take 0 to 2**32 - 1


@dataclass(frozen=True)
class Config:
    name: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    FREE: ClassVar[tuple[str, ...]] = ("name",)  # the run's label
