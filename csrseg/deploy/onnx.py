"""ONNX export of the whole pipeline: resize, normalise, pad, network, Matrix NMS, masks.

The graph takes one original image, ``image`` ``(1, 3, H, W)`` uint8 RGB of any size,
and returns the instances at that size: ``labels (n,)`` int64, ``scores (n,)``
float32, ``masks (n, H, W)`` bool, ``boxes (n, 4)`` float32 (x0, y0, x1, y1).
Class names and category ids travel in the model's metadata.

The trace follows the same code as eager inference (the head's ``postprocess`` in its
``static`` form, which keeps shapes fixed until the final selection), whichever head
the model has, so ONNX Runtime and PyTorch give the same instances.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csrseg.config import to_dict
from csrseg.data.transforms import InputConfig, network_size
from csrseg.models import CSRSeg


def _size(value: Tensor) -> Tensor | int:
    """A computed size: a traced tensor while exporting, a Python int when run eagerly."""
    return value if torch.jit.is_tracing() else int(value)


class ExportModel(nn.Module):
    """``forward(image (1, 3, H, W) uint8) -> (labels, scores, masks (n, H, W) bool, boxes)``."""

    def __init__(self, model: CSRSeg, input_cfg: InputConfig) -> None:
        super().__init__()
        self.model = model.eval()
        self.input_cfg = input_cfg
        self.register_buffer("mean", torch.tensor(input_cfg.mean)[None, :, None, None] * 255)
        self.register_buffer("std", torch.tensor(input_cfg.std)[None, :, None, None] * 255)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cfg = self.input_cfg
        x = image.float()
        height = torch.as_tensor(x.shape[-2]).double()
        width = torch.as_tensor(x.shape[-1]).double()
        new_h, new_w = network_size(height, width, cfg)  # the data pipeline's resize, in float64 like Python's
        x = F.interpolate(x, size=(_size(new_h), _size(new_w)), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        div = cfg.size_divisor
        x = F.pad(x, (0, _size((div - new_w % div) % div), 0, _size((div - new_h % div) % div)))
        outputs = self.model(x)
        (result,) = self.model.postprocess(
            outputs,
            [(_size(new_h), _size(new_w))],
            [(_size(height.long()), _size(width.long()))],
            static=True,
        )
        return result["labels"], result["scores"], result["masks"], result["boxes"]


def export_onnx(model: CSRSeg, input_cfg: InputConfig, path: str | Path, metadata: dict | None = None,
                opset: int = 17, sample_size: tuple[int, int] = (480, 640)) -> Path:
    """Write ``model`` as ONNX to ``path`` and validate it with ``onnx.checker``."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportModel(model.cpu(), input_cfg).eval()
    sample = torch.randint(0, 255, (1, 3, *sample_size), dtype=torch.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values it records as constants
        torch.onnx.export(
            wrapper, (sample,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["labels", "scores", "masks", "boxes"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "labels": {0: "n"}, "scores": {0: "n"},
                          "masks": {0: "n", 1: "height", 2: "width"}, "boxes": {0: "n"}},
        )
    proto = onnx.load(str(tmp))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def checkpoint_metadata(cfg, class_names: list[str], cat_ids: list[int]) -> dict:
    return dict(config=to_dict(cfg), classes=class_names, cat_ids=cat_ids)
