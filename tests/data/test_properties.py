"""Property-based tests of the COCO reader and the transforms (hypothesis)."""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from csrseg.data.transforms import InputConfig
from csrseg.data import CocoInstances, DatasetError, Transform, collate, load_coco_json

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def segmentations(draw, height, width):
    kind = draw(st.sampled_from(["polygon", "rle", "rle_list", "huge", "tiny", "degenerate"]))
    coord = st.floats(-5, max(height, width) + 5, allow_nan=False)
    if kind == "polygon":
        parts = draw(st.lists(st.lists(coord, min_size=6, max_size=16).filter(lambda p: len(p) % 2 == 0), min_size=1, max_size=2))
        return parts
    if kind == "huge":
        return [[-100.0, -100.0, width + 100.0, -100.0, width + 100.0, height + 100.0, -100.0, height + 100.0]]
    if kind == "tiny":
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        return [[x, y, x + 0.5, y, x + 0.5, y + 0.5]]
    if kind == "degenerate":  # collinear points: zero area
        x = draw(st.integers(0, width - 1))
        return [[x, 0, x, height / 2, x, height - 1]]
    bits = draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
    mask = np.asfortranarray(np.array(bits, dtype=np.uint8).reshape(height, width))
    rle = mask_utils.encode(mask)
    if kind == "rle":
        return dict(size=[height, width], counts=rle["counts"].decode())
    # uncompressed RLE: run lengths in column-major order
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return dict(size=[height, width], counts=counts)


@st.composite
def coco_datasets(draw):
    n_images = draw(st.integers(1, 3))
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        h, w = draw(st.integers(4, 24)), draw(st.integers(4, 24))
        images.append(dict(id=image_id * 10, file_name=f"{image_id}.png", height=h, width=w))
        for _ in range(draw(st.integers(0, 4))):  # 0: an image without instances
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id * 10, category_id=draw(st.sampled_from([2, 5, 9])),
                                    segmentation=draw(segmentations(h, w)), iscrowd=draw(st.sampled_from([0, 0, 1]))))
    categories = [dict(id=c, name=f"c{c}") for c in (2, 5, 9)]
    return dict(images=images, annotations=annotations, categories=categories)


def _write(data):
    root = Path(tempfile.mkdtemp())
    for im in data["images"]:
        Image.fromarray(np.zeros((im["height"], im["width"], 3), np.uint8)).save(root / im["file_name"])
    (root / "ann.json").write_text(json.dumps(data))
    return root


@SETTINGS
@given(data=coco_datasets(), short=st.integers(8, 40), flip=st.booleans())
def test_valid_coco_never_crashes_the_loader(data, short, flip):
    root = _write(data)
    ds = CocoInstances(root / "ann.json", root, Transform(InputConfig(short_side=short, max_size=64, flip_prob=float(flip)), True))
    samples = [ds[i] for i in range(len(ds))]
    for sample, info in zip(samples, data["images"]):
        h, w = sample["image"].shape[-2:]
        assert sample["masks"].shape[1:] == (h, w) and sample["masks"].shape[0] == sample["labels"].shape[0]
        assert sample["orig_size"] == (info["height"], info["width"])
        assert set(sample["labels"].tolist()) <= {0, 1, 2}
    images, targets = collate(samples)
    assert images.shape[-1] % 32 == 0 and all(t["masks"].shape[-2:] == images.shape[-2:] for t in targets)


@SETTINGS
@given(h=st.integers(5, 60), w=st.integers(5, 60), short=st.integers(8, 80), flip=st.booleans(),
       seed=st.integers(0, 2**16))
def test_masks_stay_aligned_with_the_image_through_resize_flip_pad(h, w, short, flip, seed):
    rng = np.random.default_rng(seed)
    masks = (rng.random((2, h, w)) > 0.6).astype(np.uint8)
    image = torch.from_numpy(np.stack([masks[0] * 255, masks[1] * 255, np.zeros((h, w))])).float()
    cfg = InputConfig(short_side=short, max_size=100, flip_prob=float(flip))
    out_image, out_masks = Transform(cfg, train=True)(image, torch.from_numpy(masks), rng)
    raw = out_image * torch.tensor(cfg.std)[:, None, None] * 255 + torch.tensor(cfg.mean)[:, None, None] * 255
    images, (target,) = collate([dict(image=raw, masks=out_masks)])
    for k in range(2):
        level = images[0, k] / 255
        decided = (level - 0.5).abs() > 1e-3  # the image channel is the mask, resized by the same operator
        assert torch.equal((level >= 0.5)[decided], target["masks"][k].bool()[decided])


def _valid():
    return dict(images=[dict(id=1, file_name="1.png", height=8, width=8)],
                annotations=[dict(id=1, image_id=1, category_id=1, segmentation=[[0, 0, 4, 0, 4, 4]])],
                categories=[dict(id=1, name="a")])


BREAKAGES = [
    lambda d: d.pop("categories"),
    lambda d: d["annotations"][0].update(category_id=77),
    lambda d: d["annotations"][0].update(image_id=3),
    lambda d: d["annotations"][0].update(segmentation="oops"),
    lambda d: d["annotations"][0].update(segmentation=[["a", "b", "c", "d", "e", "f"]]),
    lambda d: d["annotations"][0].update(segmentation=dict(size=[2, 2], counts="0")),
    lambda d: d["annotations"].append(7),
    lambda d: d["images"][0].pop("height"),
    lambda d: d["images"].append(dict(d["images"][0])),
    lambda d: d["images"][0].update(width=-3),
    lambda d: d.update(images={"not": "a list"}),
    lambda d: d["categories"].append({"name": "no id"}),
]


@SETTINGS
@given(breaks=st.lists(st.sampled_from(range(len(BREAKAGES))), min_size=1, max_size=3, unique=True))
def test_invalid_coco_gives_the_documented_error(breaks):
    data = _valid()
    for b in breaks:
        try:
            BREAKAGES[b](data)
        except (KeyError, AttributeError, TypeError, IndexError):
            pass  # an earlier breakage removed what this one edits: still invalid
    path = Path(tempfile.mkdtemp()) / "ann.json"
    path.write_text(json.dumps(data))
    try:
        load_coco_json(path)
    except DatasetError as exc:
        assert str(path) in str(exc)
    else:
        raise AssertionError(f"accepted an invalid file: breakages {breaks}")
