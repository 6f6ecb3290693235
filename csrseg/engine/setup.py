"""What a training run starts from: the model (fresh, fine-tuned or resumed), its optimiser, its
precision and its :class:`~csrseg.engine.trainer.RunState`."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn

from csrseg.config import Config, to_dict, without_pretrained
from csrseg.engine import distributed as du
from csrseg.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state, trained_weights
from csrseg.engine.ema import ModelEMA
from csrseg.engine.trainer import RunState, Start, build_optimizer
from csrseg.models import build_model
from csrseg.models.backbones import describe_weights
from csrseg.runtime.cpu import keep_freed_memory
from csrseg.runtime.precision import Precision, ProbeCache, probe_times, resolve

logger = logging.getLogger("csrseg")


def prepare(cfg: Config, env: du.DistEnv, last_path: Path, resume: bool, init_weights: str | Path | None = None,
            strict: bool = True) -> Start:
    """Build the model and optimiser of ``cfg`` on ``env.device`` (and the weights' moving average with
    ``train.ema``); with ``resume`` load ``last_path`` whole (weights, average, optimiser, scaler, state,
    RNG); else with ``init_weights`` start from that
    checkpoint's weights (``strict=False``: those that fit)."""
    resuming = resume and last_path.is_file()
    if resume and not resuming:
        raise CheckpointError(f"{last_path}: nothing to resume (no last checkpoint in {last_path.parent})")
    # a resumed or fine-tuned run's weights come from a checkpoint: no pretrained weights to fetch
    from_checkpoint = last_path if resuming else init_weights
    logger.info(f"backbone: weights from {from_checkpoint}" if from_checkpoint else describe_weights(cfg.model.backbone))
    model = build_model(without_pretrained(cfg) if from_checkpoint else cfg).to(env.device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if env.device.type == "cpu":
        keep_freed_memory()  # fewer page faults per step (benchmarks/RESULTS.md, "Demo on an ordinary CPU")
    if init_weights and not resuming:
        ckpt = load_checkpoint(init_weights)
        skipped = load_model_state(model, trained_weights(ckpt), strict=strict, source=str(init_weights))
        if skipped:
            logger.warning("%s: %d tensors did not fit and were re-initialised (e.g. %s)", init_weights, len(skipped), skipped[0])
    if cfg.model.backbone.norm == "bn" and env.enabled and env.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg)
    ckpt = load_checkpoint(last_path) if resuming else None
    precision = training_precision(cfg, model, env, recorded=ckpt.get("precision") if ckpt else None)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.loss_scaling(env.device))
    state, resumed_total = RunState(), 0
    ema = ModelEMA(model, cfg.train.ema, cfg.train.ema_warmup) if cfg.train.ema > 0 else None
    if ckpt is not None:
        load_model_state(model, ckpt["model"], strict=True, source=str(last_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:  # empty when the run started where loss scaling was off (CPU, bf16)
            scaler.load_state_dict(ckpt["scaler"])
        state = RunState.from_checkpoint(ckpt)
        resumed_total = state.total_iters
        if ema is not None:  # a run that turns the average on when resumed starts it from the weights it has
            ema = ModelEMA(model, cfg.train.ema, cfg.train.ema_warmup)
            if "ema" in ckpt:
                ema.load(ckpt["ema"], int(ckpt.get("ema_updates", 0)))
        torch.set_rng_state(ckpt["rng"]["torch"])
        logger.info("resumed %s at epoch %d, iteration %d", last_path, state.epoch + 1, state.iteration)
    return Start(model, optimizer, scaler, precision, state, resumed_total, ema)


def training_precision(cfg: Config, model: nn.Module, env: du.DistEnv, recorded: str | None = None) -> Precision:
    """``train.precision`` resolved on ``env.device`` (:func:`decide_precision`); a resumed run keeps the
    precision it ``recorded``, so its steps stay the steps it started with. Under DDP rank 0 decides
    for all."""
    if cfg.train.precision == "auto" and recorded:
        return Precision(recorded, f"auto: as the run started ({recorded})")
    return du.broadcast_object(decide_precision(cfg, model, env.device) if env.is_main else None)


def decide_precision(cfg: Config, model: nn.Module | None, device: torch.device | str) -> Precision:
    """What ``train.precision`` means for ``cfg`` on ``device``: ``auto`` on a CPU measures fp32 against
    bf16 on a copy of ``model`` (built from ``cfg`` when ``None``), once per machine (cached)."""
    device = torch.device(device)
    probe = None
    if cfg.train.precision == "auto" and device.type == "cpu":
        what = f"train|{to_dict(cfg.model)}|{cfg.input.short_side}x{cfg.input.max_size}|{cfg.train.channels_last}"

        def probe() -> dict[str, float]:
            def measure() -> dict[str, float]:
                net = model if model is not None else build_model(without_pretrained(cfg)).to(device)
                return probe_times(step_timer(cfg, net, device))

            return ProbeCache().times(what, measure)

    return resolve(cfg.train.precision, device, probe)


def step_timer(cfg: Config, model: nn.Module, device: torch.device):
    """``step(name)``: one forward + backward of a copy of ``model`` in precision ``name`` on one random
    square image of ``cfg``'s short side (or crop) with one object; the run's own model, RNG and
    BatchNorm statistics are left as they were. One image: the relative cost of the precisions is a
    property of the kernels at that size, and the probe stays a few seconds."""
    probe_model = copy.deepcopy(model).train()
    divisor = cfg.input.size_divisor
    side = cfg.input.crop or cfg.input.short_side
    height = width = -(-side // divisor) * divisor
    batch = 1
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator).to(device)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.zeros(batch, 1, height, width, dtype=torch.uint8)
    masks[:, :, height // 4 : height // 2, width // 4 : width // 2] = 1
    labels = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(batch)]
    gt_masks = [m.to(device) for m in masks]

    def step(name: str) -> None:
        with Precision(name, "probe").autocast(device):
            outputs = probe_model(images)
        probe_model.loss(outputs, labels, gt_masks)["loss"].backward()
        probe_model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def with_num_classes(cfg: Config, count: int) -> Config:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=count))
