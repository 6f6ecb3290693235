"""Every COCO layout resolves to the same (annotation file, image folder) pairs; bad input is one line."""

import json
import shutil

import pytest

from tests.conftest import tiny_config
from csrseg.cli import main
from csrseg.config import save_config
from csrseg.data import DatasetError
from csrseg.data.sources import resolve_dataset
from csrseg.data.splits import training_splits


def _roboflow(synth_root, dst, parent_category=True):
    """The synthetic set as a Roboflow export: train/ and valid/ with ``_annotations.coco.json`` beside
    the images, plus Roboflow's unannotated parent category with id 0."""
    for split, folder in (("train", "train"), ("val", "valid")):
        shutil.copytree(synth_root / split, dst / folder)
        data = json.loads((synth_root / "annotations" / f"instances_{split}.json").read_text())
        if parent_category:
            data["categories"].insert(0, dict(id=0, name="shapes", supercategory="none"))
        (dst / folder / "_annotations.coco.json").write_text(json.dumps(data))
    return dst


def _cvat(synth_root, dst):
    """CVAT's COCO 1.0 export: annotations/instances_default.json + images/."""
    shutil.copytree(synth_root / "train", dst / "images")
    (dst / "annotations").mkdir()
    shutil.copy(synth_root / "annotations" / "instances_train.json", dst / "annotations" / "instances_default.json")
    return dst


def _root_beside_a_via_export(synth_root, dst):
    """A valid COCO ROOT set whose train/ also holds a VIA export saved as ``_annotations.coco.json``."""
    shutil.copytree(synth_root, dst)
    via = {"train_1.png123": dict(filename="train_1.png", size=123, regions=[], file_attributes={})}
    (dst / "train" / "_annotations.coco.json").write_text(json.dumps(via))
    return dst


def _two_valid_layouts(synth_root, dst):
    """A COCO ROOT set that is also a valid Roboflow export: ``_annotations.coco.json`` in train/ and in valid/."""
    shutil.copytree(synth_root, dst)
    shutil.copytree(dst / "val", dst / "valid")
    for split, folder in (("train", "train"), ("val", "valid")):
        shutil.copy(synth_root / "annotations" / f"instances_{split}.json", dst / folder / "_annotations.coco.json")
    return dst


def test_root_layout_is_found_and_described(synth_root):
    sources = resolve_dataset(synth_root)
    assert sources.layout == "root"
    assert sources.get("train").annotations == synth_root / "annotations" / "instances_train.json"
    assert sources.get("val").images == synth_root / "val"
    line = sources.describe()
    assert "COCO ROOT layout" in line and "instances_val.json" in line and "\n" not in line


def test_roboflow_export_pairs_each_json_with_its_folder(synth_root, tmp_path):
    root = _roboflow(synth_root, tmp_path / "rf")
    sources = resolve_dataset(root)
    assert sources.layout == "roboflow"
    assert sources.get("val").annotations == root / "valid" / "_annotations.coco.json"
    assert sources.get("val") == sources.get("valid")
    assert sources.get("train").images == root / "train"
    with pytest.raises(DatasetError, match="no 'test' split in this Roboflow COCO export"):
        sources.get("test")


def test_one_roboflow_split_folder_is_its_split(synth_root, tmp_path):
    root = _roboflow(synth_root, tmp_path / "rf")
    sources = resolve_dataset(root / "valid")
    assert sources.get("val").annotations == root / "valid" / "_annotations.coco.json"
    with pytest.raises(DatasetError, match="no 'train' split"):
        sources.get("train")


def test_cvat_export_finds_images_folder_and_default_subset_is_train(synth_root, tmp_path):
    root = _cvat(synth_root, tmp_path / "cvat")
    sources = resolve_dataset(root)
    assert sources.layout == "cvat"
    assert sources.get("train").images == root / "images"
    assert sources.get("default").annotations.name == "instances_default.json"


def test_yaml_paths_are_relative_to_its_folder_and_names_replace_class_names(synth_root, tmp_path):
    data = tmp_path / "data.yaml"
    shutil.copytree(synth_root, tmp_path / "set")
    data.write_text("train: {annotations: set/annotations/instances_train.json, images: set/train}\n"
                    "val: {annotations: set/annotations/instances_val.json, images: set/val}\n"
                    "names: [Kreis, Quadrat, Dreieck, Ring]\n")
    sources = resolve_dataset(data)
    assert sources.layout == "yaml" and sources.get("train").images == tmp_path / "set" / "train"
    train_ds, val_ds = training_splits(sources, tiny_config().input, 0)
    assert train_ds.class_names == ["Kreis", "Quadrat", "Dreieck", "Ring"] == val_ds.class_names


def test_explicit_files_replace_the_layouts(synth_root, tmp_path):
    ann = synth_root / "annotations" / "instances_val.json"
    sources = resolve_dataset(None, train_ann=synth_root / "annotations" / "instances_train.json",
                              train_images=synth_root / "train", val_ann=ann, val_images=synth_root / "val")
    assert sources.layout == "explicit" and sources.get("val").annotations == ann
    only_val = resolve_dataset(synth_root, val_ann=ann, val_images=synth_root / "train")
    assert only_val.get("val").images == synth_root / "train" and only_val.get("train").images == synth_root / "train"


def test_unannotated_category_gets_no_output_class(synth_root, tmp_path):
    root = _roboflow(synth_root, tmp_path / "rf")
    train_ds, val_ds = training_splits(resolve_dataset(root), tiny_config().input, 0)
    assert 0 not in train_ds.cat_ids and train_ds.index.unused_cat_ids == [0]
    assert val_ds.cat_ids == train_ds.cat_ids and len(train_ds.cat_ids) == 4


@pytest.mark.parametrize(
    "yaml_text,message",
    [
        ("train: {annotations: missing.json}\n", "train.annotations:"),
        ("train: {annotations: a.json, images: nowhere}\n", "train.images: folder"),
        ("train: {annotations: a.json}\nextra: 1\n", "unknown key(s) ['extra']"),
        ("train: [1, 2]\n", "train must be a mapping"),
        ("- not a mapping\n", "top level must be a mapping"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_file(tmp_path, capsys, yaml_text, message):
    (tmp_path / "a.json").write_text("{}")
    data = tmp_path / "data.yaml"
    data.write_text(yaml_text)
    assert main(["train", "--config", "demo", "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"csrseg: error: {data}") and message in err and "\n" not in err


def test_train_val_category_mismatch_is_one_line(synth_root, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    val = root / "annotations" / "instances_val.json"
    data = json.loads(val.read_text())
    data["categories"][0]["name"] = "Kugel"
    val.write_text(json.dumps(data))
    assert main(["train", "--config", "demo", "--data", str(root), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"csrseg: error: {val}: categories differ") and "'Kugel'" in err and "\n" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_trains_on_a_roboflow_export_and_says_so_first(synth_root, tmp_path, caplog, capsys):
    root = _roboflow(synth_root, tmp_path / "rf")
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(max_iters=2, epochs=1, batch_size=4), cfg_path)
    caplog.set_level("INFO", logger="csrseg")
    assert main(["train", "--config", str(cfg_path), "--data", str(root), "--out", str(tmp_path / "run"),
                 "--set", "model.backbone.weights=none"]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("dataset: Roboflow COCO export") and "_annotations.coco.json" in messages[0]
    assert any("without annotations given no output class" in m and "'shapes'" in m for m in messages)
    assert (tmp_path / "run" / "last.pt").is_file()


def test_predict_takes_class_names_from_a_dataset(synth_root, tmp_path):
    from csrseg.data.sources import class_names_for

    data = tmp_path / "data.yaml"
    data.write_text(f"train: {{annotations: {synth_root}/annotations/instances_train.json, images: {synth_root}/train}}\n"
                    "names: {2: Rechteck, 4: Stern}\n")
    assert class_names_for(data, [4, 2]) == ["Stern", "Rechteck"]
    assert class_names_for(synth_root, [1, 3]) == ["circle", "triangle"]
    with pytest.raises(DatasetError, match="category id"):
        class_names_for(synth_root, [77])


def test_fine_tuning_from_a_checkpoint_fetches_no_pretrained_weights(synth_root, tmp_path):
    import dataclasses

    import torch

    from csrseg import build_model
    from csrseg.config import to_dict
    from csrseg.engine.checkpoint import atomic_save
    from csrseg.api import train

    cfg = tiny_config(max_iters=1, batch_size=4, epochs=1)
    atomic_save(dict(model=build_model(cfg).state_dict(), config=to_dict(cfg)), tmp_path / "start.pt")
    backbone = dataclasses.replace(cfg.model.backbone, weights="imagenet")  # offline: downloads are refused
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))
    result = train(synth_root, config=cfg, out=tmp_path / "run", device="cpu", progress=False, val_split=None,
                   weights=tmp_path / "start.pt")
    assert result.iterations == 1 and torch.load(result.last, weights_only=True)["iteration"] == 1


def test_a_folder_with_a_valid_root_layout_and_a_broken_roboflow_file_uses_the_root_layout(synth_root, tmp_path):
    root = _root_beside_a_via_export(synth_root, tmp_path / "set")
    sources = resolve_dataset(root)
    assert sources.layout == "root" and sources.get("train").annotations == root / "annotations" / "instances_train.json"
    assert sources.skipped == ("Roboflow COCO export (train/_annotations.coco.json: not a COCO instances file "
                               "(no 'images' list))",)


def test_the_first_line_a_run_prints_names_the_skipped_layout_and_why(synth_root, tmp_path):
    root = _root_beside_a_via_export(synth_root, tmp_path / "set")
    line = resolve_dataset(root).describe()
    assert line.startswith(f"dataset: COCO ROOT layout {root}; train: ") and "\n" not in line
    assert line.endswith("; skipped: Roboflow COCO export (train/_annotations.coco.json: not a COCO instances file "
                         "(no 'images' list))")


def test_two_valid_layouts_in_one_folder_are_one_line_asking_for_layout(synth_root, tmp_path):
    root = _two_valid_layouts(synth_root, tmp_path / "set")
    with pytest.raises(DatasetError) as info:
        resolve_dataset(root)
    message = str(info.value)
    assert message.startswith(f"{root}: holds 2 valid dataset layouts: Roboflow COCO export (train/_annotations.coco.json")
    assert "COCO ROOT layout (annotations/instances_train.json, annotations/instances_val.json)" in message
    assert message.endswith("pick one with --layout roboflow|root") and "\n" not in message


@pytest.mark.parametrize("layout,ann", [("roboflow", "valid/_annotations.coco.json"),
                                        ("root", "annotations/instances_val.json")])
def test_layout_picks_one_of_two_valid_layouts_and_notes_the_other(synth_root, tmp_path, layout, ann):
    root = _two_valid_layouts(synth_root, tmp_path / "set")
    sources = resolve_dataset(root, layout=layout)
    assert sources.layout == layout and sources.get("val").annotations == root / ann
    assert len(sources.skipped) == 1 and sources.skipped[0].endswith(f"(--layout {layout} chosen)")


def test_layout_that_the_folder_does_not_hold_is_refused_naming_what_it_holds(synth_root, tmp_path):
    with pytest.raises(DatasetError, match=r"no CVAT COCO export in this folder \(found: COCO ROOT layout\); "
                                           r"--layout takes root here"):
        resolve_dataset(synth_root, layout="cvat")
    with pytest.raises(DatasetError, match=r"unknown dataset layout 'coco'; --layout takes roboflow\|root\|cvat"):
        resolve_dataset(synth_root, layout="coco")


def test_two_broken_layouts_raise_the_roboflow_files_own_error(synth_root, tmp_path):
    root = _root_beside_a_via_export(synth_root, tmp_path / "set")
    (root / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"^[^\n]*/train/_annotations.coco.json: not a COCO instances file \(no 'images'"):
        resolve_dataset(root)


def test_a_skipped_layout_survives_the_run_record(synth_root, tmp_path):
    from csrseg.data.sources import DatasetSources

    sources = resolve_dataset(_root_beside_a_via_export(synth_root, tmp_path / "set"))
    record = json.loads(json.dumps(sources.to_dict()))
    assert DatasetSources.from_dict(record, "dataset.json").skipped == sources.skipped
    del record["skipped"]  # a record written before the field existed
    assert DatasetSources.from_dict(record, "dataset.json").skipped == ()


def test_the_layout_flag_reaches_every_verb_that_reads_a_dataset(synth_root, tmp_path, capsys):
    """Two valid layouts in one folder: the command stops in one line naming --layout, and with
    --layout it reads the one picked (browse, the cheapest verb that reads a dataset, and eval)."""
    from tests.conftest import fake_checkpoint, one_line_error

    root = _two_valid_layouts(synth_root, tmp_path / "set")
    assert main(["browse", str(root), "--out", str(tmp_path / "b"), "--images", "1"]) == 2
    one_line_error(capsys, "holds 2 valid dataset layouts", "--layout roboflow|root")
    assert main(["browse", str(root), "--out", str(tmp_path / "b"), "--images", "1", "--layout", "root"]) == 0
    assert "1 images with their annotations" in capsys.readouterr().out
    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    assert main(["eval", "--weights", str(weights), "--data", str(root), "--layout", "roboflow", "--workers", "0",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert "valid/_annotations.coco.json" in capsys.readouterr().out


def test_the_first_lines_of_a_run_say_how_big_the_objects_are_at_the_input(synth_root, caplog):
    import logging

    from csrseg.data.transforms import InputConfig

    with caplog.at_level(logging.INFO, logger="csrseg"):
        training_splits(resolve_dataset(synth_root), InputConfig(short_side=32, max_size=32), 0)
    assert "objects at the input (input short side 32, long side at most 32): median" in caplog.text
    assert "most objects would be under 16 px" in caplog.text
