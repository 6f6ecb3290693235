"""ServedModel: one failing image answers only itself; whole-image requests share a pass at the lowest
threshold and each keeps its own; tiled requests slice; settings out of range are one line."""

from __future__ import annotations

import numpy as np
import pytest

from csrseg.errors import CsrsegError
from csrseg.inference.predictor import Instance
from csrseg.serve.model import ServedModel
from csrseg.serve.options import ServeOptions

POISON = 7  # an image whose first pixel holds this fails, alone or in a batch


class StubPredictor:
    """Two instances an image (scores 0.9 and 0.2, classes a and b); fails on a poisoned image."""

    class_names = ["a", "b"]
    cat_ids = [1, 5]
    input_config = None

    def __init__(self) -> None:
        self.score_thr = 0.3
        self.batches: list[tuple[int, float]] = []  # (size, score_thr) of each predict_batch call

    def predict_batch(self, images: list[np.ndarray]) -> list[list[Instance]]:
        self.batches.append((len(images), self.score_thr))
        if any(int(image[0, 0, 0]) == POISON for image in images):
            raise RuntimeError("this image breaks the model")
        out = []
        for image in images:
            size = image.shape[:2]
            found = [Instance(0, "a", 1, 0.9, np.ones((2, 2), bool), (0.0, 0.0, 1.0, 1.0), size),
                     Instance(1, "b", 5, 0.2, np.ones((1, 1), bool), (3.0, 3.0, 3.0, 3.0), size)]
            out.append([i for i in found if i.score >= self.score_thr])
        return out


def _image(value: int = 0) -> np.ndarray:
    return np.full((16, 16, 3), value, dtype=np.uint8)


def _served(**options) -> tuple[ServedModel, StubPredictor]:
    stub = StubPredictor()
    return ServedModel(stub, options=ServeOptions(**options).check(model_file=False)), stub


def test_a_failing_image_in_a_batch_answers_only_its_own_request():
    served, stub = _served()
    s = served.defaults
    results = served.predict([(_image(), s), (_image(POISON), s), (_image(), s)])
    assert isinstance(results[1], RuntimeError)
    assert [len(r) for r in (results[0], results[2])] == [1, 1]
    assert [size for size, _ in stub.batches] == [3, 1, 1, 1]  # the batch, then each image alone


def test_whole_image_requests_share_one_pass_and_each_keeps_its_own_threshold():
    served, stub = _served()
    low, high = served.settings(score_thr=0.1), served.settings(score_thr=0.5)
    results = served.predict([(_image(), low), (_image(), high)])
    assert stub.batches == [(2, 0.1)]
    assert [[i.class_name for i in r] for r in results] == [["a", "b"], ["a"]]


def test_the_class_filter_keeps_only_the_classes_named():
    served, _ = _served(classes=("b",), score_thr=0.0)
    assert served.defaults.labels == frozenset({1})
    (found,) = served.predict([(_image(), served.defaults)])
    assert [i.class_name for i in found] == ["b"]
    (found,) = served.predict([(_image(), served.settings(classes=[]))])  # a request may ask for every class
    assert [i.class_name for i in found] == ["a", "b"]


@pytest.mark.parametrize("asked,message", [
    (dict(score_thr=1.5), "score_thr 1.5: must be from 0 to 1"),
    (dict(score_thr=float("nan")), "score_thr nan"),
    (dict(tile=8), "--tile 8: a tile must be at least 32 px"),
    (dict(overlap=0.95), "--overlap 0.95"),
    (dict(classes=["a", "zebra"]), "zebra not among the model's classes (a, b)"),
])
def test_settings_out_of_range_are_one_line(asked, message):
    served, _ = _served()
    with pytest.raises(CsrsegError) as info:
        served.settings(**asked)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_server_default_class_the_model_lacks_is_refused_at_start():
    with pytest.raises(CsrsegError, match="zebra not among the model's classes"):
        _served(classes=("zebra",))


def test_tile_zero_asks_for_whole_images_on_a_tiling_server():
    served, _ = _served(tile=64)
    assert served.defaults.tile == 64
    assert served.settings(tile=0).tile is None


def test_metadata_names_the_precision_of_an_int8_export():
    served, stub = _served()
    stub.metadata = dict(quantization=dict(method="static"))
    assert served.metadata()["model"]["precision"] == "int8"
    assert served.metadata()["classes"] == [dict(class_id=0, category_id=1, name="a"),
                                            dict(class_id=1, category_id=5, name="b")]


def test_a_predictor_without_the_protocols_members_is_refused_in_one_line():
    class Partial(StubPredictor):
        input_config = property(lambda self: (_ for _ in ()).throw(AttributeError("input_config")))

    with pytest.raises(CsrsegError) as info:
        ServedModel(Partial(), options=ServeOptions().check(model_file=False))
    assert "Partial cannot be served: it has no input_config" in str(info.value) and "\n" not in str(info.value)


def test_a_tiled_predictor_serves_with_its_tiling_as_the_default():
    from csrseg.inference.tiling import TiledPredictor, Tiling

    stub = StubPredictor()
    served = ServedModel(TiledPredictor(stub, Tiling(64, 0.3)), options=ServeOptions().check(model_file=False))
    assert served.predictor is stub and (served.defaults.tile, served.defaults.overlap) == (64, 0.3)
    asked = ServedModel(TiledPredictor(stub, Tiling(64, 0.3)), options=ServeOptions(tile=128).check(model_file=False))
    assert asked.defaults.tile == 128  # the server's own --tile wins


def test_pillows_own_pixel_limit_does_not_cap_a_larger_max_pixels(monkeypatch):
    import io

    from PIL import Image

    from csrseg.serve.uploads import RequestError, decode_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses at open above twice this
    buffer = io.BytesIO()
    Image.new("RGB", (60, 50)).save(buffer, format="PNG")  # 3000 px
    assert decode_image(buffer.getvalue(), max_pixels=5000).shape == (50, 60, 3)
    with pytest.raises(RequestError, match="over the server's limit of 2000"):
        decode_image(buffer.getvalue(), max_pixels=2000)
