"""COCO mask AP with the official evaluator (pycocotools).

:func:`predictions_to_coco` turns model outputs into a COCO results list (RLE
masks, category ids mapped back); :func:`coco_mask_ap` scores such a list against
the annotation file; :func:`evaluate` runs a model over a dataset and does both.
Every image of the annotation file must be evaluated: a mismatch is an error,
never a silently smaller denominator.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torch.utils.data import DataLoader

from csrseg.errors import CsrsegError

METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")


class EvaluationError(CsrsegError, RuntimeError):
    """The evaluated images do not match the annotation file."""


def encode_mask(mask: np.ndarray | Tensor) -> dict:
    """``(H, W)`` bool -> COCO compressed RLE with a JSON-ready string ``counts``."""
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii"))


def predictions_to_coco(image_id: int, instances: dict[str, Tensor], cat_ids: list[int]) -> list[dict]:
    """One image's instances (``labels``, ``scores``, ``masks``, ``boxes``) -> COCO result dicts."""
    results = []
    for label, score, mask, box in zip(
        instances["labels"].tolist(), instances["scores"].tolist(), instances["masks"], instances["boxes"].tolist()
    ):
        x0, y0, x1, y1 = box
        results.append(
            dict(
                image_id=int(image_id),
                category_id=int(cat_ids[label]),
                segmentation=encode_mask(mask),
                score=round(float(score), 5),
                bbox=[round(x0, 2), round(y0, 2), round(x1 - x0 + 1, 2), round(y1 - y0 + 1, 2)],
            )
        )
    return results


def coco_mask_ap(ann_file: str | Path, results: list[dict], image_ids: list[int] | None = None) -> tuple[dict[str, float], str]:
    """Official COCO ``segm`` metrics (x100) and the evaluator's printed summary.

    ``image_ids``: the images that were evaluated; they must be exactly the images of
    ``ann_file`` (:class:`EvaluationError` otherwise).
    """
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    all_ids = sorted(gt.getImgIds())
    if image_ids is not None and sorted(set(image_ids)) != all_ids:
        missing = sorted(set(all_ids) - set(image_ids))
        extra = sorted(set(image_ids) - set(all_ids))
        raise EvaluationError(
            f"{ann_file}: evaluated {len(set(image_ids))} images but the file has {len(all_ids)}"
            + (f"; missing e.g. {missing[:3]}" if missing else "")
            + (f"; unknown e.g. {extra[:3]}" if extra else "")
        )
    if not results:
        return {m: 0.0 for m in METRICS}, "no detections: every metric is 0\n"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "segm")
        evaluator.params.imgIds = all_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(float(v), 0.0) * 100 for v in evaluator.stats[:6]]
    metrics = dict(zip(METRICS, stats))
    metrics["AR100"] = max(float(evaluator.stats[8]), 0.0) * 100
    return metrics, buffer.getvalue()


@torch.no_grad()
def run_inference(model: torch.nn.Module, loader: DataLoader, cat_ids: list[int], device: torch.device,
                  amp: bool = False, progress: bool = False) -> tuple[list[dict], list[int]]:
    """COCO results of ``model`` over ``loader`` and the ids of the images seen."""
    from tqdm import tqdm

    model.eval()
    results, seen = [], []
    for images, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            outputs = model(images)
        instances = model.postprocess(outputs, [t["input_size"] for t in targets], [t["orig_size"] for t in targets])
        for target, inst in zip(targets, instances):
            seen.append(int(target["image_id"]))
            results.extend(predictions_to_coco(target["image_id"], inst, cat_ids))
    return results, seen


def format_table(metrics: dict[str, float]) -> str:
    """Markdown table of the six COCO mask metrics."""
    head = "| " + " | ".join(METRICS) + " |"
    rule = "|" + "---|" * len(METRICS)
    row = "| " + " | ".join(f"{metrics[m]:.1f}" for m in METRICS) + " |"
    return "\n".join([head, rule, row])


def write_results(results: list[dict], path: str | Path) -> Path:
    """COCO results JSON (the format the COCO test-dev server takes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(path)
    return path
