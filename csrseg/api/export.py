"""``csrseg.export``: the one implementation of exporting a checkpoint (ONNX and OpenVINO, fp32 or INT8; safetensors)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from csrseg.outputs import check_output_file, output_lock
from csrseg.errors import CsrsegError

FORMATS = ("onnx", "openvino", "safetensors")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "safetensors": ".safetensors"}


@dataclass
class ExportResult:
    path: Path
    format: str
    opset: int | None = None
    # an INT8 model's quantization record: csrseg.deploy.int8.QuantizeReport (ONNX), the dict that
    # csrseg.deploy.openvino.quantize_openvino keeps in the IR's metadata (OpenVINO)
    int8: object | None = None


def export(out: str | Path, *, weights: str | Path, format: str = "onnx", opset: int = 17, int8: bool = False,
           calib: str | Path | None = None, calib_images: int = 64, exist_ok: bool = False,
           layout: str | None = None) -> ExportResult:
    """Write the checkpoint ``weights`` as ``out``: the whole pipeline as ONNX or as an OpenVINO IR
    (``out`` the ``.xml``, its ``.bin`` beside it; converted from the ONNX graph), ``int8``: with the
    network quantized, calibrated on ``calib_images`` train images of the dataset ``calib``; or the
    weights as safetensors. Every input is checked before the minutes of export and calibration."""
    out = Path(out)
    if format not in FORMATS:
        raise CsrsegError(f"--format {format}: choose {' or '.join(FORMATS)}")
    if out.is_dir():
        raise CsrsegError(f"{out}: a folder; export writes one file, e.g. {out / ('model.' + format)}")
    if int8 and format == "safetensors":
        raise CsrsegError("--int8 quantizes an ONNX or OpenVINO model: it cannot go with --format safetensors")
    suffix = SUFFIXES[format]
    if out.suffix.lower() != suffix:  # a safetensors file named best.pt would pass for a checkpoint
        raise CsrsegError(f"{out}: --format {format} writes a {suffix} file; name it so, e.g. {out.with_suffix(suffix)}")
    if format == "openvino":
        from csrseg.deploy.openvino import require_openvino

        require_openvino("--format openvino")  # before the checkpoint is read
        if int8:
            from csrseg.deploy.openvino import require_nncf

            require_nncf()
    if int8 != bool(calib):
        raise CsrsegError("--int8 needs --calib DATA (images to calibrate on)" if int8 else "--calib is for --int8 only")
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset

    if format != "safetensors" and not 17 <= opset <= max_opset:
        raise CsrsegError(f"--opset {opset}: choose 17 (the default, the opset the tests check) to {max_opset} "
                          "(the newest torch's exporter writes)")
    with output_lock(out, "csrseg export", folder=False):  # one export at a time writes this file
        check_output_file(out, exist_ok)
        if format == "openvino":
            check_output_file(out.with_suffix(".bin"), exist_ok)  # the IR's weights, written beside it
        images = None
        if int8:
            from csrseg.deploy.int8 import calibration_images

            images = calibration_images(calib, calib_images, layout)
        from csrseg.deploy.onnx import checkpoint_metadata, export_onnx
        from csrseg.engine.checkpoint import load_trained_model, save_safetensors

        trained = load_trained_model(weights)  # as trained: the runtimes fold and convert as they load
        meta = checkpoint_metadata(trained.cfg, trained.class_names, trained.cat_ids)
        if format == "safetensors":
            return ExportResult(save_safetensors(trained.model.state_dict(), meta, out), format)
        if format == "onnx" and not int8:
            return ExportResult(export_onnx(trained.model, trained.cfg.input, out, meta, opset=opset), format, opset)
        with tempfile.TemporaryDirectory(prefix="csrseg-export-") as tmp:
            fp32 = export_onnx(trained.model, trained.cfg.input, Path(tmp) / "fp32.onnx", meta, opset=opset)
            if format == "onnx":
                from csrseg.deploy.int8 import quantize_onnx

                report = quantize_onnx(fp32, out, images)
                return ExportResult(report.path, format, opset, report)
            from csrseg.deploy.openvino import export_openvino, quantize_openvino

            if int8:
                return ExportResult(out, format, opset, quantize_openvino(fp32, out, images))
            return ExportResult(export_openvino(fp32, out), format, opset)
