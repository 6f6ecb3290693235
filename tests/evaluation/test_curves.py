"""Precision-recall curves from COCOeval's precision array, and the pictures `csrseg eval` writes."""

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks.eval_backends import imperfect_results
from csrseg.cli import main
from csrseg.evaluation.coco import score_results
from csrseg.evaluation.curves import RECALL, class_curve, overall_curve, pr_curves
from csrseg.evaluation.pictures import picture_paths
from tests.conftest import fake_checkpoint, one_line_error


def noisy_results(ann_file, seed=0):
    """The annotation file's data and imperfect predictions made from it (the evaluator benchmark's)."""
    data = json.loads(ann_file.read_text())
    return data, imperfect_results(data, seed)


def test_curves_average_to_cocoeval_ap(synth_root):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = noisy_results(ann_file)
    scored = score_results(ann_file, results, [im["id"] for im in data["images"]])
    for scores in (scored.mask, scored.box):
        ap, ap50, ap75 = scores.stats[:3]
        assert 0.05 < ap < 0.95  # imperfect: the curves are not flat
        assert overall_curve(scores.precision, slice(None)).mean() == pytest.approx(ap, abs=1e-9)
        assert overall_curve(scores.precision, 0).mean() == pytest.approx(ap50, abs=1e-9)
        assert overall_curve(scores.precision, 5).mean() == pytest.approx(ap75, abs=1e-9)
        curve = overall_curve(scores.precision, 0)
        assert curve.shape == RECALL.shape and np.all(np.diff(curve) <= 1e-12)  # COCOeval's interpolation


def test_a_class_without_ground_truth_has_no_curve_and_stays_out_of_the_mean():
    precision = np.full((10, 101, 2, 4, 3), -1.0)
    precision[:, :, 0] = np.linspace(1.0, 0.0, 101)[None, :, None, None]
    assert class_curve(precision, 1, 0) is None
    np.testing.assert_allclose(overall_curve(precision, slice(None)), np.linspace(1.0, 0.0, 101))
    curves = pr_curves(precision, [7, 9], {7: "cat", 9: "dog"})
    assert curves["classes"][1]["curves"]["0.5"] is None and curves["classes"][1]["AP"]["0.5"] is None
    assert curves["classes"][0]["AP"]["0.5:0.95"] == pytest.approx(50.0)
    assert len(curves["recall"]) == 101 and curves["recall"][-1] == 1.0


def test_eval_writes_curves_and_confusion_matrix_beside_the_report(synth_root, tmp_path, capsys):
    weights = fake_checkpoint(tmp_path, cls_bias=0.0)
    out = tmp_path / "res.json"
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--workers", "0", "--out", str(out),
                 "--evaluator", "pycocotools", "--confusion-score-thr", "0.2"]) == 0
    report = json.loads(out.with_name("res.metrics.json").read_text())
    paths = picture_paths(out)
    assert report["pictures"] == {k: str(v) for k, v in paths.items()} and report["evaluator"] == "pycocotools"
    for what in ("pr_mask", "pr_box", "confusion"):
        with Image.open(paths[what]) as image:
            assert image.format == "PNG" and min(image.size) > 200
    curves = json.loads(paths["pr_curves"].read_text())
    assert {c["name"] for c in curves["mask"]["classes"]} == {"circle", "rectangle", "triangle", "star"}
    assert curves["box"]["overall"]["0.5"] is not None and len(curves["box"]["overall"]["0.5"]) == 101
    confusion = json.loads(paths["confusion_data"].read_text())
    matrix = np.array(confusion["matrix"])
    val = json.loads((synth_root / "annotations" / "instances_val.json").read_text())
    assert confusion["classes"][-1] == "background" and matrix.shape == (5, 5) and confusion["score_thr"] == 0.2
    assert matrix[:4].sum() == len(val["annotations"])  # each object once, matched or missed
    predicted = json.loads(out.read_text())
    assert matrix[:, :4].sum() == sum(r["score"] >= 0.2 for r in predicted)


def test_no_plots_writes_only_results_and_report(synth_root, tmp_path):
    weights = fake_checkpoint(tmp_path, cls_bias=0.0)
    out = tmp_path / "res.json"
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--workers", "0", "--out", str(out),
                 "--no-plots"]) == 0
    assert sorted(p.name for p in tmp_path.glob("res*")) == ["res.json", "res.metrics.json"]
    assert "pictures" not in json.loads(out.with_name("res.metrics.json").read_text())


def test_an_existing_picture_is_not_replaced_unasked(synth_root, tmp_path, capsys):
    weights = fake_checkpoint(tmp_path, cls_bias=0.0)
    out = tmp_path / "res.json"
    picture_paths(out)["confusion"].write_bytes(b"mine")
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--out", str(out)]) == 2
    one_line_error(capsys, "res.confusion.png", "--exist-ok")
    assert not out.exists()


@pytest.mark.parametrize("argv, part", [(["--confusion-score-thr", "1.5"], "--confusion-score-thr"),
                                        (["--evaluator", "fast"], "--evaluator")])
def test_bad_picture_options_are_one_line(tmp_path, capsys, argv, part):
    with pytest.raises(SystemExit) as refused:  # argparse's own check, printed as one line
        main(["eval", "--weights", str(tmp_path / "w.pt"), *argv])
    assert refused.value.code == 2
    one_line_error(capsys, part)
