"""Endless sources, read frame by frame: a camera by its index (``0``), a network stream
(``rtsp://``, ``http://`` ...: what OpenCV's FFmpeg reads, MJPEG over HTTP included) and a folder
that images keep arriving in (``--watch``).

A source that cannot be opened is a one-line :class:`StreamReadError` naming it, raised before the
model is loaded. Opening and each read wait at most :data:`TIMEOUT_MS`: a stream that stalls ends
the run as its end would, outputs finished.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from csrseg.data.io import IMAGE_SUFFIXES
from csrseg.errors import CsrsegError
from csrseg.inference.video import VideoInfo, _cv2

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
TIMEOUT_MS = 10_000
POLL_SECONDS = 0.2  # how often a watched folder is listed


class StreamReadError(CsrsegError, ValueError):
    """A camera or network stream that cannot be opened, or a --watch that names no folder."""


def is_stream(source: str) -> bool:
    """A camera index (digits that name no file here) or a URL of a scheme FFmpeg streams."""
    return (source.isdigit() and not Path(source).exists()) or source.lower().startswith(STREAM_SCHEMES)


def stream_name(source: str) -> str:
    """The stem of a stream's overlay clip: ``camera0``; a URL's last path segment (``live`` of
    ``rtsp://cam/live``), else its host; only letters, digits, ``.``, ``_`` and ``-``."""
    if source.isdigit():
        return f"camera{source}"
    parts = urlsplit(source)
    stem = Path(parts.path).stem or parts.hostname or "stream"
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)


def open_stream(source: str) -> tuple[Any, VideoInfo]:
    """An opened ``cv2.VideoCapture`` of a camera index or URL and its properties (a stream that does
    not say its frame rate is taken at 25 fps; ``frames`` is 0: unknown)."""
    cv2 = _cv2(Path(source))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS]
    camera = source.isdigit()
    capture = cv2.VideoCapture(int(source), cv2.CAP_ANY, params) if camera else cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        if camera:
            raise StreamReadError(f"camera {source}: cannot be opened (no such camera here, or in use)")
        raise StreamReadError(f"{source}: cannot be opened as a stream (nothing answers there, or it sends no "
                              "video FFmpeg reads)")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        capture.release()
        raise StreamReadError(f"{source}: the stream has no video")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, VideoInfo(fps=fps if fps and 0 < fps < 1000 else 25.0, width=width, height=height, frames=0)


def stream_frames(capture: Any, size: tuple[int, int], *, max_frames: int | None,
                  stop: Callable[[], str | None]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, (H, W, 3) uint8 RGB)`` of each frame until the stream ends, ``max_frames`` are read or
    ``stop()`` asks; frames are brought to ``size`` ``(W, H)`` (a stream may change its size, the clip
    written cannot). Releases the capture at the end."""
    import cv2

    try:
        index = 0
        while (max_frames is None or index < max_frames) and not stop():
            ok, frame = capture.read()
            if not ok:
                return
            if (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            yield index, np.ascontiguousarray(frame[..., ::-1])
            index += 1
    finally:
        capture.release()


def check_watch_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise StreamReadError(f"{folder}: --watch needs a folder to watch")
    return folder


def watch_images(folder: Path, *, max_images: int | None, stop: Callable[[], str | None],
                 poll: float = POLL_SECONDS) -> Iterator[Path]:
    """The images of ``folder``, those there at the start and each one that arrives, by name within a
    listing, until ``max_images`` are given or ``stop()`` asks. An image is given once its size stays
    the same over two listings: one still being copied in is not read half-written. One whose size
    changes after it was given (a copy that stalled for longer than a listing and went on, so that its
    read failed; a camera app rewriting ``latest.jpg``) is given again once its size is still. Hidden
    names (``.name.png``) are left alone: copy tools and camera apps write there first, then rename."""
    given: dict[str, int] = {}  # name -> its size when given
    seen: dict[str, int] = {}  # name -> its size at the last listing
    count = 0
    while (max_images is None or count < max_images) and not stop():
        fresh = False
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                size = path.stat().st_size
            except OSError:  # gone between the listing and now
                continue
            if given.get(path.name) == size:
                continue
            if size and seen.get(path.name) == size:
                given[path.name] = size
                fresh = True
                count += 1
                yield path
                if (max_images is not None and count >= max_images) or stop():
                    return
            else:
                seen[path.name] = size
        if not fresh:
            time.sleep(poll)
