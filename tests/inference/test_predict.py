"""Predictor API and ``csrseg predict`` on awkward images."""

import json

import numpy as np
import pytest
from PIL import Image

from csrseg.cli import main
from csrseg.inference.predictor import Predictor, as_rgb_array
from tests.conftest import fake_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("predict"), cls_bias=-3.0)


def test_image_modes_become_rgb_uint8(tmp_path):
    gray = Image.fromarray(np.full((20, 30), 77, np.uint8))
    rgba = Image.fromarray(np.dstack([np.full((20, 30, 3), 200, np.uint8), np.zeros((20, 30), np.uint8)]), "RGBA")
    deep = Image.fromarray(np.linspace(0, 65535, 600, dtype=np.uint16).reshape(20, 30))
    for img in (gray, rgba, deep):
        arr = as_rgb_array(img)
        assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8
    assert (as_rgb_array(rgba) == 255).all()  # transparent -> composited on white
    deep_arr = as_rgb_array(deep)
    assert deep_arr.min() == 0 and deep_arr.max() == 255  # 16-bit range stretched, not clipped
    path = tmp_path / "deep.png"
    deep.save(path)
    assert as_rgb_array(path).max() == 255


def test_exif_rotation_is_applied(tmp_path, weights):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert as_rgb_array(path).shape == (70, 40, 3)
    instances = Predictor(weights, device="cpu", score_thr=0.0).predict(path)
    assert instances and all(i.mask.shape == (70, 40) for i in instances)


def test_predictor_returns_sorted_named_instances(weights):
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    instances = Predictor(weights, device="cpu", score_thr=0.2).predict(image)
    scores = [i.score for i in instances]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.2
    assert {i.class_name for i in instances} <= {"circle", "rectangle", "triangle", "star"}
    for inst in instances:
        x0, y0, x1, y1 = inst.box
        ys, xs = np.nonzero(inst.mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_cli_predict_folder_skips_non_images_and_writes_outputs(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((50, 20), 128, np.uint8)).save(src / "b.jpg")
    (src / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(src), "--weights", str(weights), "--out", str(out), "--score-thr", "0.0"]) == 0
    captured = capsys.readouterr()
    assert "skipped:" in captured.err and "notes.jpg" in captured.err
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg"]
    records = json.loads((out / "predictions.json").read_text())
    assert records and {"file_name", "category_id", "category", "score", "bbox", "segmentation"} <= set(records[0])


def test_cli_predict_with_nothing_readable_fails_and_keeps_the_old_predictions(tmp_path, weights, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text('[{"kept": true}]')
    (tmp_path / "notes.jpg").write_text("not an image")
    argv = ["predict", str(tmp_path / "notes.jpg"), str(tmp_path / "nope.png"), "--weights", str(weights),
            "--out", str(out), "--exist-ok"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "none of the 2 images or videos could be read" in err and "notes.jpg" in err
    assert json.loads((out / "predictions.json").read_text()) == [{"kept": True}]


def test_cli_eval_never_replaces_an_explicit_out_unasked(tmp_path, weights, capsys):
    precious = tmp_path / "last.pt"
    precious.write_bytes(b"weights")
    assert main(["eval", "--weights", str(weights), "--data", str(tmp_path), "--out", str(precious)]) == 2
    assert "name must end in .json" in capsys.readouterr().err
    results = tmp_path / "results.json"
    results.write_text("[]")
    assert main(["eval", "--weights", str(weights), "--data", str(tmp_path), "--out", str(results)]) == 2
    assert "already exists; pass --exist-ok" in capsys.readouterr().err
    assert precious.read_bytes() == b"weights" and results.read_text() == "[]"
    report = tmp_path / "fresh.metrics.json"  # the report eval writes beside its results is not replaced unasked either
    report.write_text("{}")
    assert main(["eval", "--weights", str(weights), "--data", str(tmp_path), "--out", str(tmp_path / "fresh.json")]) == 2
    assert "fresh.metrics.json: already exists" in capsys.readouterr().err and report.read_text() == "{}"


def test_cli_export_then_predict_with_onnx(tmp_path, weights):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(onnx_path), "--weights", str(weights)]) == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(image)
    assert main(["predict", str(image), "--onnx", str(onnx_path), "--out", str(tmp_path / "o"), "--score-thr", "0"]) == 0
    assert (tmp_path / "o" / "x.jpg").is_file()
    assert main(["export", str(tmp_path / "w.safetensors"), "--weights", str(weights), "--format", "safetensors"]) == 0
    assert Predictor(tmp_path / "w.safetensors", device="cpu").class_names[0] == "circle"


def test_record_writer_streams_a_valid_array_and_an_interrupted_one_leaves_the_old_file(tmp_path):
    import json

    from csrseg.inference.records import RecordWriter

    path = tmp_path / "predictions.json"
    writer = RecordWriter(path)
    writer.write([{"file_name": "a.png", "score": 0.5}])
    writer.write([])
    writer.write([{"file_name": "b.png", "score": 0.25}, {"file_name": "b.png", "score": 0.125}])
    assert not path.exists()  # only the finished array replaces predictions.json
    writer.close()
    assert json.loads(path.read_text()) == [{"file_name": "a.png", "score": 0.5}, {"file_name": "b.png", "score": 0.25},
                                            {"file_name": "b.png", "score": 0.125}]
    assert writer.count == 3

    broken = RecordWriter(path)
    broken.write([{"file_name": "c.png", "score": 1.0}])
    broken.discard()
    assert json.loads(path.read_text())[0]["file_name"] == "a.png"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.json"]

    empty = RecordWriter(tmp_path / "empty.json")
    empty.close()
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_when_nothing_passes_the_score_threshold_predict_says_how_many_fell_below(tmp_path, capsys):
    from PIL import Image

    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    assert main(["predict", str(image), "--weights", str(weights), "--out", str(tmp_path / "p"), "--score-thr", "1.0"]) == 0
    out = capsys.readouterr().out
    below = int(out.split("0 instances (")[1].split(" below")[0])
    top = float(out.split("the highest scoring ")[1].split(")")[0])
    assert below > 0 and 0 < top < 1.0 and "below --score-thr 1.0" in out
