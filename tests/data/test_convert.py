"""Converters: COCO -> YOLO-seg / LabelMe / VIA -> COCO gives the same masks; bad input is one line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from csrseg.cli import main
from csrseg.data.coco import decode_segmentation, load_coco_json
from csrseg.data.convert import ConvertError, write_coco_root
from csrseg.data.convert.labelme import read_labelme
from csrseg.data.convert.via import read_via
from csrseg.data.convert.yolo import read_yolo
from tests.conftest import one_line_error

NAMES = ["cat", "dog", "Möwe"]


def _polygon_coco(root, images=5, seed=0):
    """A small COCO set with polygon annotations (two splits), images 96 x 128."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (root / split).mkdir()
        imgs, anns = [], []
        for i in range(1, images + 1):
            name = f"{split}_{i}.png"
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / split / name)
            imgs.append(dict(id=i, file_name=name, height=96, width=128))
            for _ in range(int(rng.integers(1, 4))):
                cx, cy, r = rng.uniform(30, 98), rng.uniform(25, 71), rng.uniform(10, 22)
                angles = np.sort(rng.uniform(0, 2 * np.pi, 6))
                poly = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).round(1).reshape(-1).tolist()
                anns.append(dict(id=len(anns) + 1, image_id=i, category_id=int(rng.integers(1, 4)), iscrowd=0,
                                 segmentation=[poly]))
        cats = [dict(id=i + 1, name=n) for i, n in enumerate(NAMES)]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(dict(images=imgs, annotations=anns, categories=cats), ensure_ascii=False), encoding="utf-8")
    return root


def _objects(root):
    """``{(split, file_name): [(class name, mask), ...]}`` of a COCO ROOT dataset."""
    out = {}
    for split in ("train", "val"):
        index = load_coco_json(root / "annotations" / f"instances_{split}.json")
        for img in index.images:
            out[(split, img["file_name"])] = [
                (index.categories[a["category_id"]], decode_segmentation(a["segmentation"], img["height"], img["width"]).astype(bool))
                for a in index.anns_by_image.get(img["id"], [])]
    return out


def _assert_same_masks(original, converted, keys=None):
    a, b = _objects(original), _objects(converted)
    pairs = {k.split("/")[-1]: v for k, v in ((f"{s}/{n}", v) for (s, n), v in b.items())}
    assert sum(len(v) for v in a.values()) == sum(len(v) for v in b.values())
    for (_, name), objs in a.items():
        theirs = list(pairs[name])
        for cls, mask in objs:
            ious = [(m & mask).sum() / (m | mask).sum() if c == cls else 0.0 for c, m in theirs]
            best = int(np.argmax(ious))
            assert ious[best] > 0.95, (name, cls, ious)
            theirs.pop(best)


def _coco_items(root):
    for split in ("train", "val"):
        data = json.loads((root / "annotations" / f"instances_{split}.json").read_text(encoding="utf-8"))
        names = {c["id"]: c["name"] for c in data["categories"]}
        for img in data["images"]:
            yield split, img, [(names[a["category_id"]], a["segmentation"][0]) for a in data["annotations"]
                               if a["image_id"] == img["id"]]


def test_yolo_round_trip(tmp_path):
    coco = _polygon_coco(tmp_path / "coco")
    yolo = tmp_path / "yolo"
    for split, img, objs in _coco_items(coco):
        (yolo / "images" / split).mkdir(parents=True, exist_ok=True)
        (yolo / "labels" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(coco / split / img["file_name"], yolo / "images" / split / img["file_name"])
        lines = [" ".join([str(NAMES.index(c))] + [f"{v / (img['width'] if i % 2 == 0 else img['height']):.6f}"
                                                    for i, v in enumerate(poly)]) for c, poly in objs]
        (yolo / "labels" / split / img["file_name"]).with_suffix(".txt").write_text("\n".join(lines))
    (yolo / "data.yaml").write_text(yaml.safe_dump(dict(path=".", train="images/train", val="images/val",
                                                        names=NAMES), allow_unicode=True), encoding="utf-8")
    # through the Python API: `csrseg convert yolo` is wired to read_yolo's third value by the CLI's rewrite
    splits, names, skipped = read_yolo(yolo)
    write_coco_root(tmp_path / "out", splits, names)
    assert not skipped
    _assert_same_masks(coco, tmp_path / "out")
    assert (tmp_path / "out" / "train" / "train_1.png").is_symlink()


def test_labelme_round_trip_with_copied_images(tmp_path):
    coco = _polygon_coco(tmp_path / "coco")
    labelme = tmp_path / "labelme"
    for split, img, objs in _coco_items(coco):
        (labelme / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(coco / split / img["file_name"], labelme / split / img["file_name"])
        shapes = [dict(label=c, points=np.reshape(poly, (-1, 2)).tolist(), group_id=None, shape_type="polygon")
                  for c, poly in objs]
        shapes.append(dict(label="cat", points=[[1, 1]], group_id=None, shape_type="point"))  # no area: skipped
        doc = dict(version="5.4.1", shapes=shapes, imagePath=img["file_name"], imageHeight=96, imageWidth=128)
        (labelme / split / img["file_name"]).with_suffix(".json").write_text(json.dumps(doc))
    assert main(["convert", "labelme", str(labelme), str(tmp_path / "out"), "--copy"]) == 0
    _assert_same_masks(coco, tmp_path / "out")
    assert not (tmp_path / "out" / "val" / "val_1.png").is_symlink()


def test_via_round_trip_with_a_class_attribute(tmp_path):
    coco = _polygon_coco(tmp_path / "coco")
    via = tmp_path / "via"
    via.mkdir()
    export = {}
    for split, img, objs in _coco_items(coco):
        shutil.copy(coco / split / img["file_name"], via / img["file_name"])
        regions = [dict(shape_attributes=dict(name="polygon", all_points_x=poly[0::2], all_points_y=poly[1::2]),
                        region_attributes=dict(species=c)) for c, poly in objs]
        export[f"{img['file_name']}123"] = dict(filename=img["file_name"], size=123, regions=regions, file_attributes={})
    (via / "via_export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    assert main(["convert", "via", str(via / "via_export.json"), str(tmp_path / "out"), "--class-attr", "species"]) == 0
    _assert_same_masks(coco, tmp_path / "out")
    names = {c["name"] for c in json.loads((tmp_path / "out/annotations/instances_train.json").read_text(encoding="utf-8"))["categories"]}
    assert names == set(NAMES)


@pytest.mark.parametrize(
    "fmt,make,message",
    [
        ("yolo", lambda d: (d / "data.yaml").write_text("train: images/train\n"), "needs 'names'"),
        ("yolo", lambda d: ((d / "data.yaml").write_text("names: [a]\ntrain: images/train\n"),
                            (d / "images/train").mkdir(parents=True), (d / "labels/train").mkdir(parents=True),
                            Image.new("RGB", (8, 8)).save(d / "images/train/x.png"),
                            (d / "labels/train/x.txt").write_text("3 0.1 0.1 0.5 0.1 0.5 0.5\n")),
         "x.txt:1: class 3 is not one of the 1"),
        ("labelme", lambda d: (d / "a.json").write_text("{not json"), "a.json: not valid JSON"),
        ("labelme", lambda d: (d / "a.json").write_text('{"shapes": []}'), "not a LabelMe file"),
        ("via", lambda d: (d / "v.json").write_text(json.dumps({"a.png1": dict(filename="a.png", regions=[
            dict(shape_attributes=dict(name="rect", x=1, y=1, width=3, height=3), region_attributes={"kind": "x"})])})),
         "no region attribute 'class'"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys, fmt, make, message):
    src = tmp_path / "src"
    src.mkdir()
    make(src)
    assert main(["convert", fmt, str(src), str(tmp_path / "out")]) == 2
    one_line_error(capsys, message)


def _records(names):
    from csrseg.data.convert import ImageRecord

    return [ImageRecord(Path(name)) for name in names]


def _names(records):
    return sorted(r.path.name for r in records)


def test_split_by_name_gives_val_exactly_its_share():
    from csrseg.data.convert import split_by_name

    counts = {}
    for names, fraction in ((["a.jpg"], 0.2), ([f"img_{i}.jpg" for i in range(3)], 0.2),
                            ([f"photo_{i:02d}.jpg" for i in range(10)], 0.2), ([f"{i}.png" for i in range(4)], 1.0),
                            ([f"{i}.png" for i in range(4)], 0.0)):
        splits = split_by_name(_records(names), fraction)
        assert _names(splits["train"] + splits["val"]) == sorted(names)
        counts[(len(names), fraction)] = (len(splits["train"]), len(splits["val"]))
    # one image trains (it cannot be both); at least one image always trains; a share of 0 is no val
    assert counts == {(1, 0.2): (1, 0), (3, 0.2): (2, 1), (10, 0.2): (8, 2), (4, 1.0): (1, 3), (4, 0.0): (4, 0)}


def test_labelme_without_split_folders_puts_a_fifth_of_ten_images_in_val(tmp_path):
    for i in range(10):
        name = f"photo_{i:02d}.jpg"
        Image.new("RGB", (8, 8)).save(tmp_path / name)
        (tmp_path / name).with_suffix(".json").write_text(json.dumps(dict(shapes=[], imagePath=name)))
    splits, _, _ = read_labelme(tmp_path, 0.2)
    assert (len(splits["train"]), len(splits["val"])) == (8, 2)


def test_split_by_name_ignores_file_order_and_adding_files_keeps_the_old_ranking():
    import random

    from csrseg.data.convert import split_by_name

    names = [f"photo_{i:02d}.jpg" for i in range(10)]
    shuffled = random.Random(0).sample(names, len(names))
    small = split_by_name(_records(names), 0.2)
    assert {s: _names(r) for s, r in split_by_name(_records(shuffled), 0.2).items()} == {s: _names(r) for s, r in small.items()}
    large = split_by_name(_records(names + [f"photo_{i:02d}.jpg" for i in range(10, 25)]), 0.2)
    assert len(small["val"]) == 2 and len(large["val"]) == 5
    # both vals are a prefix of one ranking: of the old files, one val holds the other's
    old_in_large = set(_names(large["val"])) & set(names)
    assert old_in_large <= set(_names(small["val"])) or set(_names(small["val"])) <= old_in_large


def _tiny_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (16, 12)).save(folder / name)


def _via_export(folder, names):
    """A VIA export beside ``folder``'s images naming ``names``, one square region each."""
    region = dict(shape_attributes=dict(name="rect", x=2, y=2, width=6, height=6), region_attributes={"class": "box"})
    export = {f"{n}99": dict(filename=n, size=99, regions=[region], file_attributes={}) for n in names}
    (folder / "via.json").write_text(json.dumps(export))
    return folder / "via.json"


def test_via_skips_images_missing_from_the_folder_and_names_the_first(tmp_path):
    names = [f"im{i}.png" for i in range(6)]
    _tiny_images(tmp_path / "via", ["im1.png", "im3.png", "im5.png"])
    splits, classes, skipped = read_via(_via_export(tmp_path / "via", names), "class", 0.2)
    assert skipped == {f"images named by the annotations but missing from {tmp_path / 'via'}, skipped "
                       "(first: im0.png, im2.png, im4.png)": 3}
    assert sorted(r.path.name for rs in splits.values() for r in rs) == ["im1.png", "im3.png", "im5.png"]
    write_coco_root(tmp_path / "out", splits, classes)  # a skipped image never reaches it
    images = [img["file_name"] for s in ("train", "val") for img in load_coco_json(
        tmp_path / "out" / "annotations" / f"instances_{s}.json").images]
    assert sorted(images) == ["im1.png", "im3.png", "im5.png"]


def test_labelme_skips_an_image_missing_from_the_folder_and_converts_the_rest(tmp_path, capsys):
    src = tmp_path / "lm"
    _tiny_images(src / "train", ["a.png", "b.png"])
    _tiny_images(src / "val", ["c.png"])
    for split, name in (("train", "a.png"), ("train", "b.png"), ("train", "gone.png"), ("val", "c.png")):
        shape = dict(label="box", points=[[1, 1], [8, 8]], shape_type="rectangle")
        doc = dict(shapes=[shape], imagePath=name, imageHeight=12, imageWidth=16)
        (src / split / name).with_suffix(".json").write_text(json.dumps(doc))
    assert main(["convert", "labelme", str(src), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"1 images named by the annotations but missing from {src}, skipped (first: train/gone.png)" in err
    assert [img["file_name"] for img in load_coco_json(tmp_path / "out/annotations/instances_train.json").images] == \
        ["a.png", "b.png"]


def test_yolo_skips_a_label_file_without_its_image_and_returns_three_values(tmp_path):
    root = tmp_path / "yolo"
    _tiny_images(root / "images" / "train", ["a.png"])
    (root / "labels" / "train").mkdir(parents=True)
    for name in ("a", "gone"):
        (root / "labels" / "train" / f"{name}.txt").write_text("0 0.1 0.1 0.6 0.1 0.6 0.6\n")
    (root / "data.yaml").write_text("names: [box]\ntrain: images/train\n")
    splits, names, skipped = read_yolo(root)
    assert [r.path.name for r in splits["train"]] == ["a.png"] and names == ["box"]
    assert skipped == {f"images named by label files but missing from {root}, skipped "
                       "(first: labels/train/gone.txt)": 1}


@pytest.mark.parametrize("fmt", ["via", "labelme"])
def test_every_image_missing_is_one_line_naming_the_folder_the_count_and_the_first(tmp_path, capsys, fmt):
    src = tmp_path / "src"
    src.mkdir()
    if fmt == "via":
        _via_export(src, ["b.png", "a.png"])
    else:
        for name in ("b.png", "a.png"):
            (src / name).with_suffix(".json").write_text(json.dumps(dict(shapes=[], imagePath=name)))
    assert main(["convert", fmt, str(src), str(tmp_path / "out")]) == 2
    first = "b.png" if fmt == "via" else "a.png"  # the export's order; LabelMe's .json files by name
    one_line_error(capsys, f"{src}: none of the 2 images named by the annotations is there (first missing: {first})")


def test_yolo_with_every_image_missing_is_refused(tmp_path):
    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.1 0.1 0.6 0.1 0.6 0.6\n")
    (root / "data.yaml").write_text("names: [box]\ntrain: images/train\n")
    with pytest.raises(ConvertError, match=r"none of the 1 images named by label files is there \(first missing: "
                                           r"labels/train/a.txt\)"):
        read_yolo(root)


def test_an_image_that_is_there_but_unreadable_stays_an_error_naming_it(tmp_path, capsys):
    src = tmp_path / "via"
    _tiny_images(src, ["good.png"])
    (src / "broken.png").write_bytes(b"not a png")
    _via_export(src, ["missing.png", "broken.png", "good.png"])  # the missing one first: it is skipped, not named
    assert main(["convert", "via", str(src), str(tmp_path / "out"), "--val-fraction", "0"]) == 2
    one_line_error(capsys, f"{src / 'broken.png'}: not a readable image")
