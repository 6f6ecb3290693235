"""Predictions kept as mask crops give what full-size masks gave: the same RLE rows, boxes, scores,
labels and overlays, at the cost of the instances' boxes instead of the frame times the instances.

The references are the full-size forms: ``drop_empty(upsample_masks(...))`` for the masks (what eager
inference did, and the ONNX export still traces), pycocotools' encoding of each full-size mask, and
the overlay drawn on one float canvas of the whole image (``reference_overlay``, the former drawing).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from csrseg.config import to_dict
from csrseg.data.transforms import collate
from csrseg.engine.checkpoint import atomic_save
from csrseg.evaluation.coco import predictions_to_coco
from csrseg.inference import visualize
from csrseg.inference.predictor import Instance, Predictor
from csrseg.masks.rle import encode_crop, encode_mask
from csrseg.inference.records import instance_records
from csrseg.inference.visualize import draw_instances, draw_labels, draw_predictions, instance_colour, mask_contour
from csrseg.models import build_model
from csrseg.models.heads import common, paste
from csrseg.models.heads.knet import postprocess as knet_postprocess
from csrseg.models.heads.solov2 import postprocess as solov2_postprocess
from tests.conftest import CLASSES, fake_checkpoint
from tests.models.heads.test_knet import knet_tiny


def reference_overlay(image, masks, labels, scores, class_names, alpha=0.45) -> Image.Image:
    """The overlay drawn on a float copy of the whole image, each full-size mask in turn."""
    canvas = image.astype(np.float32).copy()
    anchors = []
    for i, mask in enumerate(masks):
        mask = mask.astype(bool)
        if not mask.any():
            continue
        colour = np.array(instance_colour(i), dtype=np.float32)
        canvas[mask] = canvas[mask] * (1 - alpha) + colour * alpha
        canvas[mask_contour(mask)] = colour
        ys, xs = np.nonzero(mask)
        anchors.append((int(xs.min()), int(ys.min()), i))
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw_labels(out, anchors, labels, scores, class_names)  # the tags are not what changed
    return out


def crop_of(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A full-size mask -> its tight crop and the crop's top-left ``(x0, y0)``."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return np.zeros((0, 0), bool), (0, 0)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (int(xs.min()), int(ys.min()))


def random_masks(rng, n: int, height: int, width: int) -> np.ndarray:
    """Overlapping ``(n, H, W)`` masks: rectangles of holes, full-height ones whose runs go on from one
    column to the next, single pixels, an empty one, one covering the whole image."""
    masks = np.zeros((n, height, width), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = rng.integers(y0, height), rng.integers(x0, width)
        if i % 4 == 1:
            y0, y1 = 0, height - 1
        masks[i, y0 : y1 + 1, x0 : x1 + 1] = rng.random((y1 - y0 + 1, x1 - x0 + 1)) < 0.85
    masks[n - 3] = False
    masks[n - 2] = False
    masks[n - 2, rng.integers(0, height), rng.integers(0, width)] = True
    masks[n - 1] = True
    return masks


def test_rle_of_a_crop_is_the_rle_of_its_full_size_mask():
    rng = np.random.default_rng(0)
    for height, width in [(1, 1), (1, 9), (7, 1), (23, 31), (64, 48)]:
        for mask in random_masks(rng, 8, height, width):
            crop, origin = crop_of(mask)
            assert encode_crop(crop, origin, (height, width)) == encode_mask(mask)


@pytest.mark.parametrize("band_pixels", [visualize.BAND_PIXELS, 100])
def test_overlay_from_crops_is_the_full_size_overlay(monkeypatch, band_pixels):
    monkeypatch.setattr(visualize, "BAND_PIXELS", band_pixels)  # 100: a band of rows or two at a time
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    masks = random_masks(rng, 9, 61, 83)
    labels, scores = [int(v) for v in rng.integers(0, 4, 9)], [float(v) for v in rng.random(9)]
    want = np.asarray(reference_overlay(image, masks, labels, scores, CLASSES))
    crops, origins = zip(*(crop_of(m) for m in masks))
    assert np.array_equal(np.asarray(draw_instances(image, crops, labels, scores, CLASSES, origins=origins)), want)
    assert np.array_equal(np.asarray(draw_instances(image, masks, labels, scores, CLASSES)), want)


def test_an_instances_full_size_mask_is_built_from_its_crop():
    crop = np.array([[1, 0, 1], [1, 1, 0]], bool)
    inst = Instance(0, "a", 1, 0.9, crop, (4.0, 2.0, 6.0, 3.0), (5, 8))
    want = np.zeros((5, 8), bool)
    want[2:4, 4:7] = crop
    assert np.array_equal(inst.mask, want) and inst.origin == (4, 2)


def full_size_instances(labels, scores, soft, stride, input_size, orig_size, threshold) -> dict:
    """What eager post-processing did before masks were pasted within their boxes."""
    masks = common.upsample_masks(soft, stride, input_size, orig_size, threshold)
    return common.drop_empty(dict(labels=labels, scores=scores, masks=masks))


def reference_rows(predictor: Predictor, image: np.ndarray, monkeypatch) -> tuple[list[dict], dict]:
    """Result rows and the raw result of ``image`` through the full-size path."""
    with monkeypatch.context() as patch:
        patch.setattr(knet_postprocess, "paste_instances", full_size_instances)
        patch.setattr(solov2_postprocess, "paste_instances", full_size_instances)
        result = run(predictor, image)
    rows = []
    for label, score, mask, (x0, y0, x1, y1) in zip(result["labels"].tolist(), result["scores"].tolist(),
                                                   result["masks"].numpy(), result["boxes"].tolist()):
        rows.append(dict(file_name="x.jpg", category_id=predictor.cat_ids[label], category=predictor.class_names[label],
                         score=round(score, 5), bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1], segmentation=encode_mask(mask)))
    return rows, result


def knet_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = knet_tiny()
    path = tmp_path / "knet.pt"
    atomic_save(dict(model=build_model(cfg).state_dict(), config=to_dict(cfg), classes=CLASSES, cat_ids=[1, 2, 3, 4]), path)
    return path


def run(predictor: Predictor, image: np.ndarray) -> dict:
    """``predictor.run_batch`` on ``image`` alone: its raw result."""
    batch, targets = collate([predictor._sample(image)], predictor.cfg.input.size_divisor)
    (result,) = predictor.run_batch(batch, [targets[0]["input_size"]], [targets[0]["orig_size"]])
    return result


@pytest.fixture(scope="module", params=["solov2", "knet"])
def predictor(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    weights = fake_checkpoint(tmp, cls_bias=-3.0) if request.param == "solov2" else knet_checkpoint(tmp)
    return Predictor(weights, device="cpu", score_thr=0.0)


@pytest.mark.numerics
@pytest.mark.parametrize("shape", [(240, 370, 3), (413, 201, 3), (90, 60, 3)])
def test_predictions_equal_the_full_size_path(predictor, shape, monkeypatch):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    want, full = reference_rows(predictor, image, monkeypatch)
    instances = predictor.predict(image)
    assert len(want) >= 5
    assert instance_records("x.jpg", instances) == want
    assert [inst.box for inst in instances] == [tuple(b) for b in full["boxes"].tolist()]
    overlay = draw_predictions(image, instances, predictor.class_names)
    reference = reference_overlay(image, full["masks"].numpy(), full["labels"].tolist(), full["scores"].tolist(),
                                  predictor.class_names)
    assert np.array_equal(np.asarray(overlay), np.asarray(reference))
    assert predictions_to_coco(7, run(predictor, image), predictor.cat_ids) == predictions_to_coco(7, full, predictor.cat_ids)


@pytest.mark.numerics
def test_masks_that_each_cover_the_frame_give_the_full_size_paths_rows_and_overlay(monkeypatch):
    """The worst case of a barely trained model at ``--score-thr 0`` (every box the whole frame), on a
    small image, the masks decided and drawn a few rows at a time: bit for bit the full-size path's."""
    from benchmarks.large_images import controlled_model

    monkeypatch.setattr(paste, "BLOCK", 500)
    monkeypatch.setattr(visualize, "BAND_PIXELS", 700)
    model, cfg = controlled_model(12, (2.0, 3.0), seed=0)
    names = [str(i) for i in range(cfg.model.num_classes)]
    predictor = Predictor.for_model(model, cfg, names, list(range(1, len(names) + 1)), "cpu")
    image = np.random.default_rng(3).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    model.orig_size = image.shape[:2]
    want, full = reference_rows(predictor, image, monkeypatch)
    instances = predictor.predict(image)
    assert len(instances) == 12 and sum(inst.box == (0.0, 0.0, 229.0, 149.0) for inst in instances) >= 10
    assert instance_records("x.jpg", instances) == want
    overlay = draw_predictions(image, instances, names)
    reference = reference_overlay(image, full["masks"].numpy(), full["labels"].tolist(), full["scores"].tolist(), names)
    assert np.array_equal(np.asarray(overlay), np.asarray(reference))


def test_inference_on_a_large_image_never_makes_full_size_masks(predictor, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a full-size resize of every mask")

    monkeypatch.setattr(paste, "_upsample", refuse)  # the fallback for kernels whose arithmetic is unknown
    monkeypatch.setattr(knet_postprocess, "upsample_masks", refuse)
    monkeypatch.setattr(solov2_postprocess, "upsample_masks", refuse)
    image = np.random.default_rng(5).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    instances = predictor.predict(image)
    assert instances and all(inst.mask.shape == (900, 1200) for inst in instances[:3])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_the_large_image_benchmark_predicts_exactly_the_instances_it_asks_for(tmp_path):
    from benchmarks.large_images import measure, photo_size, write_photo

    write_photo(tmp_path / "photo.jpg", photo_size(0.3))
    result = measure(0.3, 7, (0.03, 0.2), tmp_path)
    assert result["instances"] == 7 and result["peak_mb"] >= result["baseline_mb"] > 0


def test_an_outline_drawn_band_by_band_is_the_whole_masks_outline():
    from csrseg.inference.visualize import rows_contour

    def outline(mask):  # written out here: a pixel of the mask with a 4-neighbour outside it
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return mask & ~inner

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.random()
        start = int(rng.integers(0, h))
        stop = int(rng.integers(start + 1, h + 1))
        assert np.array_equal(rows_contour(mask, start, stop), outline(mask)[start:stop]), (h, w, start, stop)
    assert np.array_equal(mask_contour(np.ones((3, 4), bool)), outline(np.ones((3, 4), bool)))
