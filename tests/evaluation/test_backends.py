"""faster-coco-eval, the optional fast path, scores exactly as pycocotools does; choosing it without
its package is one line."""

import importlib.util

import numpy as np
import pytest

from csrseg.cli import main
from csrseg.errors import CsrsegError
from csrseg.evaluation import backends
from csrseg.evaluation.backends import resolve_evaluator, run_cocoeval
from csrseg.evaluation.coco import boxes_from_masks, score_results
from tests.conftest import one_line_error
from tests.evaluation.test_curves import noisy_results

FASTER = importlib.util.find_spec("faster_coco_eval") is not None
needs_faster = pytest.mark.skipif(not FASTER, reason="faster-coco-eval is not installed (pip install 'csrseg[fasteval]')")

#: how far the two libraries' numbers may lie apart: both compute the same counts, in float64
TOLERANCE = 1e-6


@needs_faster
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_faster_coco_eval_gives_pycocotools_numbers(synth_root, iou_type):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = noisy_results(ann_file, seed=1)
    data.setdefault("info", {})
    if iou_type == "bbox":
        results = boxes_from_masks(results)
        for ann in data["annotations"]:
            assert ann.get("bbox"), "the synthetic set carries its boxes"
    reference = run_cocoeval(data, results, iou_type, evaluator="pycocotools")
    fast = run_cocoeval(data, results, iou_type, evaluator="faster")
    assert 0.05 < reference.stats[0] < 0.95  # neither perfect nor empty: every threshold matters
    assert fast.cat_ids == reference.cat_ids
    np.testing.assert_allclose(fast.stats, reference.stats, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(fast.precision, reference.precision, rtol=0, atol=TOLERANCE)


@needs_faster
def test_report_is_the_same_with_either_evaluator(synth_root):
    ann_file = synth_root / "annotations" / "instances_val.json"
    data, results = noisy_results(ann_file, seed=2)
    ids = [im["id"] for im in data["images"]]
    reference = score_results(ann_file, results, ids, evaluator="pycocotools")
    fast = score_results(ann_file, results, ids, evaluator="faster")
    for kind in ("mask", "box"):
        np.testing.assert_allclose(getattr(fast, kind).stats, getattr(reference, kind).stats, rtol=0, atol=TOLERANCE)


def test_auto_takes_faster_only_where_installed(monkeypatch):
    monkeypatch.setattr(backends, "faster_installed", lambda: False)
    assert resolve_evaluator("auto") == "pycocotools"
    monkeypatch.setattr(backends, "faster_installed", lambda: True)
    assert resolve_evaluator("auto") == "faster"
    with pytest.raises(CsrsegError, match="unknown"):
        resolve_evaluator("fastest")


def test_faster_without_its_package_is_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backends, "faster_installed", lambda: False)
    missing = tmp_path / "missing.pt"  # never opened: the evaluator is checked first
    assert main(["eval", "--weights", str(missing), "--data", str(tmp_path), "--evaluator", "faster"]) == 2
    one_line_error(capsys, "--evaluator faster", "csrseg[fasteval]")
