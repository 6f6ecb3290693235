"""Named configurations: the paper's model, its ablation rows and the CPU demo.

| name           | what                                             | paper |
|----------------|--------------------------------------------------|-------|
| paper          | R50, CSR 256 + D2S, 1333x800                     | Table I, II row 4 |
| baseline       | R50, FPN neck (no CSR, nearest upsampling)       | Table II row 1 |
| csr            | R50, CSR + nearest upsampling                    | Table II row 2 |
| d2s            | R50, no CSR, D2S upsampling                      | Table II row 3 |
| csr128 .. 1024 | paper config with CSR width 128/256/512/1024     | Table III |
| demo           | R18 trained from scratch on the synthetic set    | (CPU demo) |
"""

from __future__ import annotations

import dataclasses

from csrseg.config import (
    BackboneConfig,
    Config,
    ConfigError,
    HeadConfig,
    InputConfig,
    ModelConfig,
    NeckConfig,
    PostprocessConfig,
    TrainConfig,
)


def _with_neck(name: str, **neck: object) -> Config:
    return Config(name=name, model=ModelConfig(neck=NeckConfig(**neck)))


def _demo() -> Config:
    """Small CPU configuration for the synthetic shapes dataset (256 px images).

    The backbone is trained from scratch (no weights can be downloaded here), so its
    BatchNorm is trainable and nothing is frozen. Head width 128 and three grids
    sized for objects of 10-160 px keep one iteration under 0.4 s on 2 cores (bf16).
    Objects down to 10 px are 1-2 stride-8 pixels wide, so two post-processing
    values differ from the paper's: no minimum mask area on the finest grid (SOLOv2's
    "area > stride" rule dropped every object under ~16 px: +3 AP) and a mask
    threshold of 0.4 (small objects' stride-8 masks are under-confident: +3.5 AP).
    Both were chosen on the synthetic val split (benchmarks/RESULTS.md).
    """
    return Config(
        name="demo",
        model=ModelConfig(
            num_classes=4,
            backbone=BackboneConfig(depth=18, weights=None, frozen_stages=0, norm="bn"),
            neck=NeckConfig(channels=128, csr_channels=128, num_groups=16),
            head=HeadConfig(
                feat_channels=128,
                kernel_dim=128,
                stacked_convs=3,
                num_grids=(32, 16, 8),
                scale_ranges=((1, 48), (32, 112), (80, 4096)),
                grid_strides=(0, 4, 8),
                num_groups=16,
            ),
            postprocess=PostprocessConfig(mask_thr=0.4),
        ),
        input=InputConfig(short_side=256, max_size=256),
        train=TrainConfig(
            epochs=18,
            lr=1e-3,
            weight_decay=0.05,
            backbone_lr_mult=1.0,
            milestones=(12, 16),
            warmup_iters=100,
            batch_size=8,
            workers=0,
            eval_interval=3,
        ),
    )


PRESETS = {
    "paper": lambda: Config(name="paper"),
    "baseline": lambda: _with_neck("baseline", reweight=False, upsample="nearest"),
    "csr": lambda: _with_neck("csr", reweight=True, upsample="nearest"),
    "d2s": lambda: _with_neck("d2s", reweight=False, upsample="d2s"),
    "csr128": lambda: _with_neck("csr128", csr_channels=128),
    "csr256": lambda: _with_neck("csr256", csr_channels=256),
    "csr512": lambda: _with_neck("csr512", csr_channels=512),
    "csr1024": lambda: _with_neck("csr1024", csr_channels=1024),
    "demo": _demo,
}

TABLE2 = ("baseline", "csr", "d2s", "paper")
TABLE3 = ("csr128", "csr256", "csr512", "csr1024")


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]()


def with_name(cfg: Config, name: str) -> Config:
    return dataclasses.replace(cfg, name=name)
