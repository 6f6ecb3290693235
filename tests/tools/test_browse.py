"""`csrseg browse`: ground truth drawn, a summary printed and plotted, a warning for tiny objects."""

import json
import shutil

import numpy as np
from PIL import Image

from csrseg.tools.browse import browse_dataset
from csrseg.cli import main
from csrseg.data.transforms import InputConfig
from csrseg.inference.visualize import draw_instances, drawable_text


def test_browse_draws_and_summarises_and_says_what_keeps_tiny_objects_visible(synth_root, tmp_path, capsys):
    assert main(["browse", str(synth_root), "--out", str(tmp_path / "b"), "--images", "3", "--config", "demo",
                 "--set", "input.short_side=32", "input.max_size=32"]) == 0
    out = capsys.readouterr().out
    assert len(list((tmp_path / "b").glob("*.jpg"))) == 3 and (tmp_path / "b" / "summary.png").is_file()
    assert "images: 12" in out and "| circle |" in out and "under 16 px" in out
    # 128 px images at 32 px: most objects are a few pixels; the advice names the settings and their cost
    assert "most objects would be under 16 px: input.short_side=" in out and "input.crop=32" in out
    assert "costs about" in out and "--tile 32" in out


def test_summary_counts_match_the_annotation_file(synth_root, tmp_path):
    data = json.loads((synth_root / "annotations" / "instances_val.json").read_text())
    summary = browse_dataset(synth_root, tmp_path / "b", InputConfig(short_side=1024, max_size=1024), images=2, split="val")
    assert summary.images == len(data["images"]) and sum(summary.instances_per_class.values()) == len(data["annotations"])
    assert summary.small == 0 and "most objects would be" not in summary.text()
    # 128 px images at a 1024 px input: every object is 8x larger
    np.testing.assert_allclose(summary.input_px, summary.object_px * 8, rtol=1e-6)


def test_non_ascii_class_names_are_drawn_and_written(synth_root, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    for cat, name in zip(data["categories"], ["Möwe", "猫", "Ελλάδα", "star"]):
        cat["name"] = name
    ann.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    summary = browse_dataset(root, tmp_path / "b", InputConfig(), images=2)
    assert {"Möwe", "猫", "Ελλάδα"} <= set(summary.instances_per_class) and len(summary.drawn) == 2


def test_names_a_font_cannot_encode_fall_back_to_escapes():
    from PIL import ImageFont

    bitmap = ImageFont.load_default_imagefont()  # Latin-1 only
    assert drawable_text("Möwe", bitmap) == "Möwe" and drawable_text("猫", bitmap) == "\\u732b"
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 10:30, 10:40] = True
    drawn = np.asarray(draw_instances(image, mask, [0], None, ["猫"]))
    assert drawn[10:30, 10:40].any() and drawn.shape == (40, 60, 3)


def test_png_data_in_a_jpg_file_and_a_4000px_image_are_read(tmp_path):
    from csrseg.data.io import read_image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "x.jpg", format="PNG")
    assert read_image(tmp_path / "x.jpg").shape == (30, 40, 3)
    Image.new("RGB", (4000, 3000), (9, 9, 9)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png").shape == (3000, 4000, 3)


def test_an_unreadable_image_is_named_and_an_earlier_browse_kept(synth_root, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    first = json.loads((root / "annotations" / "instances_val.json").read_text())["images"][0]["file_name"]
    (root / "val" / first).write_text("not an image")
    out = tmp_path / "b"
    argv = ["browse", str(root), "--split", "val", "--out", str(out), "--images", "100", "--config", "demo"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"warning: {root / 'val' / first}" in text and "training would stop on it" in text
    assert main(argv) == 2  # the same --out again: refused, the first browse kept
    assert "already holds summary.png" in capsys.readouterr().err and (out / "summary.png").is_file()
