"""Inference on images: ``Predictor(weights).predict(image) -> list[Instance]``."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from csrseg.config import without_pretrained
from csrseg.data.io import IMAGE_SUFFIXES, read_image, to_rgb
from csrseg.data.transforms import Transform, collate
from csrseg.engine.checkpoint import config_from_checkpoint, load_checkpoint, load_model_state
from csrseg.errors import CsrsegError
from csrseg.models import build_model


@dataclass
class Instance:
    """One detected instance in original-image coordinates."""

    label: int  # contiguous label
    class_name: str
    category_id: int  # the dataset's category id
    score: float
    mask: np.ndarray  # (H, W) bool
    box: tuple[float, float, float, float]  # x0, y0, x1, y1


ImageLike = str | Path | np.ndarray | Image.Image

# Network precision at inference (post-processing always runs in fp32). bf16 is the fast CPU
# path on processors with native bf16 (AVX512-BF16 / AMX); fp16 is for CUDA.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    """

    def __init__(self, weights: str | Path, device: str | None = None, score_thr: float = 0.3,
                 precision: str = "fp32") -> None:
        ckpt = load_checkpoint(weights)
        self.cfg = config_from_checkpoint(ckpt, weights)
        self.class_names: list[str] = list(ckpt.get("classes") or [str(i) for i in range(self.cfg.model.num_classes)])
        self.cat_ids: list[int] = list(ckpt.get("cat_ids") or range(1, self.cfg.model.num_classes + 1))
        self.metrics: dict[str, float] = dict(ckpt.get("metrics") or {})  # val metrics recorded with the weights
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = build_model(without_pretrained(self.cfg))  # every weight comes from the checkpoint
        load_model_state(self.model, ckpt["model"], strict=True, source=str(weights))
        # channels-last: oneDNN/cuDNN's preferred layout, 1.27x -> 1.61x Mask R-CNN's speed on our CPU
        self.model.to(self.device, memory_format=torch.channels_last).eval()
        self.transform = Transform(self.cfg.input, train=False)
        self.score_thr = score_thr
        if precision not in PRECISIONS:
            raise CsrsegError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        self.autocast_dtype = PRECISIONS[precision]

    def _sample(self, image: np.ndarray) -> dict:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        tensor, masks = self.transform(tensor, torch.zeros((0, *image.shape[:2]), dtype=torch.uint8), np.random.default_rng(0))
        return dict(image=tensor, masks=masks, orig_size=image.shape[:2], input_size=tuple(tensor.shape[-2:]))

    @torch.no_grad()
    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        arrays = [as_rgb_array(im) for im in images]
        batch, targets = collate([self._sample(a) for a in arrays], self.cfg.input.size_divisor)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            outputs = self.model(batch.to(self.device).contiguous(memory_format=torch.channels_last))
        results = self.model.postprocess(outputs, [t["input_size"] for t in targets], [t["orig_size"] for t in targets])
        return [self._instances(r) for r in results]

    def predict(self, image: ImageLike) -> list[Instance]:
        """Instances of one image, best score first."""
        return self.predict_batch([image])[0]

    def _instances(self, result: dict[str, torch.Tensor]) -> list[Instance]:
        return to_instances(result["labels"].tolist(), result["scores"].tolist(), result["masks"].cpu().numpy(),
                            result["boxes"].tolist(), self.class_names, self.cat_ids, self.score_thr)


def to_instances(labels: list[int], scores: list[float], masks: np.ndarray, boxes: list, class_names: list[str],
                 cat_ids: list[int], score_thr: float) -> list[Instance]:
    """Model outputs of one image -> :class:`Instance` list, those under ``score_thr`` left out."""
    return [
        Instance(label, class_names[label], cat_ids[label], score, mask.astype(bool), tuple(float(v) for v in box))
        for label, score, mask, box in zip(labels, scores, masks, boxes)
        if score >= score_thr
    ]


def onnx_session(path: str | Path, threads: int = 0, providers: list[str] | None = None, arena: bool = True):
    """An onnxruntime ``InferenceSession`` for a model written by ``csrseg export``: all graph
    optimisations; ``threads``: intra-op threads (0: onnxruntime's choice, one per core).

    ``arena``: onnxruntime's CPU memory arena (its default). Measured at 1333x800 (RESULTS.md,
    issue 14) the arena's peak was at or below the peak without it; without it, memory goes
    back to the system between runs instead of staying with the session.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = arena
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers or ort.get_available_providers())


class OnnxPredictor:
    """The same as :class:`Predictor`, running a model exported by ``csrseg export`` with onnxruntime."""

    def __init__(self, path: str | Path, score_thr: float = 0.3, providers: list[str] | None = None,
                 threads: int = 0) -> None:

        path = Path(path)
        if not path.is_file():
            raise CsrsegError(f"{path}: ONNX model not found")
        try:
            self.session = onnx_session(path, threads, providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CsrsegError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = {k: json.loads(v) for k, v in self.session.get_modelmeta().custom_metadata_map.items()}
        self.class_names: list[str] = meta.get("classes", [])
        self.cat_ids: list[int] = meta.get("cat_ids", list(range(1, len(self.class_names) + 1)))
        self.metadata = meta  # config, classes, cat_ids; "quantization" for an INT8 model
        self.score_thr = score_thr

    def run(self, image: ImageLike) -> dict[str, np.ndarray]:
        """The graph's outputs for one image: ``labels (n,)``, ``scores (n,)``, ``masks (n, H, W)`` bool,
        ``boxes (n, 4)``, every instance whatever its score."""
        array = as_rgb_array(image)
        outputs = self.session.run(None, {"image": np.ascontiguousarray(array.transpose(2, 0, 1))[None]})
        return dict(zip(("labels", "scores", "masks", "boxes"), outputs))

    def predict(self, image: ImageLike) -> list[Instance]:
        labels, scores, masks, boxes = self.run(image).values()
        names = self.class_names or [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
        cat_ids = self.cat_ids or list(range(1, len(names) + 1))
        return to_instances(labels.tolist(), scores.tolist(), masks, boxes.tolist(), names, cat_ids, self.score_thr)

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        return [self.predict(image) for image in images]


def expand_sources(sources: list[str]) -> list[Path]:
    """Files, folders (their images and videos, sorted) and glob patterns -> file paths, in order."""
    from csrseg.inference.video import VIDEO_SUFFIXES

    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif any(ch in source for ch in "*?["):
            paths += sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        else:
            paths.append(path)
    return paths
