"""Why a model scores what it scores: statistics of its results and of its K-Net head, beside the AP.

Two families, both for comparing runs of one recipe (``csrseg ablate`` puts them in its report):

- :func:`instance_stats`, from a COCO results list and its annotations: the class-agnostic mask AP
  (every class merged, *identical masks of one image counted once*: K-Net's top 100 is taken over
  (proposal, class) pairs, so a proposal with flat class scores enters up to K times with one mask,
  which would turn one hit into one true positive and K - 1 false positives), the mean best mask IoU
  per object, the share of objects hit (IoU > 0.5), how often the top-scored hit names the object's
  class, and the top score. Masks against classes: which of the two a change moves.
- :func:`kernel_stats`, from a K-Net-head model and two datasets: a linear probe of how much class
  information the features hold (features averaged under each ground-truth mask, a logistic regression
  fitted on train objects and scored on val objects), the share of matched proposals whose binary mask
  pools nothing (their kernels learn from no pixel), and the share of initial masks that nearly
  duplicate another (static kernels that only detect appearance fire on the same pixels).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor, nn

from csrseg.data import collate
from csrseg.models.heads.knet.loss import stride4_targets

HIT_IOU = 0.5  # an object is hit by a prediction whose mask IoU with it exceeds this
DUPLICATE_IOU = 0.9  # two initial binary masks this close are near-duplicates


def dedupe_masks(results: list[dict]) -> list[dict]:
    """``results`` with, per image, only the highest-scored of the rows holding the same mask."""
    best: dict[tuple, dict] = {}
    for r in results:
        seg = r["segmentation"]
        key = (r["image_id"], tuple(seg["size"]), seg["counts"] if isinstance(seg["counts"], str) else bytes(seg["counts"]))
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = r
    return list(best.values())


def _coco_mask_ap(gt: dict, results: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return 100.0 * float(evaluation.stats[0])


def class_agnostic_ap(gt: dict, results: list[dict]) -> float:
    """Mask AP (0-100) with every category merged into one, identical masks of an image counted once."""
    gt = copy.deepcopy(gt)
    gt["categories"] = [dict(id=1, name="object")]
    for ann in gt["annotations"]:
        ann["category_id"] = 1
    return _coco_mask_ap(gt, [dict(r, category_id=1) for r in dedupe_masks(results)])


def _gt_rle(ann: dict, height: int, width: int) -> dict:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    return mask_utils.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg


def instance_stats(gt: dict, results: list[dict]) -> dict[str, float]:
    """Statistics of COCO ``results`` against the annotation dict ``gt`` (module docstring):
    ``class_agnostic_ap``, ``best_iou``, ``hit_share``, ``class_right``, ``top_score``."""
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    images = {im["id"]: im for im in gt["images"]}
    best, hit, right = [], 0, 0
    for ann in gt["annotations"]:
        if ann.get("iscrowd"):
            continue
        image = images[ann["image_id"]]
        preds = by_image.get(ann["image_id"], [])
        if not preds:
            best.append(0.0)
            continue
        rles = [dict(p["segmentation"], counts=p["segmentation"]["counts"].encode())
                if isinstance(p["segmentation"]["counts"], str) else p["segmentation"] for p in preds]
        ious = mask_utils.iou(rles, [_gt_rle(ann, image["height"], image["width"])], [0])[:, 0]
        best.append(float(ious.max()))
        hits = np.flatnonzero(ious > HIT_IOU)
        if len(hits):
            hit += 1
            top = hits[np.argmax([preds[i]["score"] for i in hits])]
            right += int(preds[top]["category_id"] == ann["category_id"])
    return dict(class_agnostic_ap=class_agnostic_ap(gt, results), best_iou=float(np.mean(best)) if best else 0.0,
                hit_share=hit / max(len(best), 1), class_right=right / max(hit, 1),
                top_score=max((r["score"] for r in results), default=0.0))


# ---------------------------------------------------------------- the K-Net head's kernels


def _pooled_means(feats: Tensor, gt_masks: Tensor) -> Tensor:
    """``(C, h, w)`` features and ``(G, H, W)`` binary masks at the padded input -> ``(G', C)`` means of
    the features weighted by each mask's coverage at the features' stride (masks covering nothing dropped)."""
    stride = gt_masks.shape[-1] // feats.shape[-1]
    cover = F.avg_pool2d(gt_masks[:, None].float(), stride)[:, 0].flatten(1)  # (G, hw)
    weight = cover.sum(1)
    keep = weight > 0
    return (cover[keep] @ feats.flatten(1).T.float()) / weight[keep, None]


def _duplicate_share(binary: Tensor) -> float:
    """Share of the ``(N, hw)`` binary masks that have a near-duplicate (IoU >= DUPLICATE_IOU) among the
    others; empty masks are nobody's duplicate."""
    inter = binary @ binary.T
    area = binary.sum(1)
    union = area[:, None] + area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    iou.fill_diagonal_(0)
    return float((iou >= DUPLICATE_IOU).any(1).float().mean())


@torch.no_grad()
def _collect(model: nn.Module, dataset, images: int, batch: int, size_divisor: int, device: torch.device) -> dict:
    """Per-object pooled features and labels, and per-proposal pooling statistics, over ``images`` images."""
    head = model.head
    thr = head.cfg.hard_mask_thr
    out: dict[str, list] = dict(neck=[], kernel=[], labels=[], empty=[], duplicate=[])
    count = min(images, len(dataset))
    for start in range(0, count, batch):
        imgs, targets = collate([dataset[i] for i in range(start, min(start + batch, count))], size_divisor)
        neck = model.neck(model.backbone(imgs.to(device)))
        feats, masks, _ = head.kernel_head(neck)
        labels = [t["labels"].to(device) for t in targets]
        gts = [t["masks"].to(device) for t in targets]
        up = F.interpolate(masks.float(), scale_factor=2.0, mode="bilinear", align_corners=False)
        matches = head.criterion._match(None, up, labels, [stride4_targets(g) for g in gts])
        for b, (props, _) in enumerate(matches):
            binary = (masks[b].float().sigmoid() > thr).flatten(1).float()  # (N, hw)
            out["duplicate"].append(_duplicate_share(binary))
            out["empty"].extend((binary[props].sum(1) == 0).tolist())
            if len(gts[b]):
                keep = gts[b].flatten(1).amax(1) > 0
                cover = F.avg_pool2d(gts[b][keep][:, None].float(), 8)[:, 0].flatten(1).sum(1) > 0
                out["labels"].append(labels[b][keep][cover].cpu())
                out["neck"].append(_pooled_means(neck.features[b], gts[b][keep]).cpu())
                out["kernel"].append(_pooled_means(feats[b], gts[b][keep]).cpu())
    return out


def probe_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, num_classes: int,
                   weight_decay: float = 1e-3, steps: int = 200) -> float:
    """Val accuracy of a multinomial logistic regression fitted on ``(n, C)`` train features (standardised
    with the train statistics; L-BFGS, L2 ``weight_decay``, a fixed number of steps: deterministic)."""
    if len(train_y) == 0 or len(val_y) == 0:
        return 0.0
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xt, xv = ((train_x - mean) / std).double(), ((val_x - mean) / std).double()
    linear = nn.Linear(xt.shape[1], num_classes).double()
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(xt), train_y) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float((linear(xv).argmax(1) == val_y).double().mean())


def kernel_stats(model: nn.Module, train_set, val_set, num_classes: int, images: int = 200, batch: int = 8,
                 size_divisor: int = 32) -> dict[str, float]:
    """The K-Net head's diagnostics (module docstring) on the first ``images`` images of each set:
    ``probe_neck`` / ``probe_kernel`` (val accuracy of the linear class probe on the neck's feature and on
    the head's pooled feature), ``probe_chance`` (the val share of its commonest class), ``empty_pool``
    (share of matched initial proposals whose binary mask is empty) and ``duplicates`` (share of
    initial masks with a near-duplicate). ``model`` is put in eval mode and left so."""
    if not hasattr(model.head, "kernel_head"):
        return {}
    model.eval()
    device = next(model.parameters()).device
    train = _collect(model, train_set, images, batch, size_divisor, device)
    val = _collect(model, val_set, images, batch, size_divisor, device)
    val_y = torch.cat(val["labels"]) if val["labels"] else torch.zeros(0, dtype=torch.long)
    train_y = torch.cat(train["labels"]) if train["labels"] else torch.zeros(0, dtype=torch.long)
    stats = {}
    for name in ("neck", "kernel"):
        stats[f"probe_{name}"] = probe_accuracy(torch.cat(train[name]), train_y, torch.cat(val[name]), val_y,
                                                num_classes) if len(train_y) and len(val_y) else 0.0
    stats["probe_chance"] = float(torch.bincount(val_y).max() / len(val_y)) if len(val_y) else 0.0
    empty = train["empty"] + val["empty"]
    stats["empty_pool"] = float(np.mean(empty)) if empty else 0.0
    dups: Sequence[float] = train["duplicate"] + val["duplicate"]
    stats["duplicates"] = float(np.mean(dups)) if dups else 0.0
    return stats
