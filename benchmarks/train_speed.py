"""Training speed on this machine: seconds per iteration, images/s and share of the conv throughput.

    python benchmarks/train_speed.py                     # demo + paper (320 px), fp32 NCHW / channels-last / bf16
    python benchmarks/train_speed.py --configs demo --set model.backbone.arch=resnet --set model.backbone.depth=18
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/train_speed.py
    python benchmarks/train_speed.py --device cuda --paper-size 800 --batch 8   # fp32 / bf16 (or fp16) autocast on a GPU

One process; every variant trains on the same generated batch (the demo's synthetic shapes),
variants interleaved round by round so that the machine's drift hits all alike; median of the
rounds after one warm-up step each. "GFLOP/s" counts the whole step (forward + backward,
``torch.utils.flop_counter``, 2 per multiply-add) over its time; "share" divides it by one 3x3
convolution's throughput measured in the same process (:func:`csrseg.runtime.cpu.conv_gflops`), so the
column says how much of what the machine does on convolutions a training step gets.
Every CPU gets an fp32 and a bf16 row (without native bf16 the bf16 one is emulated, and slow);
the "auto" column marks the one ``train.precision=auto`` picks here, by the trainer's own short probe
(:func:`csrseg.engine.setup.decide_precision`; its decision and times are printed under the table). On a GPU (``--device cuda``) the half precision
is the trainer's (bf16 where the GPU computes it, else fp16), cuDNN picks its fastest kernels, and
the reference convolution is a larger one (32x128x64x64) that keeps the GPU busy. Prints a markdown table; copy it into
benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from csrseg.config import Config, load_config, without_pretrained
from csrseg.engine.setup import decide_precision
from csrseg.runtime.cpu import conv_gflops, cpu_description, cuda_half_precision, keep_freed_memory
from csrseg.data import CocoInstances, Transform, collate, resolve_split
from csrseg.data.synth import SynthSpec, make_synthetic_dataset
from csrseg.engine.trainer import build_optimizer
from csrseg.models import build_model
from csrseg.runtime.precision import Precision


@dataclass
class Variant:
    config: str
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.config}, {self.precision} {'channels-last' if self.channels_last else 'NCHW'}"


def make_batch(cfg: Config, root, batch_size: int):
    dataset = CocoInstances(*resolve_split(root, "train"), Transform(cfg.input, train=True), seed=0)
    dataset.set_epoch(0)
    return collate([dataset[i] for i in range(batch_size)], cfg.input.size_divisor)


class Stepper:
    """One model + optimiser training on one fixed batch, as the trainer's step does."""

    def __init__(self, cfg: Config, variant: Variant, batch, device: torch.device) -> None:
        torch.manual_seed(0)
        self.cfg, self.variant, self.device = cfg, variant, device
        self.model = build_model(cfg).train().to(device)
        images, targets = batch
        images = images.to(device)
        if variant.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        self.images = images
        self.labels = [t["labels"].to(device) for t in targets]
        self.masks = [t["masks"].to(device) for t in targets]
        self.optimizer = build_optimizer(self.model, cfg)
        self.precision = Precision(variant.precision, "as asked")

    def step(self) -> None:
        # fp16 without loss scaling: the same kernels as the trainer's scaled fp16 steps, for timing only
        with self.precision.autocast(self.device):
            outputs = self.model(self.images)
        loss = self.model.loss(outputs, self.labels, self.masks)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad)
        self.optimizer.step()

    def timed_steps(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps (the GPU's queue drained before and after)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        tic = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync()
        return (time.perf_counter() - tic) / steps

    def flops(self) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            self.step()
        return counter.get_total_flops()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["demo", "paper"])
    parser.add_argument("--paper-size", type=int, default=320, help="input side for non-demo configs (default 320)")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: the config's, 2 for paper)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every config")
    parser.add_argument("--no-keep-memory", action="store_true", help="leave glibc's malloc thresholds alone")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    kept = False if args.no_keep_memory else keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        half = cuda_half_precision(device)
        precisions, notes = ["fp32", half], [f"fp32 rows: cuDNN's default (TF32 tensor cores for convolutions: "
                                             f"{torch.backends.cudnn.allow_tf32})"]
        where = torch.cuda.get_device_name(device)
    else:
        precisions, notes = ["fp32", "bf16"], []  # both, whatever the CPU: the auto column says which wins here
        where = cpu_description()
    steppers, configs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(tmp, 16, seed=0, val_fraction=0.25, spec=SynthSpec(image_size=256))
        for name in args.configs:
            overrides = ["train.precision=fp32", *args.set]
            if name != "demo":
                side = args.paper_size
                overrides += [f"input.short_side={side}", f"input.max_size={side}", "model.num_classes=4"]
            # the paper's freezing kept, random weights (speed does not depend on their values)
            cfg = without_pretrained(load_config(name, overrides))
            batch_size = args.batch or (cfg.train.batch_size if name == "demo" else 2)
            batch = make_batch(cfg, root, batch_size)
            # what train.precision=auto picks for this config here (the trainer's own probe, cached)
            auto_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="auto"))
            configs[name] = (cfg, batch_size, tuple(batch[0].shape[-2:]), decide_precision(auto_cfg, None, device))
            for precision in precisions:
                for channels_last in (False, True):
                    steppers.append(Stepper(cfg, Variant(name, precision, channels_last), batch, device))
    conv_shape = (32, 64) if device.type == "cuda" else (8, 32)
    conv = conv_gflops(device=device, batch=conv_shape[0], side=conv_shape[1])
    flops = {s.variant.name: s.flops() for s in steppers}  # also the warm-up step
    if device.type == "cuda":
        for stepper in steppers:  # cuDNN's autotuning happens in the first steps
            stepper.timed_steps(3)
    times: dict[str, list[float]] = {s.variant.name: [] for s in steppers}
    for _ in range(args.rounds):
        for stepper in steppers:
            times[stepper.variant.name].append(stepper.timed_steps(args.steps))

    b, side = conv_shape
    lines = [
        f"{'GPU' if device.type == 'cuda' else 'CPU'}: {where}; torch {torch.__version__}; glibc keeps freed memory: {kept}",
        f"3x3 conv throughput ({b}x128x{side}x{side}, fp32, same process): {conv:.0f} GFLOP/s",
        "",
        "| config | precision | layout | input | batch | s/iter (median) | images/s | GFLOP/step | GFLOP/s | share of conv | auto |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stepper in steppers:
        v = stepper.variant
        cfg, batch_size, (h, w), auto = configs[v.config]
        sec = statistics.median(times[v.name])
        gflop = flops[v.name] / 1e9
        chosen = "**chosen**" if auto.name == v.precision and v.channels_last == cfg.train.channels_last else ""
        lines.append(f"| {v.config} | {v.precision} | {'channels-last' if v.channels_last else 'NCHW'} | {w}×{h} | "
                     f"{batch_size} | {sec:.3f} | {batch_size / sec:.2f} | {gflop:.1f} | {gflop / sec:.0f} | "
                     f"{gflop / sec / conv:.0%} | {chosen} |")
    notes += [f"auto for {name}: {auto.describe()}" for name, (_, _, _, auto) in configs.items()]
    report = "\n".join(lines + [""] + notes)
    print(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
