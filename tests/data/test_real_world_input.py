"""Files as people have them: PNG data in a .jpg, 4000 px photographs, class names in any script."""

import json

from PIL import Image

from csrseg.data.transforms import InputConfig
from csrseg.data import CocoInstances, Transform


def _dataset(tmp_path, file_name, size, fmt, names=("thing",)):
    (tmp_path / "img").mkdir()
    height, width = size
    Image.new("RGB", (width, height), (90, 120, 150)).save(tmp_path / "img" / file_name, format=fmt)
    h, w = height // 4, width // 4
    ann = dict(id=1, image_id=1, category_id=1, iscrowd=0, segmentation=[[w, h, 3 * w, h, 3 * w, 3 * h, w, 3 * h]])
    data = dict(images=[dict(id=1, file_name=file_name, height=height, width=width)], annotations=[ann],
                categories=[dict(id=i + 1, name=n) for i, n in enumerate(names)])
    (tmp_path / "ann.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return CocoInstances(tmp_path / "ann.json", tmp_path / "img", Transform(InputConfig(short_side=128, max_size=160), False))


def test_a_jpg_holding_png_data_is_read_by_its_content(tmp_path):
    sample = _dataset(tmp_path, "photo.jpg", (60, 80), "PNG")[0]
    assert sample["image"].shape[-2:] == (120, 160) and sample["masks"].shape[0] == 1


def test_a_4000px_photograph_is_resized_to_the_input_size(tmp_path):
    sample = _dataset(tmp_path, "big.jpg", (3000, 4000), "JPEG")[0]
    assert sample["image"].shape[-2:] == (120, 160) and sample["orig_size"] == (3000, 4000)
    # the square in the middle half of the frame stays there after resizing
    assert abs(float(sample["masks"][0].float().mean()) - 0.25) < 0.02


def test_non_ascii_class_names_survive_reading(tmp_path):
    ds = _dataset(tmp_path, "a.png", (40, 40), "PNG", names=("Möwe",))
    assert ds.class_names == ["Möwe"]
