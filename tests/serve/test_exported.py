"""An exported ONNX model served as a checkpoint is: the same answers as its OnnxPredictor, its
format and hash in /metadata."""

from __future__ import annotations

import hashlib

import pytest

from csrseg.inference.onnx_predictor import OnnxPredictor
from csrseg.serve import app
from tests.serve.conftest import TestClient


@pytest.fixture(scope="module")
def onnx_model(weights, tmp_path_factory):
    from csrseg.deploy.onnx import checkpoint_metadata, export_onnx
    from csrseg.engine.checkpoint import load_trained_model

    trained = load_trained_model(weights, "cpu")
    meta = checkpoint_metadata(trained.cfg, trained.class_names, trained.cat_ids)
    return export_onnx(trained.model, trained.cfg.input, tmp_path_factory.mktemp("onnx") / "model.onnx", meta)


def test_an_onnx_model_is_served_with_its_predictors_instances(onnx_model, image_files):
    expected = OnnxPredictor(onnx_model, score_thr=0.3).predict(image_files[0])
    with TestClient(app(onnx=onnx_model)) as client:
        answer = client.post("/predict", content=image_files[0].read_bytes()).json()
        meta = client.get("/metadata").json()
    assert [i["score"] for i in answer["instances"]] == pytest.approx([i.score for i in expected], abs=1e-5)
    assert [i["class_name"] for i in answer["instances"]] == [i.class_name for i in expected]
    assert meta["model"] == dict(file="model.onnx", format="onnx", precision="fp32",
                                 sha256={"model.onnx": hashlib.sha256(onnx_model.read_bytes()).hexdigest()})
    assert meta["input"]["short_side"] == 128


def test_onnx_must_name_an_onnx_file(weights):
    from csrseg.errors import CsrsegError

    with pytest.raises(CsrsegError, match="--onnx .*: expected a .onnx file"):
        app(onnx=weights)
