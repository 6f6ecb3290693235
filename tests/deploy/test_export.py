"""ONNX export: the whole pipeline in the graph, the same instances as PyTorch."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from csrseg.deploy.onnx import checkpoint_metadata, export_onnx
from csrseg.models.heads.common import boxes_from_masks
from csrseg.masks.crops import MaskCrops
from csrseg.inference.onnx_predictor import OnnxPredictor
from csrseg.inference.predictor import Predictor
from tests.conftest import CLASSES, fake_checkpoint, match_instances



def _images():
    rng = np.random.default_rng(0)
    # the last one is already at the input size (128 px long side): no resize, the graph's other branch
    return [rng.integers(0, 255, (100, 150, 3), dtype=np.uint8), rng.integers(0, 255, (90, 60, 3), dtype=np.uint8),
            rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    # bias -3: a few dozen candidates, far from the nms_pre and max_per_img cuts, where
    # numerical noise between runtimes could decide which of two near-equal scores survives
    weights = fake_checkpoint(tmp, cls_bias=-3.0)
    predictor = Predictor(weights, device="cpu", score_thr=0.0)
    meta = checkpoint_metadata(predictor.cfg, predictor.class_names, predictor.cat_ids)
    return predictor, export_onnx(predictor.model, predictor.cfg.input, tmp / "model.onnx", meta)


@pytest.mark.numerics
def test_onnx_and_pytorch_give_the_same_instances(exported):
    predictor, path = exported
    onnx_predictor = OnnxPredictor(path, score_thr=0.0)
    assert onnx_predictor.class_names == CLASSES
    for image in _images():
        ours = predictor.predict(image)
        theirs = onnx_predictor.predict(image)
        assert len(ours) > 3
        assert all(i.mask.shape == image.shape[:2] for i in ours + theirs)
        # Matched by class and mask, not position: near-equal scores (0.21325 vs 0.21358 was
        # seen on an AVX2 CPU) may come out of the two runtimes in either order.
        for a, b in match_instances(ours, theirs, min_iou=0.99, score_tol=1e-3):
            assert a.class_name == b.class_name


def test_onnx_with_nothing_detected_returns_empty_outputs(tmp_path):
    weights = fake_checkpoint(tmp_path, cls_bias=-30.0)
    predictor = Predictor(weights, device="cpu", score_thr=0.0)
    path = export_onnx(predictor.model, predictor.cfg.input, tmp_path / "empty.onnx")
    image = _images()[0]
    assert predictor.predict(image) == [] and OnnxPredictor(path, score_thr=0.0).predict(image) == []


def test_exported_graph_passes_the_checker_and_has_dynamic_size(exported):
    import onnx

    _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 3, "height", "width"]
    assert model.opset_import[0].version >= 17


def test_exported_masks_are_reduced_in_bytes_and_resized_only_when_needed(exported):
    import onnx

    # torch exports ``any`` as Cast(int64) + ReduceSum: 8 bytes a pixel over 100 full-size masks,
    # which was most of the ONNX post-processing's time and its memory peak (issue 14)
    _, path = exported
    graph = onnx.load(str(path)).graph
    produced_by = {out: node for node in graph.node for out in node.output}
    byte_max = [node for node in graph.node if node.op_type == "ReduceMax"
                and produced_by[node.input[0]].op_type == "Cast"
                and produced_by[node.input[0]].attribute[0].i == onnx.TensorProto.UINT8]
    assert len(byte_max) >= 2  # rows and columns of the masks: boxes and empty masks
    # the resize to the original size is a branch: skipped when the image needed no resize
    branches = [node for node in graph.node if node.op_type == "If"]
    assert branches and any(n.op_type == "Resize" for b in branches for g in b.attribute for n in g.g.node)


@pytest.mark.numerics
def test_static_and_eager_postprocessing_agree(exported):
    predictor, _ = exported
    from csrseg.data.transforms import collate

    sample = predictor._sample(_images()[0])
    images, targets = collate([sample])
    with torch.no_grad():
        outputs = predictor.model(images)
        eager = predictor.model.postprocess(outputs, [targets[0]["input_size"]], [targets[0]["orig_size"]])[0]
        static = predictor.model.postprocess(outputs, [targets[0]["input_size"]], [targets[0]["orig_size"]], static=True)[0]
    # the static path multiplies every cell's kernel, the eager one only the candidates': matrix
    # products of other shapes may round differently, so near-equal scores may swap places
    def instances(result):
        masks = result["masks"]
        masks = masks.dense() if isinstance(masks, MaskCrops) else masks
        return [SimpleNamespace(label=int(lab), score=float(sc), mask=m.numpy())
                for lab, sc, m in zip(result["labels"], result["scores"], masks)]

    assert len(eager["scores"]) > 3
    for a, b in match_instances(instances(eager), instances(static), min_iou=1.0, score_tol=1e-5):
        assert (a.mask == b.mask).all()


def test_boxes_from_masks_matches_torchvision():
    from torchvision.ops import masks_to_boxes

    g = torch.Generator().manual_seed(1)
    masks = torch.rand(6, 20, 30, generator=g) > 0.97
    torch.testing.assert_close(boxes_from_masks(masks), masks_to_boxes(masks))


def test_a_crop_trained_model_is_exported_seeing_images_at_its_crop_scale():
    import dataclasses

    from csrseg.deploy.onnx import ExportModel
    from csrseg.models import build_model
    from tests.conftest import tiny_config

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, crop=64, crop_scale=0.5))
    model = build_model(cfg).eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    image = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    with torch.no_grad():
        ExportModel(model, cfg.input)(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
    Predictor.for_model(model, cfg, CLASSES, [1, 2, 3, 4], "cpu").predict(image)
    assert seen == [(64, 96), (64, 96)]  # 50 x 75 at scale 0.5, padded to 32s, in both: not resized to 128


def test_an_onnx_models_coco_rows_from_its_instances_equal_those_from_its_raw_outputs(exported):
    from csrseg.evaluation.coco import instances_to_coco, predictions_to_coco

    _, path = exported
    onnx_predictor = OnnxPredictor(path, score_thr=0.0)
    for image in _images():
        rows = instances_to_coco(7, onnx_predictor.predict(image))
        assert rows and rows == predictions_to_coco(7, onnx_predictor.run(image), onnx_predictor.cat_ids)
