import json

import numpy as np
import pytest
import torch
from PIL import Image

from csrseg.data.transforms import InputConfig
from csrseg.data import CocoInstances, DatasetError, Transform, collate, load_coco_json, resolve_split


def _write(tmp_path, data, images=((1, 32, 48),)):
    (tmp_path / "img").mkdir(exist_ok=True)
    for image_id, h, w in images:
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / "img" / f"{image_id}.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _coco(**over):
    data = dict(
        images=[dict(id=1, file_name="1.png", height=32, width=48)],
        annotations=[dict(id=7, image_id=1, category_id=3, segmentation=[[4, 4, 20, 4, 20, 20, 4, 20]], iscrowd=0)],
        categories=[dict(id=3, name="thing"), dict(id=9, name="other")],
    )
    data.update(over)
    return data


def _dataset(tmp_path, data, cfg=InputConfig(short_side=32, max_size=48)):
    return CocoInstances(_write(tmp_path, data), tmp_path / "img", Transform(cfg, train=False))


def test_polygon_rle_and_crowd(tmp_path):
    from pycocotools import mask as mask_utils

    square = np.zeros((32, 48), np.uint8, order="F")
    square[10:20, 30:40] = 1
    rle = mask_utils.encode(square)
    anns = [
        dict(id=1, image_id=1, category_id=3, segmentation=[[4, 4, 20, 4, 20, 20, 4, 20]], iscrowd=0),
        dict(id=2, image_id=1, category_id=9, segmentation=dict(size=[32, 48], counts=rle["counts"].decode()), iscrowd=0),
        dict(id=3, image_id=1, category_id=9, segmentation=dict(size=[32, 48], counts=rle["counts"].decode()), iscrowd=1),
    ]
    sample = _dataset(tmp_path, _coco(annotations=anns))[0]
    assert sample["labels"].tolist() == [0, 1]  # ids 3, 9 -> contiguous 0, 1; crowd left out
    assert sample["masks"][1].sum() == 100 and sample["masks"][1, 15, 35] == 1
    assert 200 <= sample["masks"][0].sum() <= 300  # 16x16 polygon, rasterised


def test_image_without_annotations_is_kept(tmp_path):
    ds = _dataset(tmp_path, _coco(annotations=[]))
    assert len(ds) == 1 and ds[0]["masks"].shape == (0, 32, 48)


def test_short_polygons_are_dropped_and_counted(tmp_path):
    anns = [dict(id=5, image_id=1, category_id=3, segmentation=[[1, 1, 5, 5]], iscrowd=0)]
    index = load_coco_json(_write(tmp_path, _coco(annotations=anns)))
    assert index.anns_by_image == {}
    assert sum(index.warnings.values()) == 2  # the polygon and the annotation left empty


@pytest.mark.parametrize(
    "data,message",
    [
        ("[1, 2", "not valid JSON"),
        (dict(images=[]), "no 'annotations'"),
        (_coco(annotations=[dict(id=7, image_id=1, category_id=5, segmentation=[[0, 0, 1, 0, 1, 1]])]), "annotation 7: category_id 5"),
        (_coco(annotations=[dict(id=8, image_id=99, category_id=3, segmentation=[[0, 0, 1, 0, 1, 1]])]), "annotation 8: image_id 99"),
        (_coco(annotations=[dict(id=9, image_id=1, category_id=3, segmentation=dict(size=[5, 5], counts="00"))]), "annotation 9: RLE size"),
        (_coco(images=[dict(id=1, file_name="1.png")]), r"images\[0\]"),
    ],
)
def test_bad_annotation_files_name_file_and_entry(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(DatasetError, match=message) as info:
        load_coco_json(path)
    assert "bad.json" in str(info.value)


def test_missing_and_unreadable_images_are_named(tmp_path):
    data = _coco(images=[dict(id=1, file_name="1.png", height=32, width=48), dict(id=2, file_name="gone.png", height=8, width=8)])
    with pytest.raises(DatasetError, match="gone.png"):
        _dataset(tmp_path, data)
    (tmp_path / "img" / "1.png").write_bytes(b"garbage")
    ds = CocoInstances(tmp_path / "ann.json", tmp_path / "img", Transform(InputConfig(), False), check_files=False)
    with pytest.raises(DatasetError, match="1.png"):
        ds[0]


def test_resolve_split_accepts_coco2017_layout(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    ann, images = resolve_split(tmp_path, "val")
    assert ann.name == "instances_val2017.json" and images == tmp_path / "val2017"
    with pytest.raises(DatasetError, match="instances_train"):
        resolve_split(tmp_path, "train")


def test_resize_flip_pad_keep_masks_aligned(tmp_path):
    cfg = InputConfig(short_side=64, max_size=80, flip_prob=1.0)
    ds = CocoInstances(_write(tmp_path, _coco()), tmp_path / "img", Transform(cfg, train=True))
    sample = ds[0]
    assert sample["image"].shape == (3, 53, 80)  # 32x48 scaled by min(64/32, 80/48) = 5/3
    mask = sample["masks"][0]
    cols = torch.nonzero(mask.any(0)).flatten()
    # the square spans x 4..20 of 48 -> 6.7..33.3 of 80 -> after the flip 46.7..73.3
    assert abs(cols.min().item() - 47) <= 1 and abs(cols.max().item() - 73) <= 1
    images, targets = collate([sample, sample])
    assert images.shape == (2, 3, 64, 96) and targets[0]["masks"].shape == (1, 64, 96)
    assert targets[0]["masks"][:, 53:].sum() == 0 and (images[:, :, 53:] == 0).all()
