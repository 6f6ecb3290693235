"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * w + b``:
the convolution before it can compute it by itself with scaled weights and a bias
(:func:`torch.nn.utils.fusion.fuse_conv_bn_weights`). Eager PyTorch runs every BatchNorm as a pass of
its own over the feature map: on a 2-core Xeon at 1333x800 the ResNet-50 backbone's 53 of them took
14% of an fp32 image (``benchmarks/bf16_ops.py``, RESULTS.md). ONNX Runtime and OpenVINO fold them
when they load a graph; this does it for the eager path.

Only the pairs whose order is certain are folded: a ``Conv2d`` directly followed by its BatchNorm in
an ``nn.Sequential`` (ResNet's stem and shortcut, torchvision's ``Conv2dNormActivation``), and the
``convK`` / ``bnK`` pairs of torchvision's ResNet blocks, which apply ``bnK`` to ``convK``'s output.
The folded model gives the unfolded one's values to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import FrozenBatchNorm2d

NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every BatchNorm (trainable or frozen) that directly follows a convolution in
    ``model`` (module docstring) into that convolution, the BatchNorm replaced by ``nn.Identity``.
    For inference only: the model must be in eval mode. Returns how many were folded."""
    if model.training:
        raise ValueError("fold_batch_norms is for inference: call model.eval() first (training BatchNorm uses batch statistics)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, (BasicBlock, Bottleneck)):
            for k in (1, 2, 3):
                conv, norm = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
                if _foldable(conv, norm):
                    _fold(conv, norm)
                    setattr(module, f"bn{k}", nn.Identity())
                    folded += 1
        elif isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = module._modules[first], module._modules[second]
                if _foldable(conv, norm):
                    _fold(conv, norm)
                    module._modules[second] = nn.Identity()
                    folded += 1
    return folded


def _foldable(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(norm, NORMS)
            and norm.running_mean is not None and norm.running_mean.numel() == conv.out_channels)


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                        norm.weight, norm.bias)
    # the conv keeps its memory format (channels-last weights stay so)
    conv.weight = nn.Parameter(weight.detach().contiguous(memory_format=_format(conv.weight)), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach(), requires_grad=False)


def _format(tensor: torch.Tensor) -> torch.memory_format:
    four_d = tensor.dim() == 4
    return torch.channels_last if four_d and tensor.is_contiguous(memory_format=torch.channels_last) \
        and not tensor.is_contiguous() else torch.contiguous_format
