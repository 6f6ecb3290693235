"""Predicting over many sources: images in batches and videos frame by frame, overlays written beside
COCO-style rows streamed to ``predictions.json``; and over one endless source (a camera, a network
stream, a watched folder) until it ends, ``--max-frames`` or Ctrl-C."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

from csrseg.data.io import ImageReadError
from csrseg.inference.interrupt import stop_requests
from csrseg.inference.predictor import Instance, as_rgb_array
from csrseg.inference.records import RecordWriter, instance_records
from csrseg.inference.streams import open_stream, stream_frames, stream_name, watch_images
from csrseg.inference.video import OverlayWriter, VideoReadError, is_video, keep_tracked, predict_frames, predict_video
from csrseg.inference.visualize import draw_predictions
from csrseg.tracking import ByteTracker, TrackerConfig


@dataclass
class PredictCounts:
    """What a run over sources did: ``images`` and ``videos`` read (of ``videos_given``; ``frames`` of them predicted),
    ``instances`` written, and why each unreadable file was skipped (``skipped_files``, one line each)."""

    images: int = 0
    videos_given: int = 0
    videos: int = 0
    frames: int = 0
    instances: int = 0
    skipped_files: list[str] = field(default_factory=list)
    below_threshold: int = 0  # instances left out for scoring under the threshold
    top_below: float = 0.0  # the highest score among them
    stopped_by: str = ""  # an endless source: "--max-frames", "SIGINT", "the end of the stream"

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)


def predict_files(predictor, paths: list[Path], out_dir: Path, records: RecordWriter, batch: int = 1,
                  video_stride: int = 1, track: TrackerConfig | None = None) -> PredictCounts:
    """Overlays of every image (``OUT/<stem>.jpg``) and video (``OUT/<stem>.mp4``) of ``paths`` into
    ``out_dir`` and their rows into ``records``; a file that cannot be read is skipped, its reason kept
    in the counts, never the end of the run. ``predictor``: a :class:`Predictor` or an ``OnnxPredictor``.
    ``track``: identities across frames (``track_id`` on each row): one tracker per video, and one for
    the images, taken as the frames of one sequence in their order."""
    counts = PredictCounts()
    images = [p for p in paths if not is_video(p)]
    tracker = ByteTracker(track) if track else None
    _predict_images(predictor, images, out_dir, records, counts, batch, tracker)
    videos = [p for p in paths if is_video(p)]
    counts.videos_given = len(videos)
    for path in videos:
        try:
            # each frame's instances become RLE rows at once: dense masks of a long clip would fill memory
            results = predict_video(predictor, path, out_dir / f"{path.stem}.mp4", stride=video_stride, batch=batch,
                                    convert=partial(_frame_records, str(path)), track=track)
        except VideoReadError as exc:
            counts.skipped_files.append(str(exc))
            continue
        counts.videos, counts.frames = counts.videos + 1, counts.frames + len(results)
        for _, rows in results:
            records.write(rows)
    return _finish(counts, predictor, records)


def predict_stream(predictor, source: str, out_dir: Path, records: RecordWriter, *, batch: int = 1,
                   track: TrackerConfig | None = None, max_frames: int | None = None,
                   opened: tuple | None = None) -> PredictCounts:
    """Predict on a camera index or URL until it ends, ``max_frames`` frames are read, or Ctrl-C /
    SIGTERM (:mod:`csrseg.inference.interrupt`); every output is then finished as at any end:
    ``OUT/<name>.mp4`` and rows with ``frame``, reaching the disk frame by frame. ``opened``: the
    source's :func:`~csrseg.inference.streams.open_stream`, if already open."""
    counts = PredictCounts(videos_given=1)
    tracker = ByteTracker(track) if track else None
    with stop_requests() as asked:
        capture, info = opened or open_stream(source)
        writer = OverlayWriter(out_dir / f"{stream_name(source)}.mp4", info.fps, (info.width, info.height), source)

        def write(index: int, instances: list[Instance], ids: list[int] | None) -> None:
            records.write(instance_records(source, instances, ids, frame=index))
            records.flush()

        frames = stream_frames(capture, (info.width, info.height), max_frames=max_frames, stop=asked)
        try:
            counts.frames = predict_frames(predictor, frames, writer, batch=batch, tracker=tracker, on_frame=write)
        finally:
            counts.videos = int(writer.finish())  # the clip is readable whatever ended the run
        counts.stopped_by = _stopped_by(asked, counts.frames, max_frames)
    return _finish(counts, predictor, records)


def predict_watched(predictor, folder: str | Path, out_dir: Path, records: RecordWriter, *,
                    track: TrackerConfig | None = None, max_frames: int | None = None) -> PredictCounts:
    """Predict on a folder's images, then on each new one as it arrives, until ``max_frames`` images
    are read or Ctrl-C / SIGTERM: an overlay per image, as :func:`predict_files` gives, and rows that
    reach the disk image by image."""
    counts = PredictCounts()
    tracker = ByteTracker(track) if track else None
    with stop_requests() as asked:
        images = watch_images(Path(folder), max_images=max_frames, stop=asked)
        given = _predict_images(predictor, images, out_dir, records, counts, 1, tracker, flush=True)
        counts.stopped_by = _stopped_by(asked, given, max_frames)  # a bad file counts too, and a file given again
    return _finish(counts, predictor, records)


def _stopped_by(asked, read: int, max_frames: int | None) -> str:
    """What ended an endless source: the signal asked for, ``--max-frames``, or the source itself."""
    return asked() or ("--max-frames" if max_frames is not None and read >= max_frames else "the end of the stream")


def _predict_images(predictor, paths: Iterable[Path], out_dir: Path, records: RecordWriter, counts: PredictCounts,
                    batch: int, tracker: ByteTracker | None, flush: bool = False) -> int:
    """Overlays and rows of ``paths`` (a list, or a watched folder's images as they come), ``batch`` at
    a time, in order; with a ``tracker``, the tracked instances only, with their ids. Returns how many
    paths were given (read or not). A path given again after its read failed (a watched file that was
    still being written) replaces its skip in ``counts``: skipped or read, it counts once."""
    given = 0
    stream: Iterator[Path] = iter(paths)
    skipped: dict[Path, str] = {}  # a watched file given again (its read had failed) is counted once
    while chunk_paths := list(islice(stream, batch)):
        chunk, arrays = [], []
        given += len(chunk_paths)
        for path in chunk_paths:
            if path in skipped:
                counts.skipped_files.remove(skipped.pop(path))
            try:
                arrays.append(as_rgb_array(path))
                chunk.append(path)
            except ImageReadError as exc:
                skipped[path] = str(exc)
                counts.skipped_files.append(skipped[path])
        if not arrays:
            continue
        for path, image, instances in zip(chunk, arrays, predictor.predict_batch(arrays)):
            ids = None
            if tracker is not None:
                instances, ids = keep_tracked(instances, tracker.update(instances))
            draw_predictions(image, instances, predictor.class_names, ids).save(out_dir / f"{path.stem}.jpg", quality=92)
            counts.images += 1
            records.write(instance_records(str(path), instances, ids))
            if flush:
                records.flush()
    return given


def _finish(counts: PredictCounts, predictor, records: RecordWriter) -> PredictCounts:
    counts.instances = records.count
    counts.below_threshold, counts.top_below = predictor.below.count, predictor.below.top
    return counts


def _frame_records(file_name: str, index: int, instances: list[Instance], track_ids: list[int] | None) -> list[dict]:
    return instance_records(file_name, instances, track_ids, frame=index)
