"""Video in, video out: predictions on every (or every n-th) frame of a clip.

OpenCV (``pip install 'csrseg[video]'``) decodes and encodes; it is optional, so a
missing OpenCV is a one-line error naming the clip, never an ImportError. Frames are
handed to any predictor with ``predict_batch(list of (H, W, 3) uint8 RGB)`` and
``class_names`` (``Predictor`` or ``OnnxPredictor``); the annotated clip is written as
MPEG-4 at the input size and at ``fps / stride``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.tracking import ByteTracker, TrackerConfig

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class VideoReadError(CsrsegError, ValueError):
    """A clip that cannot be opened or decoded (or OpenCV is not installed)."""


class FramePredictor(Protocol):
    class_names: list[str]

    def predict_batch(self, images: list[np.ndarray]) -> list[list[Any]]: ...


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _cv2(path: Path) -> Any:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own chatter about broken files
    try:
        import cv2
    except ImportError:
        raise VideoReadError(f"{path}: video input needs OpenCV: pip install 'csrseg[video]'") from None
    return cv2


@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # as the container reports it; may be 0 or approximate


def open_video(path: str | Path) -> tuple[Any, VideoInfo]:
    """An opened ``cv2.VideoCapture`` and the clip's properties; ``VideoReadError`` if it has no frame."""
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: video file not found")
    cv2 = _cv2(path)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoReadError(f"{path}: cannot be opened as a video")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        capture.release()
        raise VideoReadError(f"{path}: the video has no frames")
    fps = capture.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(fps=fps if fps and fps > 0 else 25.0, width=width, height=height,
                     frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))))
    return capture, info


def iter_frames(capture: Any, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, (H, W, 3) uint8 RGB)`` for frames 0, stride, 2*stride, ...; releases the capture at the end."""
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % stride == 0:
                yield index, np.ascontiguousarray(frame[..., ::-1])
            index += 1
    finally:
        capture.release()


class OverlayWriter:
    """The overlaid clip, written beside its final name (``<stem>.partial.mp4``) and renamed onto it by
    :meth:`finish`: an interrupted run never leaves a clip that looks finished. ``size``: ``(W, H)``."""

    def __init__(self, out_path: str | Path, fps: float, size: tuple[int, int], source: str | Path) -> None:
        cv2 = _cv2(Path(str(source)))
        self.path = Path(out_path)
        self.tmp = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise CsrsegError(f"{self.path}: cannot write an MPEG-4 video here")

    def write(self, overlay: Any) -> None:
        """One ``(H, W, 3)`` RGB frame (array or PIL image)."""
        self._writer.write(np.ascontiguousarray(np.asarray(overlay)[..., ::-1]))
        self.frames += 1

    def finish(self) -> bool:
        """Close the clip (its index written: readable from here on) and give it its name; a clip of
        no frame is removed instead (``False``)."""
        self._writer.release()
        if not self.frames:
            self.tmp.unlink(missing_ok=True)
            return False
        self.tmp.replace(self.path)
        return True


FrameSink = Callable[[int, list[Any], "list[int] | None"], None]


def predict_frames(predictor: FramePredictor, frames: Iterable[tuple[int, np.ndarray]], writer: OverlayWriter, *,
                   batch: int = 1, tracker: ByteTracker | None = None, on_frame: FrameSink | None = None) -> int:
    """Predict on ``frames`` (``(index, (H, W, 3) uint8 RGB)``, in order) ``batch`` at a time, write each
    overlay to ``writer`` and hand ``on_frame(index, instances, track_ids)`` each frame's result; returns
    the frames predicted. With a ``tracker`` the instances are those it gave a track (``track_ids``, one
    each; ``None`` without a tracker), drawn in their track's colour."""
    from csrseg.inference.visualize import draw_predictions

    done = 0

    def flush(pending: list[tuple[int, np.ndarray]]) -> None:
        nonlocal done
        for (index, frame), instances in zip(pending, predictor.predict_batch([f for _, f in pending])):
            ids = None
            if tracker is not None:  # frames reach it in order: batches are flushed in order
                instances, ids = keep_tracked(instances, tracker.update(instances))
            writer.write(draw_predictions(frame, instances, predictor.class_names, ids))
            if on_frame is not None:
                on_frame(index, instances, ids)
            done += 1

    pending: list[tuple[int, np.ndarray]] = []
    for index, frame in frames:
        pending.append((index, frame))
        if len(pending) == batch:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    return done


def keep_tracked(instances: list[Any], ids: list[int | None]) -> tuple[list[Any], list[int]]:
    """The instances a tracker gave an identity, and those identities (the others are left out, as a
    tracker's output leaves out what it does not follow)."""
    kept = [(inst, i) for inst, i in zip(instances, ids) if i is not None]
    return [inst for inst, _ in kept], [i for _, i in kept]


def predict_video(predictor: FramePredictor, path: str | Path, out_path: str | Path, stride: int = 1,
                  batch: int = 1, convert: Callable[..., Any] | None = None,
                  track: TrackerConfig | None = None) -> list[tuple[int, Any]]:
    """Predict on every ``stride``-th frame of ``path``; write the overlaid clip to ``out_path``.

    Returns ``[(frame index, instances), ...]``, or ``[(frame index, convert(index, instances, track_ids)), ...]``:
    for long clips, ``convert`` keeps what is needed (e.g. RLE records) instead of every frame's
    dense ``(H, W)`` masks, so memory does not grow with the clip. ``track``: follow the instances
    from frame to frame (:class:`~csrseg.tracking.ByteTracker`, one for this clip); each frame's
    instances are then the tracked ones and ``track_ids`` theirs (else ``None``). The output file is
    written next to its final name and renamed when complete.
    """
    path, out_path = Path(path), Path(out_path)
    if stride < 1:
        raise CsrsegError(f"--video-stride {stride}: must be at least 1")
    capture, info = open_video(path)
    try:
        writer = OverlayWriter(out_path, info.fps / stride, (info.width, info.height), path)
    except CsrsegError:
        capture.release()
        raise
    results: list[tuple[int, Any]] = []

    def keep(index: int, instances: list[Any], ids: list[int] | None) -> None:
        results.append((index, convert(index, instances, ids) if convert else instances))

    try:
        predict_frames(predictor, iter_frames(capture, stride), writer, batch=batch,
                       tracker=ByteTracker(track) if track else None, on_frame=keep)
    except BaseException:
        writer.frames = 0  # an interrupted clip is not given its name
        writer.finish()
        raise
    if not writer.finish():
        raise VideoReadError(f"{path}: no frame could be decoded")
    return results
