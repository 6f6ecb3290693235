"""Per-class mask AP and box AP (boxes from masks), as `csrseg eval` prints and writes them."""

import json

import pytest
import torch

from tests.conftest import tiny_config
from csrseg import build_model
from csrseg.cli import main
from csrseg.config import to_dict
from csrseg.data.coco import decode_segmentation
from csrseg.engine.checkpoint import atomic_save
from csrseg.evaluation.coco import detailed_metrics, format_detailed
from csrseg.masks.rle import encode_mask


def _gt_as_results(ann_file, drop_category=None):
    data = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    results = []
    for ann in data["annotations"]:
        if ann["category_id"] == drop_category:
            continue
        mask = decode_segmentation(ann["segmentation"], *sizes[ann["image_id"]]).astype(bool)
        results.append(dict(image_id=ann["image_id"], category_id=ann["category_id"], score=1.0,
                            segmentation=encode_mask(mask)))
    return data, results


def test_ground_truth_scores_100_per_class_for_masks_and_boxes(synth_root):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = _gt_as_results(ann_file)
    report = detailed_metrics(ann_file, results, [im["id"] for im in data["images"]])
    assert report["mask"]["AP"] == pytest.approx(100.0) and report["box"]["AP"] == pytest.approx(100.0)
    assert {r["name"] for r in report["classes"]} == {"circle", "rectangle", "triangle", "star"}
    assert all(r["mask_AP"] == pytest.approx(100.0) and r["box_AP"] == pytest.approx(100.0) for r in report["classes"])
    assert sum(r["instances"] for r in report["classes"]) == len(data["annotations"])


def test_a_class_never_predicted_scores_zero_and_the_others_keep_theirs(synth_root):
    ann_file = synth_root / "annotations" / "instances_train.json"
    data, results = _gt_as_results(ann_file, drop_category=2)
    report = detailed_metrics(ann_file, results, [im["id"] for im in data["images"]], {2: "Rechteck"})
    by_id = {r["category_id"]: r for r in report["classes"]}
    assert by_id[2]["mask_AP"] == 0.0 and by_id[2]["box_AP"] == 0.0 and by_id[2]["name"] == "Rechteck"
    assert all(r["mask_AP"] == pytest.approx(100.0) for c, r in by_id.items() if c != 2)
    assert report["mask"]["AP"] == pytest.approx(75.0)
    table = format_detailed(report)
    assert "| Rechteck |" in table and "| box |" in table


def test_unannotated_category_is_not_a_row(synth_root, tmp_path):
    data = json.loads((synth_root / "annotations" / "instances_val.json").read_text())
    data["categories"].append(dict(id=99, name="unused"))
    ann_file = tmp_path / "val.json"
    ann_file.write_text(json.dumps(data))
    report = detailed_metrics(ann_file, [], [im["id"] for im in data["images"]])
    assert 99 not in {r["category_id"] for r in report["classes"]} and report["mask"]["AP"] == 0.0


def test_cli_eval_prints_per_class_ap_and_writes_it_beside_the_results(synth_root, tmp_path, capsys):
    cfg = tiny_config()
    torch.manual_seed(0)
    weights = tmp_path / "model.pt"
    atomic_save(dict(model=build_model(cfg).state_dict(), config=to_dict(cfg), classes=["circle", "rectangle", "triangle", "star"],
                     cat_ids=[1, 2, 3, 4]), weights)
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "| mask |" in out and "| box |" in out and "| class | instances | mask AP |" in out and "| star |" in out
    report = json.loads((tmp_path / "results_val.metrics.json").read_text())
    assert set(report) == {"mask", "box", "classes", "evaluator", "pictures"} and (tmp_path / "results_val.json").is_file()


def test_classes_the_model_lacks_are_named_in_a_warning(synth_root, caplog):
    from csrseg.api.evaluate import _warn_before_scoring
    from csrseg.data.coco import load_coco_json

    ann = synth_root / "annotations" / "instances_val.json"
    data = json.loads(ann.read_text())
    lacking = sum(a["category_id"] in (3, 4) for a in data["annotations"])
    with caplog.at_level("WARNING", logger="csrseg"):
        _warn_before_scoring(load_coco_json(ann, cat_ids=[1, 2]), ann)  # a 2-class model, 4 classes here
        _warn_before_scoring(load_coco_json(ann, cat_ids=[1, 2, 3, 4]), ann)  # every class: no warning
    assert len(caplog.records) == 1 and lacking > 0
    assert f"{lacking} annotations of 2 categories the model has no class for" in caplog.text
    assert "triangle (" in caplog.text and "star (" in caplog.text


def _weights(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    weights = tmp_path / "model.pt"
    atomic_save(dict(model=build_model(cfg).state_dict(), config=to_dict(cfg), classes=["circle", "rectangle", "triangle", "star"],
                     cat_ids=[1, 2, 3, 4]), weights)
    return weights


def test_an_unreadable_image_met_in_a_loader_worker_is_one_line(synth_root, tmp_path, capsys):
    """The error a DataLoader worker raises reaches the user as the one line it carried, not as torch's
    'Caught DatasetError in DataLoader worker process 0' and the worker's traceback."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(synth_root / "val", bad)
    first = sorted(bad.iterdir())[0]
    first.write_bytes(b"garbage")
    argv = ["eval", "--weights", str(_weights(tmp_path)), "--ann", str(synth_root / "annotations" / "instances_val.json"),
            "--images", str(bad), "--workers", "2", "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.split("\r")[-1].strip()  # after the progress bar's own clearing of its line
    assert err.startswith("csrseg: error:") and "\n" not in err and first.name in err, err
    assert "DataLoader worker" not in err and "Traceback" not in err
    import multiprocessing

    assert multiprocessing.active_children() == []  # workers ignore SIGTERM: left running, the suite never exits


def test_eval_names_the_option_typed_and_counts_predictions_as_predictions(synth_root, tmp_path, capsys):
    from tests.conftest import one_line_error

    weights = _weights(tmp_path)
    assert main(["eval", "--weights", str(weights), "--ann", str(tmp_path / "missing.json")]) == 2
    one_line_error(capsys, "missing.json: annotation file not found (--ann)")
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--workers", "0"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert " predictions; COCO results JSON" in last and " instances;" not in last
