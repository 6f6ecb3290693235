"""INT8 ONNX: ONNX Runtime static quantization of an exported pipeline's network.

:func:`quantize_onnx` takes a graph written by :func:`csrseg.deploy.onnx.export_onnx` and
quantizes the convolutions and the weight matrices of the network (QDQ format, int8
per-channel weights, uint8 activations with ranges calibrated on real images). The
rest of the graph - the resize and normalisation before the network, K-Net's top-k or
SOLOv2's Matrix NMS and the mask upsampling after it - stays fp32: those are the nodes
whose inputs are not scoped under ``/model/`` (the tracer names every node by the
module whose ``forward`` made it, and the post-processing is not a ``forward``).

Calibration images come from a dataset in any layout ``--data`` accepts
(:func:`csrseg.data.sources.resolve_dataset`): its train split where it has one.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from csrseg.data.coco import DatasetError, load_coco_json
from csrseg.data.io import read_image
from csrseg.data.sources import resolve_dataset
from csrseg.errors import CsrsegError

# Ops whose second input is a weight: what INT8 speeds up. Matrix products of two activations
# (K-Net's attention and dynamic convolutions) are few FLOPs and would add a second rounding.
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
NETWORK_SCOPE = "/model/"


class CalibrationError(CsrsegError, ValueError):
    """The calibration data cannot be used."""


def calibration_images(data: str | Path, count: int, layout: str | None = None) -> list[Path]:
    """``count`` image files of ``data``'s train split (else its val, else test), spread evenly over it.

    Fewer when the split has fewer; a one-line :class:`CalibrationError` when there are none.
    """
    if count < 1:
        raise CalibrationError(f"--calib-images {count}: must be at least 1")
    try:
        sources = resolve_dataset(data, layout=layout)
    except DatasetError as exc:
        raise CalibrationError(f"--calib: {exc}") from None
    split = next((s for s in ("train", "val", "test") if s in sources.splits), None)
    if split is None:
        raise CalibrationError(f"--calib {data}: no split with images")
    files = sources.get(split)
    index = load_coco_json(files.annotations)
    if not index.images:
        raise CalibrationError(f"--calib: {files.annotations} lists no images")
    picks = np.unique(np.linspace(0, len(index.images) - 1, min(count, len(index.images))).round().astype(int))
    paths = [files.images / index.images[i]["file_name"] for i in picks]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CalibrationError(f"--calib: {len(missing)} calibration image(s) missing, e.g. {missing[0]}")
    return paths


class ImageFeed:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over image files (or ``(H, W, 3)`` uint8 arrays):
    one ``{"image": (1, 3, H, W) uint8}`` feed per image, each at its own size (the exported graph
    resizes, as at inference).

    ``set_range`` and ``__len__`` let the calibrator take one image at a time (``CalibStridedMinMax``),
    so the intermediate tensors of one image, not of all of them, sit in memory.
    """

    def __init__(self, paths: list[Path | np.ndarray]) -> None:
        self.paths = paths
        self.start, self.end = 0, len(paths)
        self.position = 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.paths))
        self.position = self.start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.end:
            return None
        item = self.paths[self.position]
        image = item if isinstance(item, np.ndarray) else read_image(item)  # unreadable files raise
        self.position += 1
        return {"image": np.ascontiguousarray(image.transpose(2, 0, 1))[None]}

    def rewind(self) -> None:
        self.position = self.start


def network_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to quantize: weight-bearing ops (:data:`QUANTIZED_OPS`, second input an
    initializer) inside the network's ``forward`` (:data:`NETWORK_SCOPE`)."""
    weights = {init.name for init in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type in QUANTIZED_OPS and node.name.startswith(NETWORK_SCOPE)
            and len(node.input) > 1 and node.input[1] in weights]


def _outer_names(node: onnx.NodeProto) -> set[str]:
    """Every tensor ``node`` reads: its inputs and what its subgraphs (an ``If``'s branches) take
    from the enclosing graph."""
    names = set(node.input)
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            inner = {out for n in attr.g.node for out in n.output} | {i.name for i in attr.g.initializer}
            inner |= {i.name for i in attr.g.input}
            names |= {name for n in attr.g.node for name in _outer_names(n)} - inner
    return names - {""}


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Put ``graph``'s nodes in an order where each comes after what it reads, subgraph reads
    included: the quantizer's own sort ignores what an ``If`` branch reads from outside (the
    post-processing's resize-or-not branch), and ``onnx.checker`` then rejects the model."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    needs = {id(n): _outer_names(n) for n in pending}
    while pending:
        rest = []
        for node in pending:
            if needs[id(node)] <= known:
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"quantized graph has a cycle or an undefined input at node {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


@dataclass
class QuantizeReport:
    path: Path
    images: int  # calibration images used
    quantized: int  # nodes quantized
    kept_fp32: int  # conv / matrix ops left in fp32 (post-processing, activation products)


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calib_paths: list[Path | np.ndarray]) -> QuantizeReport:
    """Quantize the network of the exported graph ``fp32_path`` to INT8; write to ``out_path``.

    Weights: int8 per output channel, 7-bit range (``reduce_range``: without VNNI, AVX2's
    ``vpmaddubsw`` saturates int16 sums of full-range products). Activations: uint8, min-max
    ranges over the calibration images. The metadata (classes, category ids, config) is kept.
    The file is written under a temporary name and renamed, so ``out_path`` is whole or absent.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    source = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory(prefix="csrseg-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ORT's basic optimizations (constant folding) and shape inference; the symbolic one cannot
        # follow the post-processing's data-dependent shapes and is not needed for Conv/Gemm/MatMul
        quant_pre_process(source, str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        nodes = network_nodes(model)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(quantized), ImageFeed(calib_paths), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=nodes, per_channel=True,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibStridedMinMax": 1},
        )
        result = onnx.load(str(quantized))
    _sort_nodes(result.graph)
    del result.metadata_props[:]
    for prop in source.metadata_props:
        entry = result.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    entry = result.metadata_props.add()
    entry.key, entry.value = "quantization", json.dumps(dict(
        format="QDQ", weights="int8 per-channel, reduce_range", activations="uint8 min-max",
        calibration_images=len(calib_paths), nodes=len(nodes)))
    onnx.checker.check_model(result)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_name(f".{out_path.name}.tmp")
    onnx.save(result, str(tmp_out))
    tmp_out.replace(out_path)
    total = sum(node.op_type in QUANTIZED_OPS for node in model.graph.node)
    return QuantizeReport(out_path, len(calib_paths), len(nodes), total - len(nodes))
