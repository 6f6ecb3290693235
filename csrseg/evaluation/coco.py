"""COCO mask AP with the official evaluator (pycocotools).

:func:`predictions_to_coco` turns model outputs into a COCO results list (RLE
masks, category ids mapped back); :func:`coco_mask_ap` scores such a list against
the annotation file; :func:`score_results` scores mask and box AP, per class too
(pycocotools or faster-coco-eval, :mod:`csrseg.evaluation.backends`), and :func:`report_of` makes
the report of it.
Every image of the annotation file must be evaluated: a mismatch is an error,
never a silently smaller denominator.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torch.utils.data import DataLoader

from csrseg.evaluation.backends import CocoScores, run_cocoeval
from csrseg.masks.rle import encode_crop, encode_masks
from csrseg.inference.predictor import Predictor
from csrseg.inference.protocol import InstancePredictor
from csrseg.errors import CsrsegError

METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")


class EvaluationError(CsrsegError, RuntimeError):
    """The evaluated images do not match the annotation file."""


def predictions_to_coco(image_id: int, instances: dict[str, Tensor], cat_ids: list[int]) -> list[dict]:
    """One image's instances (``labels``, ``scores``, ``masks``, ``boxes``) -> COCO result dicts."""
    return [
        coco_record(image_id, cat_ids[label], rle, score, box)
        for label, score, rle, box in zip(instances["labels"].tolist(), instances["scores"].tolist(),
                                          encode_masks(instances["masks"]), instances["boxes"].tolist())
    ]


def instances_to_coco(image_id: int, instances: list) -> list[dict]:
    """One image's :class:`~csrseg.inference.predictor.Instance` s -> COCO result dicts."""
    return [coco_record(image_id, inst.category_id, encode_crop(inst.packed, inst.origin, inst.image_size), inst.score,
                        inst.box) for inst in instances]


def coco_record(image_id: int, category_id: int, rle: dict, score: float, box) -> dict:
    """One COCO result: ``box`` inclusive ``x0, y0, x1, y1`` becomes ``bbox`` ``[x, y, w, h]``."""
    x0, y0, x1, y1 = box
    return dict(image_id=int(image_id), category_id=int(category_id), segmentation=rle, score=round(float(score), 5),
                bbox=[round(x0, 2), round(y0, 2), round(x1 - x0 + 1, 2), round(y1 - y0 + 1, 2)])


def coco_mask_ap(ann_file: str | Path, results: list[dict], image_ids: list[int] | None = None) -> tuple[dict[str, float], str]:
    """Official COCO ``segm`` metrics (x100) and the evaluator's printed summary.

    ``image_ids``: the images that were evaluated; they must be exactly the images of
    ``ann_file`` (:class:`EvaluationError` otherwise).
    """
    with contextlib.redirect_stdout(io.StringIO()):
        gt = load_ground_truth(ann_file)
    all_ids = sorted(gt.getImgIds())
    check_image_ids(ann_file, all_ids, image_ids)
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


def check_image_ids(ann_file: str | Path, all_ids: list[int], image_ids: list[int] | None) -> None:
    """:class:`EvaluationError` unless ``image_ids`` (``None``: not checked) are exactly ``all_ids``, the file's."""
    if image_ids is not None and sorted(set(image_ids)) != all_ids:
        missing = sorted(set(all_ids) - set(image_ids))
        extra = sorted(set(image_ids) - set(all_ids))
        raise EvaluationError(
            f"{ann_file}: evaluated {len(set(image_ids))} images but the file has {len(all_ids)}"
            + (f"; missing e.g. {missing[:3]}" if missing else "")
            + (f"; unknown e.g. {extra[:3]}" if extra else "")
        )


def run_inference(predictor: Predictor, loader: DataLoader, progress: bool = False) -> tuple[list[dict], list[int]]:
    """COCO results of ``predictor`` (:meth:`~csrseg.inference.predictor.Predictor.run_batch`) over ``loader``'s
    collated batches, and the ids of the images seen."""
    from tqdm import tqdm

    from csrseg.engine.preempt import worker_batches

    results, seen = [], []
    with worker_batches(loader) as batches:
        for images, targets in tqdm(batches, desc="eval", disable=not progress, leave=False):
            instances = predictor.run_batch(images, [t["input_size"] for t in targets], [t["orig_size"] for t in targets])
            for target, inst in zip(targets, instances):
                seen.append(int(target["image_id"]))
                results.extend(predictions_to_coco(target["image_id"], inst, predictor.cat_ids))
    return results, seen


def run_image_inference(predictor, dataset, progress: bool = False) -> tuple[list[dict], list[int]]:
    """COCO results of a predictor that takes raw images (``predict(image) -> list[Instance]``: an
    :class:`~csrseg.inference.onnx_predictor.OnnxPredictor`, whose graph resizes, or a
    :class:`~csrseg.inference.tiling.TiledPredictor`, which slices) over a :class:`csrseg.data.CocoInstances`
    or a ``Subset`` of one, and the ids of the images seen."""
    from tqdm import tqdm

    base, indices = (dataset.dataset, list(dataset.indices)) if hasattr(dataset, "indices") else (dataset, range(len(dataset)))
    results, seen = [], []
    for idx in tqdm(indices, desc="eval", disable=not progress, leave=False):
        image, info = base.image(idx)
        seen.append(int(info["id"]))
        results.extend(instances_to_coco(info["id"], predictor.predict(image)))
    return results, seen


def infer_dataset(predictor: InstancePredictor, dataset, *, batch: int = 2, workers: int = 0, progress: bool = False,
                  rank: int = 0, world_size: int = 1) -> tuple[list[dict], list[int]]:
    """COCO results of ``predictor`` over this process's shard of ``dataset`` (a
    :class:`csrseg.data.CocoInstances`; image ``rank``, ``rank + world_size``, ...), and the ids of the
    images seen. A checkpoint's :class:`~csrseg.inference.predictor.Predictor` takes batches of
    ``batch`` through a loader (the dataset's transform resizes, the collate pads, as in training);
    every other predictor (an exported graph, which resizes itself; a tiled one, which slices) takes
    the images as they are, one by one."""
    from functools import partial

    from torch.utils.data import DistributedSampler, Subset

    from csrseg.data import collate
    from csrseg.engine.preempt import ignore_in_worker

    if isinstance(predictor, Predictor):
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=False)
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                            collate_fn=partial(collate, size_divisor=predictor.cfg.input.size_divisor),
                            worker_init_fn=ignore_in_worker)
        return run_inference(predictor, loader, progress)
    shard = Subset(dataset, range(rank, len(dataset), world_size)) if world_size > 1 else dataset
    return run_image_inference(predictor, shard, progress)


def format_table(metrics: dict[str, float]) -> str:
    """Markdown table of the six COCO mask metrics."""
    head = "| " + " | ".join(METRICS) + " |"
    rule = "|" + "---|" * len(METRICS)
    row = "| " + " | ".join(f"{metrics[m]:.1f}" for m in METRICS) + " |"
    return "\n".join([head, rule, row])


def load_ground_truth(ann_file: str | Path) -> COCO:
    """The annotation file as pycocotools' ``COCO``. COCO files need no ``info`` block (ours, and
    many converters', have none), but pycocotools 2.0.10's ``loadRes`` copies it and fails with
    ``KeyError: 'info'`` without one: give it an empty one."""
    gt = COCO(str(ann_file))
    gt.dataset.setdefault("info", {})
    return gt


def write_results(results: list[dict], path: str | Path) -> Path:
    """COCO results JSON (the format the COCO test-dev server takes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(path)
    return path


def _class_ap(precision: np.ndarray, k: int, iou_index: slice | int) -> float | None:
    """Mean of COCOeval's ``precision[T, R, K, A, M]`` for class ``k``, all areas, 100 detections
    (x100); ``None`` for a class without ground truth (every entry -1)."""
    values = precision[iou_index, :, k, 0, -1]
    values = values[values > -1]
    return float(values.mean()) * 100 if values.size else None


def boxes_from_masks(results: list[dict]) -> list[dict]:
    """The same detections with ``bbox`` taken from each RLE mask (``[x, y, w, h]``), for box AP."""
    out = []
    for r in results:
        rle = dict(size=r["segmentation"]["size"], counts=r["segmentation"]["counts"].encode("ascii"))
        out.append(dict(r, bbox=[float(v) for v in mask_utils.toBbox(rle)]))
    return out


@dataclass(frozen=True)
class Scored:
    """What one evaluation scored, for the report and the pictures (:mod:`csrseg.evaluation.pictures`).

    ``dataset``: the annotation file's dict (ground-truth boxes filled in from masks where missing);
    ``results``: the COCO results scored; ``mask``/``box``: the two COCOeval runs (on no results,
    zeros where a class has ground truth, as COCOeval would give); ``counts``: non-crowd instances
    per category id; ``names``: class name per category id; ``evaluator``: which library scored.
    """

    dataset: dict
    results: list[dict]
    mask: CocoScores
    box: CocoScores
    counts: dict[int, int]
    names: dict[int, str]
    evaluator: str


def score_results(ann_file: str | Path, results: list[dict], image_ids: list[int],
                  class_names: dict[int, str] | None = None, *, evaluator: str = "pycocotools") -> Scored:
    """Mask and box COCOeval (boxes from the masks) of ``results`` on ``ann_file``; ``image_ids`` must be
    its images (:class:`EvaluationError` otherwise); ``evaluator``: ``pycocotools`` or ``faster``."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = load_ground_truth(ann_file)
    check_image_ids(ann_file, sorted(gt.getImgIds()), image_ids)
    for ann in gt.dataset["annotations"]:  # box AP needs ground-truth boxes; derive missing ones from masks
        if not ann.get("bbox"):
            ann["bbox"] = [float(v) for v in mask_utils.toBbox(gt.annToRLE(ann))]
    counts = {c: len(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in gt.getCatIds()}
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]} | (class_names or {})
    if results:
        mask = run_cocoeval(gt.dataset, results, "segm", evaluator=evaluator)
        box = run_cocoeval(gt.dataset, boxes_from_masks(results), "bbox", evaluator=evaluator)
    else:
        mask = box = _nothing_found(sorted(gt.getCatIds()), counts)
    return Scored(gt.dataset, results, mask, box, counts, names, evaluator)


def _nothing_found(cat_ids: list[int], counts: dict[int, int]) -> CocoScores:
    """What COCOeval gives for no detections: precision 0 for classes with ground truth, -1 without."""
    precision = np.full((10, 101, len(cat_ids), 4, 3), -1.0)
    for k, cat in enumerate(cat_ids):
        if counts.get(cat, 0):
            precision[:, :, k] = 0.0
    return CocoScores(np.zeros(12), precision, cat_ids)


def _stats_metrics(stats: np.ndarray) -> dict[str, float]:
    """COCOeval's ``stats`` as the six metrics (x100, COCOeval's -1 for "no ground truth" as 0)."""
    return dict(zip(METRICS, [max(float(v), 0.0) * 100 for v in stats[:6]]))


def report_of(scored: Scored) -> dict:
    """Mask and box AP, overall and per class, as a JSON-ready dict.

    ``{"mask": {AP, AP50, ..., AR100}, "box": {...}, "classes": [{category_id, name, instances,
    mask_AP, mask_AP50, box_AP}, ...], "evaluator": ...}``; a class without ground truth has ``None`` APs.
    """
    mask = _stats_metrics(scored.mask.stats) | {"AR100": max(float(scored.mask.stats[8]), 0.0) * 100}
    report: dict = dict(mask=mask, box=_stats_metrics(scored.box.stats), classes=[], evaluator=scored.evaluator)
    for k, cat in enumerate(scored.mask.cat_ids):
        if scored.counts.get(cat, 0) == 0:
            continue  # declared but never annotated (e.g. a Roboflow parent category)
        report["classes"].append(dict(
            category_id=int(cat), name=str(scored.names.get(cat, cat)), instances=scored.counts[cat],
            mask_AP=_class_ap(scored.mask.precision, k, slice(None)), mask_AP50=_class_ap(scored.mask.precision, k, 0),
            box_AP=_class_ap(scored.box.precision, k, slice(None))))
    return report


def detailed_metrics(ann_file: str | Path, results: list[dict], image_ids: list[int],
                     class_names: dict[int, str] | None = None, *, evaluator: str = "pycocotools") -> dict:
    """:func:`report_of` :func:`score_results`: mask and box AP, overall and per class, as a JSON-ready dict."""
    return report_of(score_results(ann_file, results, image_ids, class_names, evaluator=evaluator))


def format_detailed(report: dict) -> str:
    """Markdown: mask and box rows of the six COCO metrics, then one row per class."""
    lines = ["| | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for kind in ("mask", "box"):
        lines.append(f"| {kind} | " + " | ".join(f"{report[kind][m]:.1f}" for m in METRICS) + " |")
    lines += ["", "| class | instances | mask AP | mask AP50 | box AP |", "|---|---|---|---|---|"]
    for row in report["classes"]:
        values = [f"{row[k]:.1f}" if row[k] is not None else "-" for k in ("mask_AP", "mask_AP50", "box_AP")]
        name = row["name"].replace("|", "\\|")
        lines.append(f"| {name} | {row['instances']} | " + " | ".join(values) + " |")
    return "\n".join(lines)
