"""The model behind a server: one predictor, each request's settings, and the batch -> instances step
the batcher's worker thread runs (:class:`ServedModel`).

Only the batcher's one worker thread calls :meth:`ServedModel.predict`, so the predictor (and the
score threshold it is set to for a group) is never shared between threads.
"""

from __future__ import annotations

import dataclasses

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.inference.predictor import Instance
from csrseg.inference.tiling import TiledPredictor, Tiling, check_tiling, tiling_for
from csrseg.serve.options import ServeOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestSettings:
    """What one request asks for: instances scoring at least ``score_thr``, sliced into ``tile`` px
    tiles overlapping by ``overlap`` (``None``: whole images, unless the model was trained on crops),
    of the contiguous class labels in ``labels`` only (``None``: every class)."""

    score_thr: float
    tile: int | None
    overlap: float
    labels: frozenset[int] | None


# what the server reads of a predictor: csrseg.inference.protocol.InstancePredictor's members
NEEDED = ("predict_batch", "class_names", "cat_ids", "score_thr", "input_config")


class ServedModel:
    """A predictor (a :class:`~csrseg.inference.predictor.Predictor`, an exported model's, or any other
    :class:`~csrseg.inference.protocol.InstancePredictor`) with the server's defaults; one that lacks
    a member of the protocol is refused in one line before the server starts. A
    :class:`~csrseg.inference.tiling.TiledPredictor` gives its tiling as the default of requests.

    ``path``: the model file, for :meth:`metadata`'s hash (``None`` for a predictor made in memory).
    """

    def __init__(self, predictor, *, options: ServeOptions, path: Path | None = None) -> None:
        if isinstance(predictor, TiledPredictor):  # tiling is decided per request, around the bare predictor
            if options.tile is None:
                options = dataclasses.replace(options, tile=predictor.tiling.size, overlap=predictor.tiling.overlap)
            predictor = predictor.predictor
        missing = [name for name in NEEDED if not hasattr(predictor, name)]
        if missing:
            raise CsrsegError(f"{type(predictor).__name__} cannot be served: it has no {', '.join(missing)} "
                              "(see csrseg.inference.protocol.InstancePredictor)")
        self.predictor = predictor
        self.options = options
        self.path = path
        self._sha256: dict[str, str] | None = None
        # the server's defaults, checked as a request's settings are (from the built-in ones)
        self.defaults = RequestSettings(0.3, None, 0.25, None)
        self.defaults = self.settings(score_thr=options.score_thr, tile=options.tile, overlap=options.overlap,
                                      classes=list(options.classes) or None)

    @classmethod
    def load(cls, options: ServeOptions) -> ServedModel:
        """The model ``options`` name, loaded as ``csrseg predict`` loads it (one-line errors)."""
        from csrseg.api.predict import load_predictor

        options.check()
        predictor = load_predictor(options.weights, onnx=options.onnx, openvino=options.openvino,
                                   device=options.device, score_thr=options.score_thr, precision=options.precision,
                                   data=options.data, layout=options.layout, compiled=options.compiled)
        return cls(predictor, options=options, path=options.model_path)

    @property
    def class_names(self) -> list[str]:
        return list(self.predictor.class_names)

    def settings(self, *, score_thr: float | None = None, tile: int | None = None, overlap: float | None = None,
                 classes: list[str] | None = None) -> RequestSettings:
        """A request's settings, each left out taken from the server's defaults; a one-line
        :class:`CsrsegError` for a value out of range or a class the model does not know. ``tile=0``
        asks for whole images on a server started with ``--tile``."""
        base = self.defaults
        score_thr = base.score_thr if score_thr is None else score_thr
        if not 0 <= score_thr <= 1:  # NaN fails too
            raise CsrsegError(f"score_thr {score_thr}: must be from 0 to 1")
        tile = base.tile if tile is None else (tile or None)
        overlap = base.overlap if overlap is None else overlap
        check_tiling(tile or 10**9, overlap)  # without a tile, the overlap's own range alone
        labels = base.labels if classes is None else self._labels(classes)
        return RequestSettings(float(score_thr), tile, float(overlap), labels)

    def _labels(self, classes: list[str] | None) -> frozenset[int] | None:
        if not classes:
            return None
        names = self.class_names
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise CsrsegError(f"classes: {', '.join(unknown)} not among the model's classes ({', '.join(names)})")
        return frozenset(names.index(c) for c in classes)

    def tiling(self, settings: RequestSettings) -> Tiling | None:
        """How a request's images are sliced (a model trained on crops always is)."""
        return tiling_for(self.predictor, settings.tile, settings.overlap)

    def predict(self, jobs: list[tuple[np.ndarray, RequestSettings]]) -> list[list[Instance] | Exception]:
        """Each ``(image (H, W, 3) uint8, settings)`` -> its instances, best score first, or the exception
        that image alone raised (the others of its batch are answered all the same).

        Whole-image requests go through the network together, at the lowest threshold among them,
        each then keeping its own (for whole images the threshold only filters). A tiled request's
        threshold acts tile by tile before the merge, as in ``csrseg predict --tile``, so tiled
        requests are grouped by tiling and threshold.
        """
        groups: dict[tuple[Tiling, float] | None, list[int]] = {}
        for index, (_, settings) in enumerate(jobs):
            tiling = self.tiling(settings)
            groups.setdefault(None if tiling is None else (tiling, settings.score_thr), []).append(index)
        results: list[list[Instance] | Exception] = [[] for _ in jobs]
        for key, indices in groups.items():
            predictor = self.predictor if key is None else TiledPredictor(self.predictor, key[0])
            threshold = min(jobs[i][1].score_thr for i in indices)
            found = self._run(predictor, threshold, [jobs[i][0] for i in indices])
            for i, instances in zip(indices, found):
                results[i] = instances if isinstance(instances, Exception) else keep(instances, jobs[i][1])
        return results

    def _run(self, predictor, threshold: float, images: list[np.ndarray]) -> list[list[Instance] | Exception]:
        """One batch; when it fails, each image alone, so that only the image at fault gets the error."""
        self.predictor.score_thr = threshold
        try:
            return predictor.predict_batch(images)
        except Exception as exc:
            if len(images) == 1:
                logger.warning("an image failed: %s", exc)
                return [exc]
        found: list[list[Instance] | Exception] = []
        for image in images:
            try:
                found.append(predictor.predict_batch([image])[0])
            except Exception as exc:
                logger.warning("an image of a batch failed: %s", exc)
                found.append(exc)
        return found

    def metadata(self) -> dict:
        """What ``GET /metadata`` answers: classes, input size, precision, the model file and its hash."""
        input_cfg = self.predictor.input_config
        keys = ("short_side", "max_size", "size_divisor", "crop", "crop_scale")
        return dict(
            # the package's root is loaded before any of its modules: reading it imports nothing
            csrseg_version=sys.modules["csrseg"].__version__,
            model=dict(file=self.path.name if self.path else None, format=self.model_format(),
                       sha256=self.file_hashes(), precision=self.precision()),
            classes=[dict(class_id=i, category_id=int(c), name=n)
                     for i, (n, c) in enumerate(zip(self.class_names, self.predictor.cat_ids))],
            input={k: getattr(input_cfg, k) for k in keys} if input_cfg else None,
            defaults=dict(score_thr=self.defaults.score_thr, tile=self.defaults.tile, overlap=self.defaults.overlap,
                          classes=list(self.options.classes)),
            batching=dict(max_batch=self.options.max_batch, max_wait_ms=self.options.max_wait_ms),
            limits=dict(max_bytes=self.options.max_bytes, max_pixels=self.options.max_pixels),
        )

    def model_format(self) -> str:
        """``checkpoint``, ``onnx`` or ``openvino`` (``memory`` for a predictor given as it is)."""
        if self.path is None:
            return "memory"
        return {".onnx": "onnx", ".xml": "openvino"}.get(self.path.suffix.lower(), "checkpoint")

    def precision(self) -> str:
        """The network's precision as it runs: ``fp32``, ``bf16``, ``int8`` (an INT8 export) or, for
        ``--precision auto`` not yet decided, ``auto (decided on the first batch)``."""
        metadata = getattr(self.predictor, "metadata", None)
        if isinstance(metadata, dict) and metadata.get("quantization"):
            return "int8"
        precision = getattr(self.predictor, "precision", "fp32")
        if precision is None:
            return "auto (decided on the first batch)"
        return getattr(precision, "name", str(precision))

    def file_hashes(self) -> dict[str, str]:
        """sha256 of the model file (and of an OpenVINO IR's ``.bin``), computed once."""
        if self._sha256 is None:
            files = [] if self.path is None else [self.path]
            if self.path is not None and self.path.suffix.lower() == ".xml":
                files.append(self.path.with_suffix(".bin"))
            self._sha256 = {f.name: file_sha256(f) for f in files if f.is_file()}
        return self._sha256


def keep(instances: list[Instance], settings: RequestSettings) -> list[Instance]:
    """The instances a request keeps: at its threshold, of its classes."""
    return [i for i in instances if i.score >= settings.score_thr
            and (settings.labels is None or i.label in settings.labels)]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read a MB at a time (a checkpoint may be hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
