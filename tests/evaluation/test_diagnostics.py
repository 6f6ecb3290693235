import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from csrseg.config import load_config
from csrseg.data.splits import training_splits
from csrseg.data.sources import resolve_dataset
from csrseg.evaluation.diagnostics import (class_agnostic_ap, dedupe_masks, instance_stats, kernel_stats,
                                           probe_accuracy, _duplicate_share, _coco_mask_ap)
from csrseg.models import build_model


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=rle["size"], counts=rle["counts"].decode())


def _square(x0: int, y0: int, size: int = 10, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def _gt(objects: list[tuple[int, int, np.ndarray]]) -> dict:
    """(image id, category id, mask) -> a COCO annotation dict."""
    images = sorted({i for i, _, _ in objects})
    anns = []
    for k, (image_id, cat, mask) in enumerate(objects):
        anns.append(dict(id=k + 1, image_id=image_id, category_id=cat, segmentation=_rle(mask), area=int(mask.sum()),
                         bbox=list(mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))),
                         iscrowd=0))
    return dict(images=[dict(id=i, width=40, height=40, file_name=f"{i}.png") for i in images], annotations=anns,
                categories=[dict(id=c, name=f"c{c}") for c in (1, 2, 3, 4)])


def test_identical_masks_of_one_image_count_once():
    a, b = _rle(_square(0, 0)), _rle(_square(20, 20))
    rows = [dict(image_id=1, category_id=c, segmentation=a, score=s) for c, s in ((1, 0.5), (2, 0.9), (3, 0.7))]
    rows += [dict(image_id=1, category_id=1, segmentation=b, score=0.2), dict(image_id=2, category_id=1, segmentation=a, score=0.1)]
    kept = dedupe_masks(rows)
    assert sorted((r["image_id"], r["score"]) for r in kept) == [(1, 0.2), (1, 0.9), (2, 0.1)]


def test_class_agnostic_ap_is_not_dragged_down_by_one_proposal_entering_per_class():
    # one object per image; image 1's proposal enters with all four classes at scores above image 2's hit
    m1, m2 = _square(0, 0), _square(15, 15)
    gt = _gt([(1, 1, m1), (2, 2, m2)])
    rows = [dict(image_id=1, category_id=c, segmentation=_rle(m1), score=0.9 - 0.05 * c) for c in (1, 2, 3, 4)]
    rows.append(dict(image_id=2, category_id=2, segmentation=_rle(m2), score=0.5))
    merged = [dict(r, category_id=1) for r in rows]
    gt_merged = dict(gt, categories=[dict(id=1, name="object")],
                     annotations=[dict(a, category_id=1) for a in gt["annotations"]])
    assert _coco_mask_ap(gt_merged, merged) < 90  # without deduplication: three false positives rank above a hit
    assert class_agnostic_ap(gt, rows) == pytest.approx(100.0)


def test_instance_stats_count_hits_and_their_classes():
    m1, m2, m3 = _square(0, 0), _square(20, 0), _square(0, 20)
    gt = _gt([(1, 1, m1), (1, 2, m2), (1, 3, m3)])
    rows = [dict(image_id=1, category_id=1, segmentation=_rle(m1), score=0.8),  # hit, right class
            dict(image_id=1, category_id=4, segmentation=_rle(m2), score=0.6),  # hit, wrong class on top ...
            dict(image_id=1, category_id=2, segmentation=_rle(m2), score=0.3),  # ... of the right one
            dict(image_id=1, category_id=3, segmentation=_rle(_square(4, 24, 3)), score=0.9)]  # misses m3 (IoU 0.09)
    stats = instance_stats(gt, rows)
    assert stats["hit_share"] == pytest.approx(2 / 3)
    assert stats["class_right"] == pytest.approx(1 / 2)
    assert stats["top_score"] == pytest.approx(0.9)
    assert stats["best_iou"] == pytest.approx((1 + 1 + 9 / 100) / 3)


def test_duplicate_share_counts_masks_with_a_near_twin():
    base = torch.zeros(4, 100)
    base[0, :20] = 1
    base[1, :20] = 1
    base[1, 20] = 1  # IoU 20/21 = 0.95 with mask 0
    base[2, 50:60] = 1  # alone
    # mask 3 empty: nobody's duplicate
    assert _duplicate_share(base) == pytest.approx(0.5)


def test_probe_reads_separable_classes_and_nothing_from_constant_features():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=gen) * 4
    labels = torch.arange(200) % 4
    feats = centres[labels] + torch.randn(200, 8, generator=gen)
    assert probe_accuracy(feats[:100], labels[:100], feats[100:], labels[100:], 4) > 0.95
    # features that say nothing: the probe can only name the commonest train class
    skewed = torch.tensor([0] * 60 + [1] * 40)
    constant = torch.ones(100, 8)
    assert probe_accuracy(constant, skewed, constant, skewed, 4) == pytest.approx(0.6)


@pytest.mark.slow
def test_kernel_stats_of_a_knet_head_are_shares(synth_root):
    cfg = load_config("demo", ["model.head.type=knet", "model.backbone.depth=18", "model.neck.channels=32",
                               "model.neck.csr_channels=32", "model.neck.num_groups=8", "model.head.ffn_channels=64",
                               "model.head.num_proposals=16", "input.short_side=128", "input.max_size=128"])
    train_set, val_set = training_splits(resolve_dataset(synth_root), cfg.input, 0)
    model = build_model(cfg)
    stats = kernel_stats(model, train_set, val_set, len(train_set.cat_ids), images=6, batch=3)
    assert set(stats) == {"probe_neck", "probe_kernel", "probe_chance", "empty_pool", "duplicates"}
    assert all(0.0 <= v <= 1.0 for v in stats.values()), stats
    assert not model.training  # left in eval mode, as documented
    solo = build_model(load_config("demo", ["model.backbone.depth=18"]))
    assert kernel_stats(solo, train_set, val_set, 4) == {}  # no kernels to diagnose
