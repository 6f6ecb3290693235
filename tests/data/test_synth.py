import json

import numpy as np

from csrseg.data.coco import decode_segmentation
from csrseg.data.synth import CLASSES, SynthSpec, make_synthetic_dataset, render_image


def test_same_seed_same_dataset_other_seed_other(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", 6, seed=1)
    b = make_synthetic_dataset(tmp_path / "b", 6, seed=1)
    c = make_synthetic_dataset(tmp_path / "c", 6, seed=2)
    for split in ("train", "val"):
        assert (a / "annotations" / f"instances_{split}.json").read_text() == (b / "annotations" / f"instances_{split}.json").read_text()
    assert (a / "train" / "000000.png").read_bytes() == (b / "train" / "000000.png").read_bytes()
    assert (a / "train" / "000000.png").read_bytes() != (c / "train" / "000000.png").read_bytes()


def test_dataset_is_not_trivial(tmp_path):
    root = make_synthetic_dataset(tmp_path, 60, seed=0, val_fraction=0.1)
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=len(data["images"]) + 1)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 10 and per_image.max() >= 6
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in data["annotations"]]
    assert min(sides) <= 14 and max(sides) >= 0.45 * 256
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3, 4}
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds == {"list", "dict"}  # polygons and RLE both present


def test_annotations_are_the_visible_parts():
    rng = np.random.default_rng(5)
    spec = SynthSpec(min_instances=8, max_instances=10)
    for _ in range(5):
        _, instances = render_image(rng, spec)
        union = np.zeros((256, 256), dtype=int)
        for inst in instances:
            union += inst["mask"]
        assert union.max() <= 1  # visible parts never overlap


def test_area_and_box_match_what_a_coco_reader_decodes(tmp_path):
    root = make_synthetic_dataset(tmp_path, 10, seed=4)
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert any(isinstance(a["segmentation"], list) for a in data["annotations"])
    for ann in data["annotations"]:
        mask = decode_segmentation(ann["segmentation"], 256, 256)
        assert mask.sum() == ann["area"]
        ys, xs = np.nonzero(mask)
        assert ann["bbox"][:2] == [xs.min(), ys.min()]


def test_size_advice_names_the_settings_that_keep_small_objects_and_their_cost():
    import numpy as np

    from csrseg.data.sizes import size_advice
    from csrseg.data.transforms import InputConfig

    frames = [(1080, 1920)] * 4
    native = np.full(100, 30.0)  # 30 px objects in 1920 x 1080 frames
    lines = size_advice(native, InputConfig(short_side=256, max_size=456), frames)
    assert lines[0].startswith("objects at the input (input short side 256, long side at most 456): median 7 px, 100% under 16 px")
    # the median object at 16 px: 16/30 of the frame's own scale, 576 px short side; a 256 px crop at scale 1
    assert "input.short_side=576 input.max_size=1056" in lines[1] and "about 5.1x today's" in lines[1]
    assert "input.crop=256 input.crop_scale=1" in lines[1] and "about 0.6x today's" in lines[1] and "--tile 256" in lines[1]
    assert size_advice(native, InputConfig(short_side=1080, max_size=1920), frames) == [
        "objects at the input (input short side 1080, long side at most 1920): median 30 px, 0% under 16 px"]
