"""What a server is asked to do: the model to load, how to batch, what it accepts (:class:`ServeOptions`).

One frozen dataclass that the CLI, :func:`csrseg.serve.app` and each worker process of ``--workers N``
read; its :meth:`ServeOptions.check` refuses impossible values in one line before anything loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from csrseg.errors import CsrsegError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # a 24 MP JPEG is about 10 MB; a phone's HEIC-to-PNG about 20
# Pillow's own decompression-bomb limit (its DecompressionBombWarning threshold), about 89 MP
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
MIN_TILE = 32  # as csrseg.inference.tiling.MIN_TILE; repeated so that options stay free of torch


@dataclass(frozen=True)
class ServeOptions:
    """A server's settings.

    ``weights``, ``onnx``, ``openvino``: the one model (a checkpoint, an ONNX model, INT8 included, or
    an OpenVINO IR's ``.xml``). ``score_thr``, ``tile``, ``overlap``, ``classes``: each request's
    defaults (a request's query parameters override them). ``max_batch`` images go through the
    network at once, a batch waiting at most ``max_wait_ms`` for company. ``max_bytes``: the largest
    upload; ``max_pixels``: the largest decoded image (width x height).
    """

    weights: str | None = None
    onnx: str | None = None
    openvino: str | None = None
    device: str | None = None
    precision: str = "fp32"
    score_thr: float = 0.3
    tile: int | None = None
    overlap: float = 0.25
    classes: tuple[str, ...] = ()
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    data: str | None = None  # a dataset whose class names replace the model's, by category id
    layout: str | None = None  # which layout of ``data`` to read, when its folder holds two
    compiled: bool = False

    def check(self, *, model_file: bool = True) -> ServeOptions:
        """``self``, or a one-line :class:`CsrsegError` naming the option at fault; ``model_file=False``
        for a server around a predictor given as it is (no file to name)."""
        if model_file:
            self._check_model_file()
        if not 0 <= self.score_thr <= 1:  # NaN fails too
            raise CsrsegError(f"--score-thr {self.score_thr}: must be from 0 to 1")
        if self.tile is not None and self.tile < MIN_TILE:
            raise CsrsegError(f"--tile {self.tile}: a tile must be at least {MIN_TILE} px")
        if self.max_batch < 1:
            raise CsrsegError(f"--max-batch {self.max_batch}: must be at least 1")
        if not self.max_wait_ms >= 0:
            raise CsrsegError(f"--max-wait-ms {self.max_wait_ms}: must be 0 or more")
        if self.max_bytes < 1:
            raise CsrsegError(f"--max-bytes {self.max_bytes}: must be at least 1")
        if self.max_pixels < 1:
            raise CsrsegError(f"--max-pixels {self.max_pixels}: must be at least 1")
        return self

    def _check_model_file(self) -> None:
        given = [(name, value) for name, value in (("--weights", self.weights), ("--onnx", self.onnx),
                                                   ("--openvino", self.openvino)) if value]
        if len(given) != 1:
            raise CsrsegError("give one of --weights CKPT, --onnx MODEL.onnx or --openvino MODEL.xml"
                              + (f" (got {len(given)})" if given else ""))
        option, value = given[0]
        if not Path(value).is_file():
            raise CsrsegError(f"{option} {value}: no such file")

    @property
    def model_path(self) -> Path:
        """The one model file given."""
        return Path(self.weights or self.onnx or self.openvino or "")

    def to_json(self) -> str:
        """The options as JSON: how the parent hands them to each ``--workers`` process."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        values = json.loads(text)
        values["classes"] = tuple(values.get("classes", ()))
        return cls(**values)
