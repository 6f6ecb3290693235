"""Sliced inference: tiles that cover the frame at one scale, instances placed back exactly, duplicates
across tiles merged, and ``--tile`` through predict and eval for both heads and ONNX."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from csrseg.cli import main
from csrseg.config import to_dict
from csrseg.engine.checkpoint import atomic_save
from csrseg.errors import CsrsegError
from csrseg.inference.predictor import BelowThreshold, Instance, Predictor
from csrseg.inference.tiling import TiledPredictor, Tiling, merge_instances, tile_starts, tile_windows
from csrseg.models import build_model
from csrseg.models.heads.knet.config import KNetConfig
from tests.conftest import CLASSES, fake_checkpoint, tiny_config


@pytest.mark.parametrize("length,size,overlap", [(1000, 256, 0.25), (257, 256, 0.5), (600, 128, 0.0), (100, 256, 0.3)])
def test_tiles_cover_the_axis_with_at_least_the_overlap_asked_and_the_last_flush(length, size, overlap):
    starts = tile_starts(length, size, overlap)
    if length <= size:
        assert starts == [0]
        return
    assert starts[0] == 0 and starts[-1] == length - size  # every tile whole, the last at the end
    gaps = np.diff(starts)
    assert (gaps >= 1).all() and (gaps <= size * (1 - overlap)).all()  # neighbours share at least the overlap


def test_windows_are_row_by_row_and_all_the_same_size():
    windows = tile_windows(300, 500, 128, 0.25)
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows} == {(128, 128)}
    covered = np.zeros((300, 500), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert [w[1] for w in windows] == sorted(w[1] for w in windows)


def _inst(mask: np.ndarray, score: float, label: int = 0) -> Instance:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    return Instance(label, CLASSES[label], label + 1, score, mask[y0 : y1 + 1, x0 : x1 + 1].copy(),
                    (float(x0), float(y0), float(x1), float(y1)), mask.shape)


def _box(shape, x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_a_cut_part_joins_the_whole_object_and_a_duplicate_is_dropped():
    whole = _box((100, 100), 10, 10, 50, 40)
    part = _box((100, 100), 30, 10, 50, 40)  # the half a tile edge at x = 30 cut off
    same = _box((100, 100), 11, 10, 50, 40)  # the same object seen again (IoU 0.975)
    merged = merge_instances([(_inst(part, 0.9), True), (_inst(same, 0.5), False), (_inst(whole, 0.7), False)])
    assert len(merged) == 1  # the part joined the best whole one; the other whole one is its duplicate
    assert merged[0].score == 0.9 and np.array_equal(merged[0].mask, whole)  # the part's score, the whole's mask
    assert merged[0].box == (10.0, 10.0, 49.0, 39.0)


def test_small_objects_a_large_mask_covers_are_kept_and_classes_never_merge():
    large = _box((100, 100), 0, 0, 80, 80)  # one wrong mask over a cluster
    smalls = [_box((100, 100), x, y, x + 8, y + 8) for x, y in [(5, 5), (30, 30), (60, 10)]]
    found = [(_inst(large, 0.9), False)] + [(_inst(m, 0.6), False) for m in smalls]
    found.append((_inst(smalls[0], 0.95, label=1), False))  # another class on the same pixels
    merged = merge_instances(found)
    assert len(merged) == 5
    assert [m.label for m in merged] == [1, 0, 0, 0, 0]


def test_merge_keeps_at_most_max_instances_best_first():
    found = [(_inst(_box((50, 50), i * 5, 0, i * 5 + 4, 4), 0.1 * (i + 1)), False) for i in range(8)]
    kept = merge_instances(found, max_instances=3)
    assert [round(k.score, 1) for k in kept] == [0.8, 0.7, 0.6]


class SquareFinder:
    """A stand-in predictor that finds every bright blob of a tile exactly (its mask, score 0.5 + a
    tenth of its size in px / 1000): what sliced inference does around a model, without the model."""

    class_names, cat_ids, score_thr = CLASSES, [1, 2, 3, 4], 0.0
    input_config = None  # no recorded input: tiles padded with the default mean

    def __init__(self):
        self.below = BelowThreshold()
        self.seen: list[tuple[int, int]] = []

    def predict_batch(self, images):
        out = []
        for image in images:
            self.seen.append(image.shape[:2])
            blobs, n = ndimage.label(image[..., 0] > 200)
            out.append([_inst(blobs == i, 0.5 + (blobs == i).sum() / 1e5) for i in range(1, n + 1)])
        return out


def _frame(height, width, squares):
    frame = np.zeros((height, width, 3), np.uint8)
    for x, y, side in squares:
        frame[y : y + side, x : x + side] = 255
    return frame


@pytest.mark.parametrize("whole", [True, False])
def test_every_small_object_is_found_once_with_its_exact_mask(whole):
    rng = np.random.default_rng(0)
    # 40 squares of 6-20 px anywhere, many across tile edges; none touching another
    squares, taken = [], np.zeros((300, 520), bool)
    while len(squares) < 40:
        side = int(rng.integers(6, 21))
        x, y = int(rng.integers(0, 520 - side)), int(rng.integers(0, 300 - side))
        if not taken[max(0, y - 2) : y + side + 2, max(0, x - 2) : x + side + 2].any():
            taken[y : y + side, x : x + side] = True
            squares.append((x, y, side))
    frame = _frame(300, 520, squares)
    finder = SquareFinder()
    found = TiledPredictor(finder, Tiling(96, overlap=0.25, whole=whole)).predict(frame)
    want = sorted((x, y, x + side - 1, y + side - 1) for x, y, side in squares)
    assert sorted(tuple(int(v) for v in inst.box) for inst in found) == want
    for inst in found:
        x0, y0, x1, y1 = (int(v) for v in inst.box)
        assert inst.image_size == (300, 520) and inst.crop.all() and inst.crop.shape == (y1 - y0 + 1, x1 - x0 + 1)
    assert all(shape == (96, 96) for shape in finder.seen[int(whole):])  # every tile the same size
    assert [i.score for i in found] == sorted((i.score for i in found), reverse=True)


def test_an_object_larger_than_the_overlap_comes_whole_from_the_whole_frame_pass():
    frame = _frame(200, 200, [(70, 70, 60)])  # across the edges of four 96 px tiles
    found = TiledPredictor(SquareFinder(), Tiling(96, overlap=0.25)).predict(frame)
    assert len(found) == 1 and found[0].box == (70.0, 70.0, 129.0, 129.0) and found[0].crop.all()


def test_a_frame_narrower_than_a_tile_is_padded_not_rescaled_and_the_padding_finds_nothing():
    frame = _frame(40, 400, [(10, 5, 12), (200, 20, 15)])
    finder = SquareFinder()
    found = TiledPredictor(finder, Tiling(96, whole=False)).predict(frame)
    assert set(finder.seen) == {(96, 96)}
    assert sorted(i.box for i in found) == [(10.0, 5.0, 21.0, 16.0), (200.0, 20.0, 214.0, 34.0)]


def test_a_frame_one_tile_holds_is_predicted_whole_or_for_a_crop_model_as_one_padded_tile():
    finder = SquareFinder()
    found = TiledPredictor(finder, Tiling(128)).predict(_frame(100, 120, [(3, 3, 10)]))
    assert finder.seen == [(100, 120)] and len(found) == 1
    finder = SquareFinder()  # a crop-trained model (no whole-frame pass) sees its crop's scale
    found = TiledPredictor(finder, Tiling(128, whole=False)).predict(_frame(100, 120, [(3, 3, 10), (100, 80, 20)]))
    assert finder.seen == [(128, 128)]
    assert sorted(i.box for i in found) == [(3.0, 3.0, 12.0, 12.0), (100.0, 80.0, 119.0, 99.0)]
    assert all(i.image_size == (100, 120) for i in found)


@pytest.mark.parametrize("size,overlap,message", [(16, 0.2, "--tile 16: a tile must be at least 32 px"),
                                                  (128, 0.95, "--overlap 0.95: the overlap is a share of the tile")])
def test_tilings_no_model_can_use_are_refused(size, overlap, message):
    with pytest.raises(CsrsegError, match=message):
        Tiling(size, overlap)


def _knet_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    head = KNetConfig(num_proposals=20, num_stages=1, ffn_channels=64, num_groups=8)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=head))
    path = tmp_path / "knet.pt"
    atomic_save(dict(model=build_model(cfg).state_dict(), config=to_dict(cfg), classes=CLASSES, cat_ids=[1, 2, 3, 4]), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiled")
    return dict(solov2=fake_checkpoint(tmp, cls_bias=-3.0), knet=_knet_checkpoint(tmp))


@pytest.mark.parametrize("head", ["solov2", "knet"])
def test_predict_tiled_places_every_instance_in_the_frame(tmp_path, checkpoints, head):
    frame = np.random.default_rng(1).integers(0, 255, (200, 330, 3), dtype=np.uint8)
    tiled = TiledPredictor(Predictor(checkpoints[head], device="cpu", score_thr=0.0), Tiling(128, batch=4))
    found = tiled.predict(frame)
    assert found, "an untrained model made to score everywhere finds something"
    for inst in found:
        x0, y0, x1, y1 = (int(v) for v in inst.box)
        assert inst.image_size == (200, 330) and 0 <= x0 <= x1 < 330 and 0 <= y0 <= y1 < 200
        assert inst.crop.shape == (y1 - y0 + 1, x1 - x0 + 1)
        assert inst.crop[0].any() and inst.crop[-1].any() and inst.crop[:, 0].any() and inst.crop[:, -1].any()
    image = tmp_path / "frame.png"
    Image.fromarray(frame).save(image)
    out = tmp_path / "out"
    assert main(["predict", str(image), "--weights", str(checkpoints[head]), "--out", str(out), "--score-thr", "0",
                 "--tile", "128", "--overlap", "0.3"]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and all(r["segmentation"]["size"] == [200, 330] for r in rows)


def test_eval_tiled_with_a_checkpoint_and_its_onnx_export(tmp_path, checkpoints, synth_root, capsys):
    weights = checkpoints["solov2"]
    assert main(["eval", "--weights", str(weights), "--data", str(synth_root), "--tile", "64", "--workers", "0",
                 "--out", str(tmp_path / "eager.json")]) == 0
    assert "4 images of" in capsys.readouterr().out
    eager = json.loads((tmp_path / "eager.json").read_text())
    assert eager and {r["image_id"] for r in eager} <= {1, 2, 3, 4, *range(16)}
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(onnx_path), "--weights", str(weights)]) == 0
    assert main(["eval", "--onnx", str(onnx_path), "--data", str(synth_root), "--tile", "64",
                 "--out", str(tmp_path / "onnx.json")]) == 0
    onnx = json.loads((tmp_path / "onnx.json").read_text())
    assert abs(len(onnx) - len(eager)) <= max(2, len(eager) // 20)  # one pipeline, two runtimes
    assert set(json.loads((tmp_path / "onnx.metrics.json").read_text())["mask"]) >= {"AP", "APS"}


def test_a_bad_overlap_is_one_line_before_anything_loads(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "--weights", str(tmp_path / "none.pt"), "--tile", "64",
                 "--overlap", "0.95"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrseg: error:") and "--overlap 0.95" in err and "\n" not in err


def test_a_model_trained_on_crops_is_sliced_unasked_in_tiles_of_its_crop_without_a_whole_frame_pass():
    from types import SimpleNamespace

    from csrseg.data.transforms import InputConfig
    from csrseg.inference.tiling import model_tile, tiling_for

    from csrseg.inference.exported import recorded_input

    crops = SimpleNamespace(input_config=InputConfig(crop=256, crop_scale=0.5))
    whole = SimpleNamespace(input_config=InputConfig())
    # a graph's metadata as export writes it, with a key this csrseg does not know (a newer version's)
    onnx = SimpleNamespace(input_config=recorded_input(
        dict(config=dict(input=dict(crop=128, crop_scale=1.0, mean=[0.5, 0.5, 0.5], some_newer_key=1)))))
    assert onnx.input_config.mean == (0.5, 0.5, 0.5) and recorded_input({}) is None
    assert model_tile(crops.input_config) == 512 and model_tile(whole.input_config) is None
    assert tiling_for(crops, None) == Tiling(512, whole=False)
    assert tiling_for(crops, 300, 0.5) == Tiling(300, 0.5, whole=False)
    assert tiling_for(whole, None) is None and tiling_for(whole, 256) == Tiling(256, whole=True)
    assert tiling_for(onnx, None) == Tiling(128, whole=False)
