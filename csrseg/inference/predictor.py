"""Inference on images: ``Predictor(weights).predict(image) -> list[Instance]``.

:meth:`Predictor.run_batch` (network + post-processing on a collated batch, in the predictor's
precision) is the one path from a batch to instances that ``predict``, ``eval``, evaluation while
training and ``benchmark`` share.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from csrseg.config import Config
from csrseg.data.io import read_image, to_rgb
from csrseg.data.transforms import Transform, collate
from csrseg.engine.checkpoint import load_trained_model
from csrseg.errors import CsrsegError
from csrseg.masks.packed import PackedCrop
from csrseg.models.fold import fold_batch_norms
from csrseg.runtime.cpu import native_bf16
from csrseg.runtime.device import resolve_device
from csrseg.runtime.precision import AUTO_ENV, Precision, ProbeCache, check_choice, machine_key, probe_times, resolve

logger = logging.getLogger(__name__)


@dataclass
class Instance:
    """One detected instance in original-image coordinates.

    Its mask is kept as ``packed``, the mask within ``box`` at a bit a pixel (a bool array given there
    is packed): a 24 MP photo's 100 full-size masks would take 2.4 GB as bool, and 100 that each cover
    the photo 2.4 GB even within their boxes. :attr:`crop` unpacks it and :attr:`mask` builds the
    full-size mask when asked.
    """

    label: int  # contiguous label
    class_name: str
    category_id: int  # the dataset's category id
    score: float
    packed: PackedCrop  # (y1 - y0 + 1, x1 - x0 + 1): the mask within `box`
    box: tuple[float, float, float, float]  # x0, y0, x1, y1, inclusive and tight around the mask
    image_size: tuple[int, int]  # (H, W)

    def __post_init__(self) -> None:
        if not isinstance(self.packed, PackedCrop):  # a bool crop, as a caller has it: packed here
            self.packed = PackedCrop.pack(self.packed)

    @property
    def crop(self) -> np.ndarray:
        """``(y1 - y0 + 1, x1 - x0 + 1)`` bool, the mask within :attr:`box`: unpacked on each access,
        keep it to reuse it."""
        return self.packed.unpack()

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool, the mask at the image's size: built on each access, keep it to reuse it."""
        mask = np.zeros(self.image_size, dtype=bool)
        x0, y0 = self.origin
        height, width = self.packed.shape
        mask[y0 : y0 + height, x0 : x0 + width] = self.packed.unpack()
        return mask

    @property
    def origin(self) -> tuple[int, int]:
        """``(x0, y0)``: where the crop's top-left pixel lies in the image."""
        return int(self.box[0]), int(self.box[1])


ImageLike = str | Path | np.ndarray | Image.Image


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """Path, PIL image or array (H, W), (H, W, 3|4) -> ``(H, W, 3)`` uint8 RGB."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise CsrsegError(f"image array of shape {arr.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
    if arr.dtype != np.uint8:  # 16-bit or float data: stretch its range to 8 bits
        arr = arr.astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


class Predictor:
    """A trained model ready for images.

    Args:
        weights: checkpoint (``.pt``) or ``.safetensors`` written by csrseg.
        device: ``cpu``, ``cuda`` ... (default: CUDA when available).
        score_thr: instances scoring below are dropped.
        precision: ``fp32`` (default), ``bf16``, ``fp16`` or ``auto`` (:mod:`csrseg.runtime.precision`;
            the network runs as :func:`for_inference` makes it, BatchNorm folded; on a CPU ``auto`` is: the faster of fp32 and bf16 on the first batch itself, network and post-processing
            as :meth:`run_batch` runs them, at that batch's size, measured once per machine, model and
            size, and logged; :attr:`precision` is ``None`` until then).
        compiled: run the network through ``torch.compile`` (:func:`compiled_network`; needs a C++
            compiler): a compile per precision and shape first, then the fastest eager-PyTorch path.
    """

    def __init__(self, weights: str | Path, device: str | None = None, score_thr: float = 0.3,
                 precision: str = "fp32", *, compiled: bool = False) -> None:
        check_choice(precision, "--precision")
        if compiled:
            require_compiler()  # before the checkpoint is read
        device_ = torch.device(resolve_device(device))
        trained = load_trained_model(weights, device_)
        self._setup(for_inference(trained.model), trained.cfg, trained.class_names, trained.cat_ids, device_,
                    score_thr, inference_precision(precision, device_), compiled)
        self.metrics: dict[str, float] = trained.metrics  # val metrics recorded with the weights

    @classmethod
    def for_model(cls, model: nn.Module, cfg: Config, class_names: list[str], cat_ids: list[int],
                  device: torch.device | str, precision: Precision | str | None = None, score_thr: float = 0.0,
                  *, compiled: bool = False) -> Predictor:
        """A predictor around a model in memory (a model being trained, a benchmark's), used as it is:
        its memory format and device are left alone. ``precision``: a resolved one, or a choice
        (``"auto"`` is decided on the first batch, as for a checkpoint); default fp32. ``compiled``:
        as for a checkpoint."""
        predictor = cls.__new__(cls)
        if isinstance(precision, str):
            precision = inference_precision(precision, torch.device(device))
        elif precision is None:
            precision = Precision("fp32", "as asked")
        predictor._setup(model, cfg, class_names, cat_ids, torch.device(device), score_thr, precision, compiled)
        predictor.metrics = {}
        return predictor

    def _setup(self, model: nn.Module, cfg: Config, class_names: list[str], cat_ids: list[int], device: torch.device,
               score_thr: float, precision: Precision | None, compiled: bool = False) -> None:
        self.model, self.cfg, self.class_names, self.cat_ids = model.eval(), cfg, class_names, cat_ids
        # the network as run_batch calls it: the model, or its torch.compile (post-processing stays eager)
        self.network: nn.Module = compiled_network(model) if compiled else model
        self.compiled = compiled
        self.device, self.score_thr, self.precision = device, score_thr, precision
        self.transform = Transform(cfg.input, train=False)
        self.below = BelowThreshold()

    @torch.no_grad()
    def run_batch(self, batch: torch.Tensor, input_sizes: list[tuple[int, int]],
                  orig_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Network and post-processing on a normalised, padded ``(B, 3, H, W)`` batch (as :func:`collate`
        makes it): one dict per image (``labels``, ``scores``, ``masks``: a
        :class:`~csrseg.masks.crops.MaskCrops` at the original size, ``boxes``), every instance
        whatever its score. The network runs in :attr:`precision` (``auto``: decided on this first
        batch, :meth:`decide_precision`), post-processing in fp32."""
        self.model.eval()
        batch = batch.to(self.device, non_blocking=True)
        if next(self.model.parameters()).is_contiguous(memory_format=torch.channels_last):
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.precision is None:
            self.precision = self.decide_precision(batch, input_sizes, orig_sizes)
        return self._run(batch, input_sizes, orig_sizes, self.precision)

    def _run(self, batch: torch.Tensor, input_sizes: list[tuple[int, int]], orig_sizes: list[tuple[int, int]],
             precision: Precision) -> list[dict[str, torch.Tensor]]:
        with precision.autocast(self.device):
            outputs = self.network(batch)
        return self.model.postprocess(outputs, input_sizes, orig_sizes)

    def decide_precision(self, batch: torch.Tensor, input_sizes: list[tuple[int, int]],
                         orig_sizes: list[tuple[int, int]]) -> Precision:
        """``auto`` on a CPU: :meth:`run_batch` itself (network and post-processing, in the model's memory
        format) timed on ``batch`` in fp32 and in bf16 autocast, a few seconds, cached per machine,
        model and batch shape (:class:`~csrseg.runtime.precision.ProbeCache`); the faster, logged
        with both times. bf16 is a candidate only where the CPU computes it: emulated, it is never
        the faster and would cost the probe minutes at a large size."""
        if not native_bf16():
            return Precision("fp32", "auto: this CPU does not compute bf16")

        def step(name: str) -> None:
            self._run(batch, input_sizes, orig_sizes, Precision(name, "probe"))

        layout = "channels_last" if batch.is_contiguous(memory_format=torch.channels_last) else "contiguous"
        what = f"infer|{self.cfg.model}|{tuple(batch.shape)}|{layout}|{orig_sizes}"
        precision = resolve("auto", self.device,
                            lambda: ProbeCache().times(what, lambda: probe_times(step, budget=2.0, warmup=1)))
        logger.info("--precision auto at %dx%d: %s", batch.shape[-1], batch.shape[-2], precision.describe())
        return precision

    def _sample(self, image: np.ndarray) -> dict:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        tensor, masks = self.transform(tensor, torch.zeros((0, *image.shape[:2]), dtype=torch.uint8), np.random.default_rng(0))
        return dict(image=tensor, masks=masks, orig_size=image.shape[:2], input_size=tuple(tensor.shape[-2:]))

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        """Instances of each image (paths, PIL images or arrays), best score first."""
        arrays = [as_rgb_array(im) for im in images]
        batch, targets = collate([self._sample(a) for a in arrays], self.cfg.input.size_divisor)
        results = self.run_batch(batch, [t["input_size"] for t in targets], [t["orig_size"] for t in targets])
        return [self._instances(r) for r in results]

    @property
    def input_config(self):
        """The input settings the model was trained with (:class:`~csrseg.data.transforms.InputConfig`)."""
        return self.cfg.input

    def predict(self, image: ImageLike) -> list[Instance]:
        """Instances of one image, best score first."""
        return self.predict_batch([image])[0]

    def _instances(self, result: dict[str, torch.Tensor]) -> list[Instance]:
        masks = result["masks"]
        raw = RawInstances(result["labels"].tolist(), result["scores"].tolist(), masks.crops, masks.boxes.tolist(),
                           masks.size)
        return to_instances(raw, class_names=self.class_names, cat_ids=self.cat_ids, score_thr=self.score_thr,
                            below=self.below)


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` (eval mode) made ready to predict, in place: BatchNorm folded into the convolutions
    (:func:`~csrseg.models.fold.fold_batch_norms`, one pass over each feature map fewer) and
    channels-last, oneDNN's and cuDNN's preferred layout (``paper`` fp32 at 1333x800 on a 2-core AMX
    Xeon: 0.956 images/s against 0.697 as built; RESULTS.md, issue 32). Its outputs are the trained model's to float32 rounding; export starts from the model as
    trained instead (:func:`~csrseg.engine.checkpoint.load_trained_model`)."""
    fold_batch_norms(model.eval())
    return model.to(memory_format=torch.channels_last)


def require_compiler() -> None:
    """A one-line :class:`CsrsegError` unless a C++ compiler is here: torch.compile builds its CPU code
    with one (``$CXX``, else ``g++``)."""
    import shutil

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise CsrsegError(f"--compile needs a C++ compiler for torch.compile's CPU code, and {compiler} is not "
                          "on PATH: install g++ (Debian/Ubuntu: apt install g++) or set CXX")


def compiled_network(model: nn.Module) -> nn.Module:
    """``model``'s forward through ``torch.compile`` (Inductor) for inference, its weights frozen into the
    compiled code as constants (Inductor's ``freezing``: prepacked for oneDNN on a CPU, BatchNorm and
    the elementwise ops after a convolution fused into it). It compiles on the first batch of each
    precision and shape (about 13 s for ``paper`` at 1333x800 on 2 cores), then runs the same
    network: at that size on a 2-core AMX Xeon, post-processing included, 0.29 s an image in bf16
    autocast against eager's 0.46 s; in fp32 it does not pay (1.04 s against 0.84 s; RESULTS.md).
    Without a C++ compiler: :func:`require_compiler`'s one line. Inductor's cache is kept apart per
    CPU code path (:func:`isolate_compile_cache`)."""
    require_compiler()
    isolate_compile_cache()
    return torch.compile(model, options={"freezing": True})


_INDUCTOR_CACHE_BASE: str | None = None


def isolate_compile_cache() -> Path:
    """Point Inductor's cache (``$TORCHINDUCTOR_CACHE_DIR``, process-wide) at a folder of its own for
    this CPU code path, under the folder it would use otherwise, and return it.

    Why: Inductor's FX graph cache does not key a frozen graph on the vector ISA it generated code
    for (torch 2.14.1). A graph compiled under ``ATEN_CPU_CAPABILITY=avx2`` and then loaded with
    AVX-512 (or the other way round, as when one cache folder serves two machines) gave NaN outputs
    or corrupted the heap (RESULTS.md, issue 32). The folder is named for
    :func:`~csrseg.runtime.precision.machine_key` and the ISA Inductor picks."""
    global _INDUCTOR_CACHE_BASE
    import hashlib

    from torch._inductor.cpu_vec_isa import pick_vec_isa
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if _INDUCTOR_CACHE_BASE is None:  # the folder as the user (or torch) chose it, read once
        _INDUCTOR_CACHE_BASE = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    key = f"{machine_key()}|{pick_vec_isa()}"
    folder = Path(_INDUCTOR_CACHE_BASE) / f"csrseg-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def inference_precision(choice: str, device: torch.device) -> Precision | None:
    """``choice`` resolved for inference on ``device`` (:func:`csrseg.runtime.precision.resolve`), or
    ``None`` for ``auto`` on a CPU: decided on the first batch (:meth:`Predictor.decide_precision`)."""
    if choice == "auto" and device.type == "cpu" and not os.environ.get(AUTO_ENV):  # the variable answers for the probe
        return None
    return resolve(choice, device)


class RawInstances(NamedTuple):
    """One image's model outputs, every instance whatever its score: ``labels (n,)``, ``scores (n,)``,
    each mask a packed crop within its tight inclusive box ``(x0, y0, x1, y1)``, and the ``image_size`` ``(H, W)``."""

    labels: list[int]
    scores: list[float]
    crops: list[PackedCrop]
    boxes: list
    image_size: tuple[int, int]


def to_instances(raw: RawInstances, *, class_names: list[str], cat_ids: list[int], score_thr: float,
                 below: BelowThreshold | None = None) -> list[Instance]:
    """:class:`RawInstances` -> :class:`Instance` list, those under ``score_thr`` left out (and counted in ``below``)."""
    if below is not None:
        below.add([s for s in raw.scores if s < score_thr])
    size = (int(raw.image_size[0]), int(raw.image_size[1]))
    return [
        Instance(label, class_names[label], cat_ids[label], score, crop, tuple(float(v) for v in box), size)
        for label, score, crop, box in zip(raw.labels, raw.scores, raw.crops, raw.boxes)
        if score >= score_thr
    ]


def crops_of(masks: np.ndarray, boxes: list) -> list[PackedCrop]:
    """Full-size masks ``(n, H, W)`` and their tight inclusive boxes -> each mask's crop, packed (so
    the full-size masks can be let go)."""
    return [PackedCrop.pack(mask[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]) for mask, (x0, y0, x1, y1) in zip(masks, boxes)]


@dataclass
class BelowThreshold:
    """The instances a predictor left out for scoring under its threshold: how many, and the highest
    score among them (what to lower ``--score-thr`` to when nothing passes)."""

    count: int = 0
    top: float = 0.0

    def add(self, scores: list[float]) -> None:
        self.count += len(scores)
        self.top = max([self.top, *scores])


