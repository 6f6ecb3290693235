"""Which runtime opens an exported pipeline, by its file's suffix: ONNX Runtime for ``.onnx``, OpenVINO
for an IR's ``.xml``. The predictors themselves share :class:`csrseg.inference.exported.ExportedPredictor`;
this module stands above them so that the base never has to know its runtimes.
"""

from __future__ import annotations

from pathlib import Path

from csrseg.errors import CsrsegError
from csrseg.inference.exported import ExportedPredictor

RUNTIMES = {".onnx": "ONNX Runtime", ".xml": "OpenVINO"}  # an exported model's suffix -> what runs it


def is_exported(path: str | Path | None) -> bool:
    """Whether ``path`` names an exported pipeline (``.onnx``, or an OpenVINO IR's ``.xml``), by its suffix."""
    return path is not None and Path(path).suffix.lower() in RUNTIMES


def open_exported(path: str | Path, *, score_thr: float = 0.3, precision: str = "fp32",
                  compiled: bool = False) -> ExportedPredictor:
    """The predictor of an exported pipeline: :class:`~csrseg.inference.onnx_predictor.OnnxPredictor` for
    ``.onnx`` (or any other suffix), :class:`~csrseg.inference.openvino_predictor.OpenVinoPredictor` for
    ``.xml``.

    ``precision``: an ONNX model runs as it was exported (``fp32`` only here; INT8 is in the graph);
    an OpenVINO model takes ``fp32``, ``bf16`` or ``auto``. ``compiled`` (``--compile``) is refused:
    torch.compile is for a checkpoint.
    """
    path = Path(path)
    if compiled:
        raise CsrsegError(f"--compile {path}: torch.compile is for a checkpoint; an exported model is "
                          "compiled by its runtime as it loads")
    if path.suffix.lower() == ".xml":
        from csrseg.inference.openvino_predictor import OpenVinoPredictor

        return OpenVinoPredictor(path, score_thr=score_thr, precision=precision)
    if precision != "fp32":
        raise CsrsegError(f"--precision {precision}: an ONNX model runs as it was exported (fp32, or INT8 with "
                          "csrseg export --int8); --precision is for a checkpoint or an OpenVINO model")
    from csrseg.inference.onnx_predictor import OnnxPredictor

    return OnnxPredictor(path, score_thr=score_thr)
