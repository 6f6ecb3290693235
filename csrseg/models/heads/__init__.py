"""Instance heads on the neck's feature, one folder each (K-Net's, the paper's; SOLOv2's, a peer).

Every head is an ``nn.Module`` with the same small interface, so that training, evaluation,
the ONNX export and the benchmark never ask which head runs:

- ``Head(in_channels, num_classes, cfg)``, ``cfg`` the head's own config (``model.head``);
- ``forward(neck)``: the neck's :class:`~csrseg.models.necks.NeckOutput` -> the head's raw outputs;
- ``loss(outputs, gt_labels, gt_masks)`` -> dict of scalar losses, ``"loss"`` the total;
- ``postprocess(outputs, input_sizes, orig_sizes, static=False)`` -> one dict per image with
  ``labels (n,)``, ``scores (n,)``, ``masks`` at the original size, ``boxes (n, 4)``: ``masks`` a
  :class:`~csrseg.masks.crops.MaskCrops` (each mask within its box, ``dense()`` the
  ``(n, H0, W0)`` bool masks), or with ``static`` (the form the ONNX export traces) those
  ``(n, H0, W0)`` bool masks themselves.

A head is chosen by ``model.head.type``, one entry of :data:`HEADS`: its config class (what
``model.head`` holds, loss weights and thresholds included) and the module that builds it.
Adding a head is a folder beside these two and one line there.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from torch import nn

from csrseg.models.heads.knet import KNetConfig, KNetHead
from csrseg.models.heads.solov2 import SOLOv2Config, SOLOv2Head


class HeadSpec(NamedTuple):
    config: type  # the frozen dataclass ``model.head`` holds for this head; its ``type`` is the key below
    build: type[nn.Module]  # called as ``build(in_channels, num_classes, config)``


HEADS: dict[str, HeadSpec] = {
    "knet": HeadSpec(KNetConfig, KNetHead),
    "solov2": HeadSpec(SOLOv2Config, SOLOv2Head),
}

#: what ``model.head`` may hold: one of the heads' configs, told apart by its ``type``
HeadConfig = Union[tuple(spec.config for spec in HEADS.values())]  # noqa: UP007 (built from the mapping)
