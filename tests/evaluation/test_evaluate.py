import json

import numpy as np
import pytest
import torch

from csrseg.data.coco import decode_segmentation
from csrseg.evaluation.coco import EvaluationError, coco_mask_ap, predictions_to_coco
from csrseg.masks.rle import encode_mask


def _gt_as_results(ann_file):
    data = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    results = []
    for ann in data["annotations"]:
        mask = decode_segmentation(ann["segmentation"], *sizes[ann["image_id"]])
        results.append(dict(image_id=ann["image_id"], category_id=ann["category_id"], score=1.0,
                            segmentation=encode_mask(mask.astype(bool))))
    return data, results


def test_ground_truth_as_predictions_scores_100(synth_root):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = _gt_as_results(ann_file)
    metrics, summary = coco_mask_ap(ann_file, results, [im["id"] for im in data["images"]])
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AP50"] == pytest.approx(100.0)
    assert "Average Precision" in summary


def test_a_file_without_info_scores_under_pycocotools_2_0_10(synth_root, tmp_path, monkeypatch):
    """pycocotools 2.0.10's loadRes copies ``dataset['info']`` (KeyError without one; seen on a GPU
    machine with that release); annotation files without an info block must still score."""
    from pycocotools.coco import COCO

    load_res = COCO.loadRes

    def load_res_2_0_10(self, res):
        self.dataset["info"]  # what 2.0.10 reads first
        return load_res(self, res)

    monkeypatch.setattr(COCO, "loadRes", load_res_2_0_10)
    data, results = _gt_as_results(synth_root / "annotations" / "instances_train.json")
    data.pop("info", None)
    ann_file = tmp_path / "no_info.json"
    ann_file.write_text(json.dumps(data))
    metrics, _ = coco_mask_ap(ann_file, results, [im["id"] for im in data["images"]])
    assert metrics["AP"] == pytest.approx(100.0)


def test_deleting_one_instance_lowers_recall_by_its_share(synth_root):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = _gt_as_results(ann_file)
    dropped = results.pop(0)
    per_cat = {}
    for ann in data["annotations"]:
        per_cat[ann["category_id"]] = per_cat.get(ann["category_id"], 0) + 1
    # AR@100 is recall averaged over categories (and IoU thresholds, all equal here)
    recalls = [(n - 1) / n if c == dropped["category_id"] else 1.0 for c, n in per_cat.items()]
    metrics, _ = coco_mask_ap(ann_file, results)
    assert metrics["AR100"] == pytest.approx(100 * np.mean(recalls), abs=1e-6)
    assert metrics["AP"] < 100.0


def test_a_missing_image_is_an_error_not_a_smaller_denominator(synth_root):
    ann_file = synth_root / "annotations" / "instances_val.json"
    ids = [im["id"] for im in json.loads(ann_file.read_text())["images"]]
    with pytest.raises(EvaluationError, match=f"evaluated {len(ids) - 1} images but the file has {len(ids)}"):
        coco_mask_ap(ann_file, [], ids[:-1])


def test_no_detections_scores_zero(synth_root):
    ann_file = synth_root / "annotations" / "instances_val.json"
    metrics, _ = coco_mask_ap(ann_file, [])
    assert metrics["AP"] == 0.0


def test_predictions_map_labels_back_to_category_ids_and_boxes_to_xywh():
    mask = torch.zeros(1, 20, 30, dtype=torch.bool)
    mask[0, 5:10, 2:12] = True
    inst = dict(labels=torch.tensor([1]), scores=torch.tensor([0.5]), masks=mask,
                boxes=torch.tensor([[2.0, 5.0, 11.0, 9.0]]))
    (res,) = predictions_to_coco(42, inst, [7, 11])
    assert res["category_id"] == 11 and res["image_id"] == 42
    assert res["bbox"] == [2.0, 5.0, 10.0, 5.0]
    assert decode_segmentation(res["segmentation"], 20, 30).sum() == 50


def test_masks_encoded_together_equal_masks_encoded_one_by_one():
    from csrseg.masks.rle import encode_masks

    rng = np.random.default_rng(0)
    masks = rng.random((5, 37, 53)) > 0.6
    masks[2] = False  # an empty mask
    assert encode_masks(torch.from_numpy(masks)) == [encode_mask(m) for m in masks]
    assert encode_masks(np.zeros((0, 4, 4), dtype=bool)) == []


def test_masks_kept_as_crops_encode_as_their_full_size_masks():
    from csrseg.masks.rle import encode_masks
    from csrseg.masks.crops import MaskCrops

    masks = np.random.default_rng(1).random((4, 37, 53)) > 0.7
    masks[1] = False
    masks[1, 36, 52] = True  # one pixel in the last corner
    assert encode_masks(MaskCrops.from_dense(torch.from_numpy(masks))) == [encode_mask(m) for m in masks]
