"""What ``POST /predict`` answers, as JSON-ready dicts, and its overlay as PNG bytes.

``{"width": W, "height": H, "score_thr": t, "instances": [{"class_id", "category_id", "class_name",
"score", "box": [x0, y0, x1, y1], "mask": {"size": [H, W], "counts": "..."}}]}``: boxes in the image's
pixels, inclusive and tight around the mask; masks as COCO compressed RLE at the image's size, the
``counts`` a string (``pycocotools.mask.decode`` reads it back once encoded to bytes).
"""

from __future__ import annotations

import io

import numpy as np

from csrseg.inference.predictor import Instance
from csrseg.masks.rle import encode_crop
from csrseg.inference.visualize import draw_predictions


def instance_json(instance: Instance) -> dict:
    """One instance as the response holds it; its mask encoded from its crop (never the full mask)."""
    return dict(class_id=int(instance.label), category_id=int(instance.category_id), class_name=instance.class_name,
                score=round(float(instance.score), 5), box=[round(float(v), 2) for v in instance.box],
                mask=encode_crop(instance.packed, instance.origin, instance.image_size))


def prediction_json(image: np.ndarray, instances: list[Instance], score_thr: float) -> dict:
    """The response to one image ``(H, W, 3)``: its size and its instances, best score first."""
    height, width = image.shape[:2]
    return dict(width=int(width), height=int(height), score_thr=score_thr,
                instances=[instance_json(i) for i in instances])


def overlay_png(image: np.ndarray, instances: list[Instance], class_names: list[str]) -> bytes:
    """The overlay ``csrseg predict`` draws (colour, contour, class and score per instance), as PNG."""
    buffer = io.BytesIO()
    draw_predictions(image, instances, class_names).save(buffer, format="PNG")
    return buffer.getvalue()
