"""OpenVINO export and inference: the ONNX pipeline as an IR, the same instances as PyTorch in fp32,
INT8 by NNCF with the post-processing left alone, and one-line errors for what a user gets wrong."""

import json

import pytest

pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install -e '.[openvino]' (the [test] "
                                       "extra includes it)")
pytest.importorskip("nncf", reason="NNCF (OpenVINO's quantizer) comes with the [openvino] extra")

from csrseg.cli import main  # noqa: E402
from csrseg.data.io import read_image  # noqa: E402
from csrseg.deploy.int8 import NETWORK_SCOPE  # noqa: E402
from csrseg.deploy.openvino import WEIGHTED_OPS  # noqa: E402
from csrseg.inference.openvino_predictor import OpenVinoPredictor, read_metadata  # noqa: E402
from csrseg.inference.predictor import Predictor  # noqa: E402
from csrseg.runtime.precision import Precision  # noqa: E402
from tests.conftest import CLASSES, fake_checkpoint, match_instances, one_line_error  # noqa: E402
from tests.deploy.test_export import _images  # noqa: E402


@pytest.fixture(scope="module")
def irs(tmp_path_factory, synth_root):
    """A tiny random checkpoint that sees a few dozen instances per image, exported by the CLI as an
    fp32 IR and as an INT8 IR calibrated on 8 images of the synthetic set."""
    tmp = tmp_path_factory.mktemp("openvino")
    weights = fake_checkpoint(tmp, cls_bias=-3.0)
    assert main(["export", str(tmp / "fp32.xml"), "--weights", str(weights), "--format", "openvino"]) == 0
    assert main(["export", str(tmp / "int8.xml"), "--weights", str(weights), "--format", "openvino", "--int8",
                 "--calib", str(synth_root), "--calib-images", "8"]) == 0
    return weights, tmp / "fp32.xml", tmp / "int8.xml"


@pytest.mark.numerics
def test_openvino_fp32_gives_the_instances_of_pytorch(irs):
    weights, fp32, _ = irs
    eager = Predictor(weights, device="cpu", score_thr=0.0)
    # fp32 is asked for: OpenVINO's own default on a CPU with bf16 is bf16, which moves scores
    ov = OpenVinoPredictor(fp32, score_thr=0.0, precision="fp32")
    assert ov.class_names == CLASSES and ov.cat_ids == [1, 2, 3, 4]
    for image in _images():
        ours, theirs = eager.predict(image), ov.predict(image)
        assert len(ours) > 3 and all(i.mask.shape == image.shape[:2] for i in theirs)
        # the precision ONNX Runtime is held to (tests/deploy/test_export.py): same class, mask IoU
        # >= 0.99 and scores within 1e-3, paired whatever the order of near-equal scores
        for a, b in match_instances(ours, theirs, min_iou=0.99, score_tol=1e-3):
            assert a.class_name == b.class_name


def test_the_ir_is_two_files_with_fp32_weights_and_the_metadata(irs):
    import openvino as ov

    _, fp32, _ = irs
    assert fp32.with_suffix(".bin").stat().st_size > 100_000
    assert not list(fp32.parent.glob(".*.tmp.*"))  # the temporary names were renamed away
    model = ov.Core().read_model(str(fp32))
    meta = read_metadata(model)
    assert meta["classes"] == CLASSES and meta["config"]["input"]["short_side"] == 128
    weights = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"
               and op.get_output_element_type(0) == ov.Type.f16]
    assert not weights  # compress_to_fp16 off: an fp32 IR is the ONNX model's numbers


def test_int8_quantizes_the_weighted_network_ops_only(irs):
    import openvino as ov

    _, _, int8 = irs
    model = ov.Core().read_model(str(int8))
    fake_quant = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fake_quant) > 10
    # every quantizer feeds a convolution or matrix product of the network (its weight or its
    # input): none sits on the resize, the normalisation, GroupNorm or the post-processing
    for op in fake_quant:
        readers = {t.get_node().get_type_name() for t in op.output(0).get_target_inputs()}
        names = {t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs()}
        assert readers <= set(WEIGHTED_OPS), (op.get_friendly_name(), readers)
        assert all(name.startswith(NETWORK_SCOPE) for name in names), names
    record = read_metadata(model)["quantization"]
    assert record["calibration_images"] == 8 and record["nodes"] > 10


def test_int8_instances_largely_match_fp32(irs, synth_root):
    _, fp32, int8 = irs
    image = read_image(next((synth_root / "val").iterdir()))
    ours = OpenVinoPredictor(fp32, score_thr=0.0).predict(image)
    theirs = OpenVinoPredictor(int8, score_thr=0.0).predict(image)
    assert len(ours) > 5 and theirs
    # INT8 moves scores and mask edges: count fp32 instances with an INT8 partner of the same class
    # and mask IoU >= 0.5, as the ONNX INT8 test does
    found = 0
    for a in ours:
        ious = [(a.mask & b.mask).sum() / max((a.mask | b.mask).sum(), 1) for b in theirs if b.label == a.label]
        found += max(ious, default=0.0) >= 0.5
    assert found >= 0.8 * len(ours), f"{found} of {len(ours)} fp32 instances found in the INT8 output"


def test_predict_and_eval_take_the_ir_by_option_and_by_suffix(irs, synth_root, tmp_path, capsys):
    from tests.deploy.test_quantize import _ground_truth_from

    from csrseg import evaluate

    weights, fp32, _ = irs
    images = sorted((synth_root / "val").iterdir())[:2]
    for option in ("--openvino", "--weights"):
        out = tmp_path / f"pred{option}"
        assert main(["predict", *map(str, images), option, str(fp32), "--out", str(out), "--score-thr", "0.2"]) == 0
        rows = json.loads((out / "predictions.json").read_text())
        assert rows and {r["category_id"] for r in rows} <= {1, 2, 3, 4}
    capsys.readouterr()
    # eval: the AP of the IR against the checkpoint's own detections equals the checkpoint's
    first = evaluate(weights, data=synth_root, out=tmp_path / "first.json")
    gt = _ground_truth_from(first["results"], synth_root / "annotations" / "instances_val.json", tmp_path / "gt.json")
    ckpt = evaluate(weights, ann=gt, images=synth_root / "val", out=tmp_path / "ckpt.json")
    assert main(["eval", "--openvino", str(fp32), "--ann", str(gt), "--images", str(synth_root / "val"),
                 "--out", str(tmp_path / "ov.json")]) == 0
    report = json.loads((tmp_path / "ov.metrics.json").read_text())
    assert ckpt["mask"]["AP"] > 50  # its own detections: something to lose
    assert abs(report["mask"]["AP"] - ckpt["mask"]["AP"]) < 1.0
    assert f"| mask | {report['mask']['AP']:.1f} |" in capsys.readouterr().out


def test_auto_takes_the_faster_precision_timed_on_the_image_and_says_so(irs, monkeypatch, caplog):
    import csrseg.inference.openvino_predictor as module

    _, fp32, _ = irs
    predictor = OpenVinoPredictor(fp32, score_thr=0.0, precision="fp32")
    monkeypatch.setattr(module, "cpu_computes_bf16", lambda core: True)
    for measured, expected in (({"fp32": 0.2, "bf16": 0.1}, "bf16"), ({"fp32": 0.1, "bf16": 0.3}, "fp32")):
        monkeypatch.setattr(module, "probe_times", lambda step, budget, warmup, measured=measured: measured)
        auto = OpenVinoPredictor(fp32, score_thr=0.0, precision="auto")
        auto.compiled = lambda name, real=predictor.compiled: real("fp32")  # what runs is not under test
        monkeypatch.setenv("CSRSEG_CACHE", str(auto.path.parent / f"cache-{expected}"))
        with caplog.at_level("INFO"):
            auto.predict(_images()[0])
        assert auto.precision.name == expected
        assert f"--precision auto for fp32.xml at 150x100: {expected}" in caplog.text


def test_auto_on_a_cpu_without_bf16_is_fp32_without_timing(irs, monkeypatch):
    import csrseg.inference.openvino_predictor as module

    _, fp32, _ = irs
    monkeypatch.setattr(module, "cpu_computes_bf16", lambda core: False)
    monkeypatch.setattr(module, "probe_times", lambda *a, **k: pytest.fail("timed on a CPU without bf16"))
    predictor = OpenVinoPredictor(fp32, score_thr=0.0, precision="auto")
    assert predictor.precision == Precision("fp32", "auto: this CPU does not compute bf16")
    with pytest.raises(Exception, match="this CPU does not compute bf16"):
        OpenVinoPredictor(fp32, precision="bf16")


def test_bad_openvino_input_is_one_line(irs, tmp_path, capsys):
    weights, fp32, _ = irs
    lone = tmp_path / "lone.xml"
    lone.write_bytes(fp32.read_bytes())  # its .bin left behind
    junk = tmp_path / "junk.xml"
    junk.write_text("not a graph")
    junk.with_suffix(".bin").write_bytes(b"")
    image = str(tmp_path / "x.png")
    cases = [
        (["predict", image, "--openvino", str(tmp_path / "missing.xml")], "OpenVINO model not found"),
        (["predict", image, "--openvino", str(lone)], "lone.bin: the weights of lone.xml are missing"),
        (["predict", image, "--openvino", str(junk)], "not a readable OpenVINO model"),
        (["predict", image, "--openvino", str(fp32.with_suffix(".onnx"))], "--openvino"),
        (["predict", image, "--openvino", str(fp32), "--onnx", "m.onnx"], "give one of --weights"),
        (["predict", image, "--openvino", str(fp32), "--precision", "fp16"], "runs in fp32 or bf16"),
        (["export", str(tmp_path / "m.onnx"), "--weights", str(weights), "--format", "openvino"],
         "--format openvino writes a .xml file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        one_line_error(capsys, message)


def test_export_refuses_an_existing_ir_and_keeps_it(irs, tmp_path, capsys):
    weights, _, _ = irs
    out = tmp_path / "model.xml"
    out.with_suffix(".bin").write_bytes(b"earlier weights")
    assert main(["export", str(out), "--weights", str(weights), "--format", "openvino"]) == 2
    one_line_error(capsys, "model.bin")
    assert out.with_suffix(".bin").read_bytes() == b"earlier weights" and not out.exists()


def test_a_missing_openvino_is_one_line_naming_the_extra(irs, tmp_path, monkeypatch, capsys):
    import sys

    weights, fp32, _ = irs
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without the extra looks like
    assert main(["export", str(tmp_path / "m.xml"), "--weights", str(weights), "--format", "openvino"]) == 2
    one_line_error(capsys, "pip install 'csrseg[openvino]'")
    assert main(["predict", str(tmp_path / "x.png"), "--openvino", str(fp32)]) == 2
    one_line_error(capsys, "pip install 'csrseg[openvino]'")
    assert not (tmp_path / "m.xml").exists()


def test_benchmark_times_openvino_in_each_precision_against_its_own_peak(irs, tmp_path):
    from csrseg.research.benchmark import format_rows, openvino_entries, openvino_precisions, synthetic_image, time_entries
    from tests.conftest import tiny_config

    image = synthetic_image(64, 96)
    entries = openvino_entries(tiny_config(), image, tmp_path)
    names = [e.name for e in entries]
    assert names == [f"demo (OpenVINO {p})" for p in openvino_precisions()] + ["demo (OpenVINO INT8)"]
    assert [e.precision for e in entries] == [*openvino_precisions(), "int8"]
    rows = time_entries(entries, (64, 96), runs=1, warmup=1)
    table = format_rows(rows, "demo (OpenVINO fp32)", dict(fp32=100.0, bf16=200.0, int8=400.0), "test cpu")
    assert "of int8 | random weights: speed only |" in table and "| 1.00 |" in table
