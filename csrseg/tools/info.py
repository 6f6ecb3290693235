"""Model size and cost: parameter counts per part and FLOPs at a given input size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module, trainable: bool = False) -> float:
    """Parameters in millions; ``trainable``: only those that train (the paper's count, as mmcv's:
    frozen stages and frozen BatchNorm excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable) / 1e6


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: torch.Tensor) -> float:
    """GFLOPs of one forward pass (multiply and add counted separately: 2 per MAC)."""
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        module(*inputs)
    module.train(was_training)
    return counter.get_total_flops() / 1e9


@dataclass
class ModelInfo:
    params: dict[str, float]  # total / backbone / neck / head, millions
    gflops: float
    input_size: tuple[int, int]  # (H, W) before padding
    trainable: dict[str, float] = dataclasses.field(default_factory=dict)  # the same parts, trainable only

    def table(self) -> str:
        lines = ["| part | params (M) | trainable (M) |", "|---|---|---|"]
        lines += [f"| {k} | {v:.2f} | {self.trainable.get(k, v):.2f} |" for k, v in self.params.items()]
        h, w = self.input_size
        lines.append(f"\nGFLOPs at {w}x{h} (padded to 32): {self.gflops:.1f} ({self.gflops / 2:.1f} GMACs)")
        return "\n".join(lines)


def model_info(model: nn.Module, height: int = 800, width: int = 1333) -> ModelInfo:
    """Parameters of ``model`` (a :class:`csrseg.CSRSeg`) and its FLOPs at ``width x height``."""
    parts = {"total": model, **{part: getattr(model, part) for part in ("backbone", "neck", "head")}}
    params = {name: count_params(module) for name, module in parts.items()}
    trainable = {name: count_params(module, trainable=True) for name, module in parts.items()}
    pad_h, pad_w = -(-height // 32) * 32, -(-width // 32) * 32
    images = torch.zeros(1, 3, pad_h, pad_w, device=next(model.parameters()).device)
    return ModelInfo(params, count_flops(model, images), (height, width), trainable)


def module_tree(model: nn.Module, depth: int = 2) -> str:
    """Indented tree of submodules down to ``depth`` with their parameter counts."""
    lines = []

    def walk(module: nn.Module, name: str, level: int) -> None:
        lines.append(f"{'  ' * level}{name} ({type(module).__name__}, {count_params(module):.3f} M)")
        if level < depth:
            for child_name, child in module.named_children():
                walk(child, child_name, level + 1)

    walk(model, type(model).__name__, 0)
    return "\n".join(lines)


def describe(config: str = "paper", overrides: list[str] | tuple[str, ...] = (), height: int = 800, width: int = 1333,
             depth: int = 2) -> str:
    """What ``csrseg info`` prints: the config in one line, the module tree to ``depth``, parameter
    counts and GFLOPs at ``height`` x ``width``. Built with random weights (nothing to fetch)."""
    from csrseg.config import load_config, without_pretrained
    from csrseg.models import build_model

    cfg = load_config(config, overrides)
    model = build_model(without_pretrained(cfg))
    neck = cfg.model.neck
    neck_text = ("K-Net's FPN + SemanticFPN" if neck.type == "fpn_semantic" else
                 "K-Net's FPN + SemanticFPN on C3-C5" if neck.type == "fpn_semantic_c3" else
                 f"CSR {'on' if neck.reweight else 'off'} width {neck.csr_channels}, upsample {neck.upsample}")
    head = f"config: {cfg.name}  (backbone R{cfg.model.backbone.depth}, {neck_text}, {cfg.model.head.type} head, " \
           f"{cfg.model.num_classes} classes; built with random weights)"
    return "\n".join([head, module_tree(model, depth=depth), model_info(model, height, width).table()])
