"""What the predictors of an exported pipeline share, whichever runtime runs the graph.

The graph (:mod:`csrseg.deploy.onnx`) takes one original image ``(1, 3, H, W)`` uint8 RGB and
returns ``labels (n,)``, ``scores (n,)``, ``masks (n, H, W)`` bool and ``boxes (n, 4)`` at that
size; its metadata carries the classes, the category ids and the config. A runtime's predictor
implements :meth:`ExportedPredictor.run`; everything after it is written once, here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csrseg.config.fields import from_dict
from csrseg.data.transforms import InputConfig
from csrseg.errors import ConfigError
from csrseg.inference.predictor import BelowThreshold, ImageLike, Instance, as_rgb_array, RawInstances, crops_of, to_instances

OUTPUTS = ("labels", "scores", "masks", "boxes")


def recorded_input(metadata: dict) -> InputConfig | None:
    """The input settings a graph's metadata records (its config's ``input``), or ``None`` where it
    records none or ones this csrseg cannot read (a graph of another version predicts all the same:
    only tiling defaults read them)."""
    recorded = (metadata.get("config") or {}).get("input")
    if not isinstance(recorded, dict):
        return None
    known = {f.name for f in dataclasses.fields(InputConfig)}
    try:
        return from_dict(InputConfig, {k: v for k, v in recorded.items() if k in known}, "the graph's input config")
    except ConfigError:
        return None


class ExportedPredictor:
    """The :class:`~csrseg.inference.protocol.InstancePredictor` protocol around a graph's :meth:`run`.

    ``metadata``: the graph's own (``config``, ``classes``, ``cat_ids``; ``quantization`` for INT8).
    """

    def __init__(self, metadata: dict, score_thr: float) -> None:
        self.metadata = metadata
        self.class_names: list[str] = list(metadata.get("classes", []))
        self.cat_ids: list[int] = list(metadata.get("cat_ids", range(1, len(self.class_names) + 1)))
        self.score_thr = score_thr
        self.below = BelowThreshold()
        self.input_config = recorded_input(metadata)

    def run_graph(self, image: np.ndarray) -> list[np.ndarray]:
        """The runtime's outputs, in :data:`OUTPUTS` order, for ``image`` ``(1, 3, H, W)`` uint8."""
        raise NotImplementedError

    def run(self, image: ImageLike) -> dict[str, np.ndarray]:
        """The graph's outputs for one image: ``labels (n,)``, ``scores (n,)``, ``masks (n, H, W)`` bool,
        ``boxes (n, 4)``, every instance whatever its score."""
        array = as_rgb_array(image)
        return dict(zip(OUTPUTS, self.run_graph(np.ascontiguousarray(array.transpose(2, 0, 1))[None])))

    def predict(self, image: ImageLike) -> list[Instance]:
        labels, scores, masks, boxes = self.run(image).values()
        names = self.class_names or [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
        cat_ids = self.cat_ids or list(range(1, len(names) + 1))
        boxes = boxes.tolist()
        raw = RawInstances(labels.tolist(), scores.tolist(), crops_of(masks, boxes), boxes, masks.shape[1:])
        return to_instances(raw, class_names=names, cat_ids=cat_ids, score_thr=self.score_thr, below=self.below)

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        return [self.predict(image) for image in images]
