"""What every predictor offers, whichever model it runs: the protocol the verbs, tiling, evaluation and
the server program against.

Four classes implement it: :class:`~csrseg.inference.predictor.Predictor` (a checkpoint, in torch),
:class:`~csrseg.inference.onnx_predictor.OnnxPredictor` and
:class:`~csrseg.inference.openvino_predictor.OpenVinoPredictor` (an exported graph) and
:class:`~csrseg.inference.tiling.TiledPredictor` (any of them, tile by tile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from csrseg.data.transforms import InputConfig
    from csrseg.inference.predictor import BelowThreshold, ImageLike, Instance


@runtime_checkable
class InstancePredictor(Protocol):
    """``predict(image)``: the instances of one image (a path, a PIL image or an ``(H, W, 3)`` uint8 RGB
    array) scoring at least ``score_thr``, best first, masks at the image's size; ``predict_batch`` of
    several. ``class_names``/``cat_ids``: index ``label`` -> name and COCO category id. ``below``
    counts the instances left under the threshold. ``input_config``: the input settings the model
    was trained with (its size, mean, and the crop a crop-trained model predicts in), ``None`` for a
    graph that did not record them."""

    class_names: list[str]
    cat_ids: list[int]
    score_thr: float
    below: BelowThreshold
    input_config: InputConfig | None

    def predict(self, image: ImageLike) -> list[Instance]: ...

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]: ...
