"""``csrseg.predict``: the one implementation of predicting over files, folders, globs and videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csrseg.outputs import check_outputs, default_run_dir, output_lock
from csrseg.errors import CsrsegError
from csrseg.inference.records import RecordWriter
from csrseg.inference.runner import PredictCounts, predict_files, predict_stream, predict_watched
from csrseg.inference.sources import expand_sources
from csrseg.inference.streams import check_watch_folder, is_stream, open_stream
from csrseg.tracking import TrackerConfig


@dataclass
class PredictResult:
    """Where everything went (``out_dir`` with the overlays, ``predictions``) and what was done."""

    out_dir: Path
    predictions: Path
    counts: PredictCounts
    score_thr: float = 0.3  # the threshold used (its default depends on tracking)


def model_option(weights: str | Path | None = None, onnx: str | Path | None = None,
                 openvino: str | Path | None = None) -> Path:
    """The one model that ``--weights``, ``--onnx`` and ``--openvino`` name. What runs it is then told
    by its suffix (:func:`~csrseg.inference.runtimes.is_exported`), so ``--onnx`` and ``--openvino``
    must name files of their kind; ``--weights`` may name any."""
    given = [value for value in (weights, onnx, openvino) if value]
    if len(given) != 1:
        raise CsrsegError("give one of --weights CKPT, --onnx MODEL.onnx or --openvino MODEL.xml"
                          + (f" (got {len(given)})" if given else ""))
    for value, option, suffix in ((onnx, "--onnx", ".onnx"), (openvino, "--openvino", ".xml")):
        if value and Path(value).suffix.lower() != suffix:
            raise CsrsegError(f"{option} {value}: expected a {suffix} file"
                              + (" (an OpenVINO IR is the .xml beside its .bin)" if suffix == ".xml" else ""))
    return Path(given[0])


def load_predictor(weights: str | Path | None = None, *, onnx: str | Path | None = None,
                   openvino: str | Path | None = None, device: str | None = None, score_thr: float = 0.3,
                   precision: str = "fp32", data: str | Path | None = None, layout: str | None = None,
                   tile: int | None = None, overlap: float = 0.25, compiled: bool = False):
    """A :class:`~csrseg.inference.predictor.Predictor` of a checkpoint, or the predictor of an exported
    model (ONNX or OpenVINO: :func:`~csrseg.inference.runtimes.open_exported`; ``weights`` may name one
    by its suffix), with the class names of ``data`` (a dataset folder or YAML) when given; with
    ``tile``, one that slices each frame into tiles of that many pixels overlapping by ``overlap``
    (:mod:`csrseg.inference.tiling`), as a model trained on crops (``input.crop``) does by itself, in
    tiles of its crop."""
    from csrseg.inference.factory import open_predictor

    predictor = open_predictor(model_option(weights, onnx, openvino), device=device, score_thr=score_thr,
                               precision=precision, compiled=compiled, tile=tile, overlap=overlap)
    if data:
        from csrseg.data.sources import class_names_for

        predictor.class_names = class_names_for(data, predictor.cat_ids, layout)
    return predictor


def predict(sources: list[str | Path] | str | Path, *, weights: str | Path | None = None, onnx: str | Path | None = None,
            openvino: str | Path | None = None, out: str | Path | None = None, score_thr: float | None = None, batch: int = 1, device: str | None = None,
            precision: str = "fp32", video_stride: int = 1, data: str | Path | None = None,
            exist_ok: bool = False, layout: str | None = None, tile: int | None = None,
            overlap: float = 0.25, compiled: bool = False, track: TrackerConfig | bool | None = None,
            watch: bool = False, max_frames: int | None = None) -> PredictResult:
    """Predict on ``sources`` (image and video files, folders, glob patterns) with a checkpoint
    (``weights``) or an exported model (``onnx``, ``openvino``; or ``weights`` naming one by its suffix): an overlay per image and per video in ``out``
    (default ``runs/predict/exp[N]``) and every instance as a COCO-style row in ``predictions.json``.

    ``tile``: slice each image and frame into ``tile`` px tiles overlapping by ``overlap`` (a share of
    the tile), predicted with the whole frame and merged (:mod:`csrseg.inference.tiling`): small
    objects in large frames keep their pixels. ``compiled``: a checkpoint's network through
    ``torch.compile`` (:func:`~csrseg.inference.predictor.compiled_network`). ``score_thr``: default 0.3,
    or ``track``'s ``low`` when tracking (its second stage needs the low scores).

    ``track`` (``True`` or a :class:`~csrseg.tracking.TrackerConfig`): identities across the frames of
    each video (and across the images, in order): every row gets a ``track_id``, each track its colour
    in the overlays; detections no track takes are left out.

    One endless source instead of files: a camera index (``"0"``), a stream URL (``rtsp://``,
    ``http://`` ...) or, with ``watch``, a folder whose images are read as they arrive. It is read
    until it ends, ``max_frames`` frames (images) or Ctrl-C, and the outputs are finished as at any
    end (``counts.stopped_by`` says which).

    An ``out`` that already holds predictions is refused unless ``exist_ok``; when no source can be
    read nothing is written and an earlier ``predictions.json`` stays as it was.
    """
    out_dir = Path(out) if out else default_run_dir("predict", "exp")
    track = TrackerConfig() if track is True else (track or None)
    if score_thr is None:
        score_thr = track.low if track else 0.3
    given = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    endless = _endless_source(given, watch, max_frames)
    with output_lock(out_dir, "csrseg predict"):  # one run at a time writes here
        check_outputs(out_dir, ["predictions.json"], exist_ok)
        opened = open_stream(endless) if endless and not watch else None  # an unreadable stream: before the model loads
        try:
            predictor = load_predictor(weights, onnx=onnx, openvino=openvino, device=device, score_thr=score_thr,
                                       precision=precision, data=data, layout=layout, tile=tile, overlap=overlap, compiled=compiled)
        except BaseException:
            if opened:
                opened[0].release()
            raise
        if endless:
            out_dir.mkdir(parents=True, exist_ok=True)
            records = RecordWriter(out_dir / "predictions.json")
            try:
                if watch:
                    counts = predict_watched(predictor, endless, out_dir, records, track=track, max_frames=max_frames)
                else:
                    counts = predict_stream(predictor, endless, out_dir, records, batch=batch, track=track,
                                            max_frames=max_frames, opened=opened)
            except BaseException:
                records.discard()
                raise
            return PredictResult(out_dir, records.close(), counts, score_thr)
        paths = expand_sources(given)
        if not paths:
            raise CsrsegError(f"no images or videos found in {' '.join(given)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        records = RecordWriter(out_dir / "predictions.json")
        try:
            counts = predict_files(predictor, paths, out_dir, records, batch, video_stride, track)
        except BaseException:
            records.discard()
            raise
        if counts.images == 0 and counts.frames == 0:  # every source unreadable: say so, keep what out held
            records.discard()
            reasons = "; ".join(counts.skipped_files[:3])
            raise CsrsegError(f"none of the {len(paths)} images or videos could be read ({reasons}); nothing written "
                              f"to {out_dir / 'predictions.json'}")
        return PredictResult(out_dir, records.close(), counts, score_thr)


def _endless_source(given: list[str], watch: bool, max_frames: int | None) -> str | None:
    """The one camera, stream or watched folder among ``given``, else ``None`` (files, folders, globs)."""
    endless = [s for s in given if is_stream(s)] + (given if watch else [])
    if max_frames is not None and max_frames < 1:
        raise CsrsegError(f"--max-frames {max_frames}: must be at least 1")
    if not endless:
        if max_frames is not None:
            raise CsrsegError("--max-frames ends a camera, stream or --watch folder; files end by themselves "
                              "(--video-stride thins a clip)")
        return None
    if len(given) > 1:
        raise CsrsegError(f"a camera, stream or --watch folder is read alone (it has no end): got {len(given)} "
                          f"sources ({' '.join(given)})")
    if watch:
        check_watch_folder(given[0])
    return given[0]
