"""Video in, video out: predictions on every (or every n-th) frame of a clip.

OpenCV (``pip install 'csrseg[video]'``) decodes and encodes; it is optional, so a
missing OpenCV is a one-line error naming the clip, never an ImportError. Frames are
handed to any predictor with ``predict_batch(list of (H, W, 3) uint8 RGB)`` and
``class_names`` (``Predictor`` or ``OnnxPredictor``); the annotated clip is written as
MPEG-4 at the input size and at ``fps / stride``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from csrseg.errors import CsrsegError

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


def predict_video(predictor: FramePredictor, path: str | Path, out_path: str | Path, stride: int = 1,
                  batch: int = 1, convert: Callable[[int, list[Any]], Any] | None = None) -> list[tuple[int, Any]]:
    """Predict on every ``stride``-th frame of ``path``; write the overlaid clip to ``out_path``.

    Returns ``[(frame index, instances), ...]``, or ``[(frame index, convert(index, instances)), ...]``:
    for long clips, ``convert`` keeps what is needed (e.g. RLE records) instead of every frame's
    dense ``(H, W)`` masks, so memory does not grow with the clip. The output file is written next to its
    final name and renamed when complete, so an interrupted run never leaves a clip that
    looks finished.
    """
    from csrseg.inference.visualize import draw_predictions

    path, out_path = Path(path), Path(out_path)
    if stride < 1:
        raise CsrsegError(f"--video-stride {stride}: must be at least 1")
    capture, info = open_video(path)
    cv2 = _cv2(path)
    tmp = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), info.fps / stride, (info.width, info.height))
    if not writer.isOpened():
        capture.release()
        raise CsrsegError(f"{out_path}: cannot write an MPEG-4 video here")
    results: list[tuple[int, list[Any]]] = []

    def flush(pending: list[tuple[int, np.ndarray]]) -> None:
        for (index, frame), instances in zip(pending, predictor.predict_batch([f for _, f in pending])):
            overlay = draw_predictions(frame, instances, predictor.class_names)
            writer.write(np.ascontiguousarray(np.asarray(overlay)[..., ::-1]))
            results.append((index, convert(index, instances) if convert else instances))

    try:
        pending: list[tuple[int, np.ndarray]] = []
        for index, frame in iter_frames(capture, stride):
            pending.append((index, frame))
            if len(pending) == batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    finally:
        writer.release()
    if not results:
        tmp.unlink(missing_ok=True)
        raise VideoReadError(f"{path}: no frame could be decoded")
    tmp.replace(out_path)
    return results
