"""One place that turns a model file into a predictor: a checkpoint or an exported graph, tiled or not."""

from __future__ import annotations

import logging
from pathlib import Path

from csrseg.inference.protocol import InstancePredictor

logger = logging.getLogger("csrseg")


def open_predictor(path: str | Path, *, device: str | None = None, score_thr: float = 0.3, precision: str = "fp32",
                   compiled: bool = False, tile: int | None = None, overlap: float = 0.25,
                   batch: int = 8) -> InstancePredictor:
    """The predictor of ``path``: an exported graph (``.onnx``, OpenVINO ``.xml``:
    :func:`~csrseg.inference.runtimes.open_exported`) or a checkpoint
    (:class:`~csrseg.inference.predictor.Predictor`, on ``device``, ``compiled`` through torch.compile);
    with ``tile`` (or for a model trained on crops, unasked) a
    :class:`~csrseg.inference.tiling.TiledPredictor` around it, ``batch`` tiles at a time. A tile no
    model can use is refused before minutes of loading."""
    from csrseg.inference.runtimes import is_exported, open_exported
    from csrseg.inference.tiling import TiledPredictor, check_tiling, tiling_for

    if tile is not None:
        check_tiling(tile, overlap)
    if is_exported(path):
        predictor = open_exported(path, score_thr=score_thr, precision=precision, compiled=compiled)
    else:
        from csrseg.inference.predictor import Predictor

        predictor = Predictor(path, device=device, score_thr=score_thr, precision=precision, compiled=compiled)
    tiling = tiling_for(predictor, tile, overlap, batch)
    if tiling is None:
        return predictor
    if tile is None:
        logger.info("the model was trained on crops: predicting in tiles of %d px (--tile)", tiling.size)
    return TiledPredictor(predictor, tiling)
