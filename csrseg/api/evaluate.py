"""``csrseg.evaluate``: the one implementation of evaluation, for Python and for ``csrseg eval``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from csrseg.data.coco import DatasetError, annotations_outside, warn_if_unscorable
from csrseg.data.sources import DatasetSources, SplitFiles, resolve_dataset
from csrseg.outputs import check_output_file, output_lock

logger = logging.getLogger("csrseg")


def _warn_before_scoring(index, annotations: Path) -> None:
    """What makes the AP of a split say less than it seems, said before the inference: classes the
    model was not trained for (COCOeval scores them too, as all missed), or nothing of its classes."""
    missing = annotations_outside(index, index.cat_ids)
    if missing:
        names = ", ".join(f"{index.categories.get(c, c)} ({n})" for c, n in sorted(missing.items())[:8])
        logger.warning("warning: %s: %d annotations of %d categories the model has no class for, counted as missed "
                       "in the AP: %s", annotations, sum(missing.values()), len(missing), names)
    warn_if_unscorable(index)


def report_path(results: Path) -> Path:
    """Where :func:`evaluate` writes its report beside the COCO results file: ``<results>.metrics.json``."""
    return results.with_name(f"{results.stem}.metrics.json")


def evaluate(weights: str | Path, *, data: str | Path | DatasetSources | None = None, split: str = "val",
             ann: str | Path | None = None, images: str | Path | None = None, out: str | Path | None = None,
             device: str | None = None, batch: int = 2, workers: int = 0, progress: bool = False,
             precision: str = "fp32", exist_ok: bool = False, layout: str | None = None, tile: int | None = None,
             overlap: float = 0.25, compiled: bool = False, plots: bool = True, evaluator: str = "auto",
             confusion_score_thr: float = 0.3) -> dict:
    """Mask and box AP, overall and per class, of ``weights`` on a split of ``data`` (or on the
    annotation file ``ann``); see :func:`csrseg.evaluation.coco.detailed_metrics`.

    ``weights``: a checkpoint, a ``.safetensors`` file, or a model written by ``csrseg export``: an
    ``.onnx`` (fp32 or INT8, run by onnxruntime) or an OpenVINO IR's ``.xml`` (fp32 or INT8; run in
    ``precision`` fp32, bf16 or auto), either on the original images, its classes from its metadata.
    Writes the COCO results JSON (``out``, default ``results_<split>.json`` beside the weights) and
    the report beside it (``<results>.metrics.json``); the report also holds both paths. The default
    results file is eval's own and renewed each time; an ``out`` the caller names is never replaced
    unless ``exist_ok``. ``precision``: the network's (:class:`~csrseg.inference.predictor.Predictor`;
    fp32 by default, so the AP does not depend on the machine); ``compiled``: through ``torch.compile``.
    ``tile``: sliced inference, each image cut into ``tile`` px tiles overlapping by ``overlap`` and
    merged with the whole image (:mod:`csrseg.inference.tiling`), for either kind of model; a model trained on crops
    (``input.crop``) is always sliced, in tiles of its crop unless ``tile`` says otherwise.
    ``plots``: also the precision-recall curves and the confusion matrix (at mask IoU 0.5 and
    ``confusion_score_thr``) beside the report, as PNG and JSON (:mod:`csrseg.evaluation.pictures`;
    the report's ``pictures`` lists them). ``evaluator``: ``pycocotools``, ``faster``
    (faster-coco-eval, the ``[fasteval]`` extra) or ``auto`` (faster where installed).
    """
    from csrseg.data import CocoInstances, Transform
    from csrseg.evaluation.backends import resolve_evaluator
    from csrseg.evaluation.coco import infer_dataset, report_of, score_results, write_results
    from csrseg.evaluation.pictures import check_confusion_options, picture_paths, write_pictures
    from csrseg.inference.factory import open_predictor
    from csrseg.inference.predictor import Predictor
    from csrseg.inference.tiling import check_tiling

    evaluator = resolve_evaluator(evaluator)  # a missing faster-coco-eval is said before the inference
    check_confusion_options(confusion_score_thr, 0.5)
    if out:  # an explicit out is the caller's file: never replaced unasked (the default one is eval's own)
        check_output_file(out, exist_ok, (".json",), "COCO results (JSON)")
        check_output_file(report_path(Path(out)), exist_ok)  # the report written beside it
        for picture in picture_paths(Path(out)).values() if plots else ():
            check_output_file(picture, exist_ok)
    if tile is not None:
        check_tiling(tile, overlap)  # before the output checks' locks and minutes of loading
    if ann and not Path(ann).is_file():
        raise DatasetError(f"{ann}: annotation file not found (--ann)")
    predictor = open_predictor(weights, device=device, score_thr=0.0, precision=precision, compiled=compiled,
                               tile=tile, overlap=overlap, batch=batch)
    results_path = Path(out) if out else Path(weights).with_name(f"results_{split}.json")
    with output_lock(results_path, "csrseg eval", folder=False):  # one evaluation at a time writes these results
        # writable before the minutes of inference, not after
        check_output_file(results_path, exist_ok=True, suffixes=(".json",), what="COCO results (JSON)")
        if isinstance(data, DatasetSources):
            sources = data
        else:
            sources = resolve_dataset(data, val_split=split, val_ann=ann, layout=layout)
        files = sources.get("val" if ann else split)
        if images:
            files = SplitFiles(files.annotations, Path(images))
        logger.info("dataset: %s (images %s)", files.annotations, files.images)
        # a checkpoint's images are resized as in training; a graph resizes them itself, a tiled model slices them
        transform = Transform(predictor.cfg.input, train=False) if isinstance(predictor, Predictor) else None
        dataset = CocoInstances(files.annotations, files.images, transform=transform, cat_ids=predictor.cat_ids)
        _warn_before_scoring(dataset.index, files.annotations)
        results, seen = infer_dataset(predictor, dataset, batch=batch, workers=workers, progress=progress)
        write_results(results, results_path)
        scored = score_results(dataset.index.path, results, seen, dict(zip(predictor.cat_ids, predictor.class_names)),
                               evaluator=evaluator)
        report = report_of(scored)
        if plots:
            pictures = write_pictures(scored, results_path, score_thr=confusion_score_thr)
            report["pictures"] = {what: str(path) for what, path in pictures.items()}
        metrics_path = report_path(results_path)
        metrics_path.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
        return dict(report, annotations=str(files.annotations), images=len(seen), predictions=len(results),
                    results=str(results_path), metrics=str(metrics_path))
