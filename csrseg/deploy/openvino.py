"""OpenVINO IR of an exported pipeline: fp32 (run in bf16 where the CPU computes it), and INT8 by NNCF.

OpenVINO reads the ONNX graph of :func:`csrseg.deploy.onnx.export_onnx` as it is (the resize, the
network and the post-processing), so the IR is that graph converted: ``model.xml`` and its weights
``model.bin`` beside it. The weights are kept in fp32 (``compress_to_fp16=False``): an fp32 IR gives
the ONNX model's instances, and the precision it executes in is chosen when it is loaded
(:class:`csrseg.inference.openvino_predictor.OpenVinoPredictor`). The ONNX metadata (classes,
category ids, config) travels in the IR's ``rt_info`` under ``csrseg``.

INT8 (:func:`quantize_openvino`) is NNCF's post-training quantization calibrated on real images, with
what :mod:`csrseg.deploy.int8` keeps out of quantization kept out here too: every node outside the
network's ``forward`` (the resize before it, the post-processing after it) and the matrix products
of two activations (K-Net's attention and dynamic kernels: few FLOPs, a second rounding).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from csrseg.deploy.int8 import NETWORK_SCOPE, ImageFeed
from csrseg.errors import CsrsegError
from csrseg.inference.openvino_predictor import EXTRA, RT_INFO, require_openvino

WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")


def require_nncf():
    """The ``nncf`` module (OpenVINO's quantizer), or a one-line :class:`CsrsegError` saying how to install it."""
    # NNCF imports torch's C++-extension module, which warns of a missing CUDA runtime on every CPU machine
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise CsrsegError(f"--int8 with --format openvino needs NNCF, which is not installed: {EXTRA}") from None
    # its INFO lines list every node it leaves alone (hundreds): keep its warnings and its progress bars
    nncf.set_log_level(logging.WARNING)
    return nncf


def ir_files(xml: Path) -> tuple[Path, Path]:
    """An IR's two files: ``model.xml`` (the graph) and ``model.bin`` (its weights)."""
    return xml, xml.with_suffix(".bin")


def save_ir(model, out: str | Path) -> Path:
    """Write the OpenVINO ``model`` to ``out`` (``.xml``, its ``.bin`` beside it), both under temporary
    names first and renamed weights first, so a reader never finds a graph without its weights."""
    ov = require_openvino()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp_xml, tmp_bin = ir_files(tmp)
    xml, weights = ir_files(out)
    tmp_bin.replace(weights)
    tmp_xml.replace(xml)
    return out


def onnx_to_openvino(onnx_path: str | Path, out: str | Path):
    """The ONNX model at ``onnx_path`` as an OpenVINO model in memory, its ONNX metadata in ``rt_info``."""
    import onnx

    ov = require_openvino()
    model = ov.convert_model(str(onnx_path))
    for prop in onnx.load(str(onnx_path), load_external_data=False).metadata_props:
        model.set_rt_info(prop.value, [RT_INFO, prop.key])
    return model


def export_openvino(onnx_path: str | Path, out: str | Path) -> Path:
    """Convert the exported ONNX pipeline at ``onnx_path`` to an fp32 IR at ``out`` (``.xml`` + ``.bin``)."""
    return save_ir(onnx_to_openvino(onnx_path, out), out)


def _constant_input(op, index: int = 1) -> bool:
    """Whether ``op``'s input ``index`` is a weight: a ``Constant``, possibly through the ``Convert``,
    ``Reshape``, ``Transpose`` or ``Unsqueeze`` that the conversion put after it."""
    node = op.input_value(index).get_node()
    while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def kept_fp32(model) -> list[str]:
    """Names of the weight-type ops NNCF must leave in fp32: those outside :data:`NETWORK_SCOPE`
    (post-processing) and those whose second input is not a weight (activation products)."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in WEIGHTED_OPS
            and not (op.get_friendly_name().startswith(NETWORK_SCOPE) and _constant_input(op))]


def op_types(model) -> set[str]:
    """The op types in ``model``, those inside its ``If`` branches included."""
    types = set()
    for op in model.get_ordered_ops():
        types.add(op.get_type_name())
        if op.get_type_name() == "If":
            for branch in range(2):
                types |= op_types(op.get_function(branch))
    return types


def quantize_openvino(onnx_path: str | Path, out: str | Path, calib_paths: list[Path | np.ndarray]) -> dict:
    """INT8 IR at ``out`` of the ONNX pipeline at ``onnx_path``: NNCF post-training quantization
    (symmetric int8 weights per channel in a 7-bit range, activations calibrated on ``calib_paths``, one image at a
    time at its own size, as the graph runs). Returns the quantization record kept in its metadata."""
    require_openvino()
    nncf = require_nncf()
    model = onnx_to_openvino(onnx_path, out)
    # read one image at a time as NNCF walks the set: 64 photos at once would be gigabytes
    dataset = nncf.Dataset(list(calib_paths), lambda item: ImageFeed([item]).get_next()["image"])
    ignored = kept_fp32(model)
    # NNCF quantizes the inputs of many more op types by default (the input's Cast and normalisation,
    # GroupNorm, attention, the masks' Interpolate inside the post-processing's If): every type but
    # the weighted ones is left alone, so the quantizers sit on weights and the activations they meet
    others = sorted(op_types(model) - set(WEIGHTED_OPS))
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # overflow fix on every layer (7-bit weights): CPUs without VNNI (AVX2 only) sum u8 x s8 pairs in
    # saturating int16, and NNCF's default fixes the first layer only; with it, on the AVX2 paths of a
    # Xeon, 48 of 100 fp32 instances of the INT8 test lost their partner. An IR may run on any CPU.
    quantized = nncf.quantize(model, dataset, subset_size=len(calib_paths),
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
                              ignored_scope=nncf.IgnoredScope(names=ignored, types=others, validate=False))
    weighted = sum(op.get_type_name() in WEIGHTED_OPS for op in model.get_ordered_ops())
    record = dict(format="OpenVINO NNCF", weights="int8 per-channel, 7-bit range (overflow fix)", activations="int8, calibrated",
                  calibration_images=len(calib_paths), nodes=weighted - len(ignored))
    quantized.set_rt_info(json.dumps(record), [RT_INFO, "quantization"])
    save_ir(quantized, out)
    return record
