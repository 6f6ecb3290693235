"""INT8 export (ONNX Runtime static quantization) and evaluation of ONNX models."""

import json
from pathlib import Path

import onnx
import pytest
import torch

from tests.conftest import tiny_config
from csrseg import build_model
from csrseg.cli import main
from csrseg.config import to_dict
from csrseg.data.io import ImageReadError, read_image
from csrseg.data.synth import CLASSES
from csrseg.engine.checkpoint import atomic_save
from csrseg.deploy.onnx import export_onnx
from csrseg.inference.onnx_predictor import OnnxPredictor
from csrseg.deploy.int8 import NETWORK_SCOPE, calibration_images, quantize_onnx


def _checkpoint(path):
    """A tiny random model made to see a few dozen instances in every image (see test_export)."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_out.weight.normal_(0, 0.5)
        model.head.cls_out.bias.fill_(-3.0)
        model.head.kernel_out.weight.normal_(0, 0.2)
    atomic_save(dict(model=model.state_dict(), config=to_dict(cfg), classes=list(CLASSES), cat_ids=[1, 2, 3, 4]), path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, synth_root):
    tmp = tmp_path_factory.mktemp("int8")
    weights = _checkpoint(tmp / "model.pt")
    assert main(["export", str(tmp / "fp32.onnx"), "--weights", str(weights)]) == 0
    assert main(["export", str(tmp / "int8.onnx"), "--weights", str(weights), "--int8", "--calib", str(synth_root),
                 "--calib-images", "8"]) == 0
    return weights, tmp / "fp32.onnx", tmp / "int8.onnx"


def test_int8_quantizes_the_network_convolutions_and_not_the_postprocessing(models):
    _, fp32, int8 = models
    graph = onnx.load(str(int8)).graph
    produced_by = {out: node for node in graph.node for out in node.output}
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(n.name.startswith(NETWORK_SCOPE) for n in convs)
    # every convolution reads a dequantized (int8) weight and a dequantized (uint8) activation
    assert all(n.input[0] in dequantized and n.input[1] in dequantized for n in convs)
    weight_dq = [produced_by[n.input[1]] for n in convs]
    assert all(graph_init_type(graph, dq.input[0]) == onnx.TensorProto.INT8 for dq in weight_dq)
    # the SOLOv2 post-processing's matrix products (masks of the candidates) stay fp32
    post = [n for n in graph.node if n.op_type == "MatMul" and not n.name.startswith(NETWORK_SCOPE)]
    assert post and not any(i in dequantized for n in post for i in n.input)
    # metadata survives: classes for the overlays, the quantization settings
    meta = OnnxPredictor(int8).metadata
    assert meta["classes"] == list(CLASSES) and meta["quantization"]["calibration_images"] == 8


def graph_init_type(graph, name):
    return next(init.data_type for init in graph.initializer if init.name == name)


def test_int8_instances_largely_match_fp32(models, synth_root):
    _, fp32, int8 = models
    image = read_image(next((synth_root / "val").iterdir()))
    ours = OnnxPredictor(fp32, score_thr=0.0).predict(image)
    theirs = OnnxPredictor(int8, score_thr=0.0).predict(image)
    assert len(ours) > 5 and theirs
    # INT8 moves scores and mask edges a little: count fp32 instances with an INT8 partner of the
    # same class and mask IoU >= 0.5 (scores may reorder, so no pairing by rank)
    found = 0
    for a in ours:
        ious = [(a.mask & b.mask).sum() / max((a.mask | b.mask).sum(), 1) for b in theirs if b.label == a.label]
        found += max(ious, default=0.0) >= 0.5
    assert found >= 0.8 * len(ours), f"{found} of {len(ours)} fp32 instances found in the INT8 output"


def _ground_truth_from(results_file, val_file, out, per_image=5):
    """An annotation file whose objects are the best ``per_image`` detections of a results file: a
    random model scores 0 AP on real shapes, but against its own output its AP is high, and any
    change in what another runtime finds shows in the AP."""
    from pycocotools import mask as mask_utils

    results = json.loads(Path(results_file).read_text())
    spec = json.loads(Path(val_file).read_text())
    annotations = []
    for image in spec["images"]:
        best = sorted((r for r in results if r["image_id"] == image["id"]), key=lambda r: -r["score"])[:per_image]
        for r in best:
            rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode("ascii"))
            annotations.append(dict(id=len(annotations) + 1, image_id=image["id"], category_id=r["category_id"],
                                    segmentation=r["segmentation"], area=float(mask_utils.area(rle)),
                                    bbox=[float(v) for v in mask_utils.toBbox(rle)], iscrowd=0))
    out.write_text(json.dumps(dict(spec, annotations=annotations)))
    return out


def test_eval_of_onnx_gives_the_checkpoint_ap(models, synth_root, tmp_path, capsys):
    from csrseg import evaluate

    weights, fp32, _ = models
    first = evaluate(weights, data=synth_root, out=tmp_path / "first.json")
    gt = _ground_truth_from(first["results"], synth_root / "annotations" / "instances_val.json", tmp_path / "gt.json")
    images = synth_root / "val"
    ckpt = evaluate(weights, ann=gt, images=images, out=tmp_path / "ckpt.json")
    onnx_report = evaluate(fp32, ann=gt, images=images, out=tmp_path / "onnx.json")
    assert onnx_report["images"] == ckpt["images"] == 4
    assert abs(onnx_report["predictions"] - ckpt["predictions"]) <= 0.02 * ckpt["predictions"] + 1
    assert ckpt["mask"]["AP"] > 50  # its own detections: something to lose
    for metric in ("AP", "AP50", "AP75"):
        assert abs(onnx_report["mask"][metric] - ckpt["mask"][metric]) < 1.0, metric
    # the CLI prints the same table
    assert main(["eval", "--onnx", str(fp32), "--ann", str(gt), "--images", str(images),
                 "--out", str(tmp_path / "cli.json")]) == 0
    assert f"| mask | {onnx_report['mask']['AP']:.1f} |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "--int8 needs --calib DATA"),
    (["--calib", "DATA"], "--calib is for --int8 only"),
    (["--int8", "--calib", "DATA", "--calib-images", "0"], "--calib-images 0: must be at least 1"),
    (["--int8", "--calib", "MISSING"], "dataset folder not found"),
    (["--int8", "--calib", "DATA", "--format", "safetensors"], "cannot go with --format safetensors"),
])
def test_bad_int8_export_input_is_a_one_line_error(argv, message, synth_root, tmp_path, capsys):
    weights = _checkpoint(tmp_path / "model.pt")
    argv = [str(synth_root) if a == "DATA" else str(tmp_path / "missing") if a == "MISSING" else a for a in argv]
    assert main(["export", str(tmp_path / "out.onnx"), "--weights", str(weights), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("csrseg: error: ") and message in err
    assert not (tmp_path / "out.onnx").exists()


def test_eval_needs_weights_or_onnx_not_both(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path)]) == 2
    assert main(["eval", "--weights", "a.pt", "--onnx", "a.onnx", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("csrseg: error: give one of --weights") == 2


def test_calibration_images_are_spread_over_the_train_split(synth_root):
    paths = calibration_images(synth_root, 5)
    assert len(paths) == 5 and len(set(paths)) == 5 and all(p.parent.name == "train" for p in paths)
    assert len(calibration_images(synth_root, 1000)) == 12  # all there are


def test_calibration_image_missing_is_named(tmp_path, synth_root):
    import shutil

    from csrseg.deploy.int8 import CalibrationError

    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    victim = calibration_images(root, 1)[0]
    victim.unlink()
    with pytest.raises(CalibrationError, match=victim.name):
        calibration_images(root, 1)


def test_quantize_onnx_writes_nothing_on_failure(tmp_path):
    # an image that cannot be decoded fails calibration: no half-written model is left
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    cfg = tiny_config()
    fp32 = export_onnx(build_model(cfg).eval(), cfg.input, tmp_path / "fp32.onnx")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        quantize_onnx(fp32, tmp_path / "int8.onnx", [bad])
    assert not (tmp_path / "int8.onnx").exists() and not list(tmp_path.glob(".int8*"))


@pytest.mark.slow
def test_int8_export_keeps_onnxruntimes_notes_out_of_the_terminal_unless_verbose(synth_root, tmp_path):
    """onnxruntime's quantizer logs a line for every bias it copies (through the root logger): the user's
    terminal shows csrseg's own lines only, the libraries' with -v."""
    import subprocess
    import sys

    weights = _checkpoint(tmp_path / "model.pt")
    cmd = [sys.executable, "-m", "csrseg.cli", "export", str(tmp_path / "int8.onnx"), "--weights", str(weights),
           "--int8", "--calib", str(synth_root), "--calib-images", "2"]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "Created a copy of bias input" not in quiet.stderr + quiet.stdout
    assert "INT8 ONNX model" in quiet.stdout
    loud = subprocess.run([*cmd[:3], "-v", *cmd[3:], "--exist-ok"], capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0 and "Created a copy of bias input" in loud.stderr
