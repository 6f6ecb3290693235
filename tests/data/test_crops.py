"""Training on crops (tiles) of the image at its own scale: ``input.crop`` / ``input.crop_scale``."""

import numpy as np
import pytest
import torch

from csrseg.data import CocoInstances, Transform, resolve_split
from csrseg.data.transforms import InputConfig, crop_window


def test_a_crop_window_fits_the_image_and_is_centred_on_an_object_when_asked():
    cfg = InputConfig(crop=64, crop_scale=1.0)
    box = np.array([[100.0, 40.0, 120.0, 60.0]])  # xyxy, centre (110, 50)
    centred = [crop_window(200, 300, cfg, box, np.random.default_rng(seed)) for seed in range(40)]
    for y0, x0, y1, x1 in centred:
        assert 0 <= y0 < y1 <= 200 and 0 <= x0 < x1 <= 300 and (y1 - y0, x1 - x0) == (64, 64)
    assert any((y0, x0) == (18, 78) for y0, x0, _, _ in centred)  # some on the object, clipped to the frame
    assert crop_window(40, 50, cfg, box, np.random.default_rng(0)) == (0, 0, 40, 50)  # a smaller image: whole
    half = InputConfig(crop=64, crop_scale=0.5)
    y0, x0, y1, x1 = crop_window(300, 300, half, np.zeros((0, 4)), np.random.default_rng(1))
    assert (y1 - y0, x1 - x0) == (128, 128)  # 128 px of the image make the 64 px crop at scale 0.5


def test_a_training_sample_is_its_crop_with_the_objects_it_holds(synth_root):
    whole = CocoInstances(*resolve_split(synth_root, "train"), Transform(InputConfig(short_side=128, max_size=128), train=True))
    cropped = CocoInstances(*resolve_split(synth_root, "train"), Transform(InputConfig(crop=48, flip_prob=0.0), train=True))
    shapes, counts = set(), []
    for idx in range(len(cropped)):
        sample = cropped[idx]
        shapes.add(tuple(sample["image"].shape[-2:]))
        assert sample["masks"].shape[-2:] == sample["image"].shape[-2:] and len(sample["labels"]) == len(sample["masks"])
        assert all(m.any() for m in sample["masks"])  # a cut instance is the part the crop holds, never empty
        counts.append((len(sample["masks"]), len(whole[idx]["masks"])))
    assert shapes == {(48, 48)}
    assert all(c <= w for c, w in counts) and any(c < w for c, w in counts)  # some objects fall outside


def test_a_crop_decodes_the_crop_not_the_frame(synth_root):
    dataset = CocoInstances(*resolve_split(synth_root, "train"), Transform(InputConfig(crop=32), train=True))
    full_image, full_masks, full_labels, _ = dataset.load(0)
    image, masks, labels, _ = dataset.load(0, (10, 20, 42, 52))
    assert image.shape[:2] == (32, 32) and np.array_equal(image, full_image[10:42, 20:52])
    inside = [m[10:42, 20:52] for m in full_masks]
    kept = [m for m in inside if m.any()]
    assert len(masks) <= len(full_masks) and sum(int(m.sum()) for m in masks) == sum(int(m.sum()) for m in kept)


def test_crop_settings_no_run_could_use_are_refused():
    from csrseg.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="input.crop must be at least 0"):
        load_config("demo", ["input.crop=-1"])
    with pytest.raises(ConfigError, match="input.crop_scale must be above 0, got 0.0"):
        load_config("demo", ["input.crop_scale=0"])
    with pytest.raises(ConfigError, match="input.crop_scale must be a finite number, got inf"):
        load_config("demo", ["input.crop_scale=inf"])


def test_training_on_crops_runs_and_evaluates_in_tiles_of_the_crop(synth_root, tmp_path, monkeypatch):
    import dataclasses

    from csrseg.api import train
    from csrseg.inference.tiling import TiledPredictor
    from tests.conftest import tiny_config

    cfg = tiny_config(epochs=1, batch_size=4, max_iters=2)
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, crop=64))
    sliced = []
    predict = TiledPredictor.predict
    monkeypatch.setattr(TiledPredictor, "predict", lambda self, image: sliced.append(self.tiling) or predict(self, image))
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False)
    assert result.iterations == 2 and set(result.metrics) >= {"AP", "APS"}
    assert len(sliced) == 4 and {(t.size, t.whole) for t in sliced} == {(64, False)}  # the 4 val images, in 64 px tiles
    assert torch.load(result.last, weights_only=True)["config"]["input"]["crop"] == 64
