"""Long runs, flat memory: ``csrseg predict`` and ``csrseg eval`` over a few hundred images keep
nothing per image beyond their results (RLE rows). ``benchmarks/soak.py`` runs the same at 5,000."""

import pytest

from benchmarks.soak import STATUS, make_images, make_weights, soak_eval, soak_predict
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not STATUS.is_file(), reason="reads the RSS from /proc (Linux)")

IMAGES = 120
# RSS wanders by a few MB as allocators reuse and return memory; the kept results count at a few
# times their JSON size as Python objects. Keeping each image's dense masks (100 instances of
# 64x64 here, 400 KB an image) adds 24 MB over the second half: well above this bound (measured).
NOISE_MB = 8.0
OBJECTS_PER_JSON_BYTE = 3


@pytest.fixture(scope="module")
def soak_data(tmp_path_factory):
    work = tmp_path_factory.mktemp("soak")
    cfg = tiny_config()
    return make_weights(work / "model.pt", cfg), make_images(work / "data", IMAGES, 64), work


def _bound_mb(curve):
    kept_second_half = curve.result_bytes / 2 / 2**20 * OBJECTS_PER_JSON_BYTE
    return NOISE_MB + kept_second_half


@pytest.mark.slow
def test_predict_over_a_folder_keeps_memory_flat(soak_data):
    weights, root, work = soak_data
    curve = soak_predict(weights, root / "val", work / "pred")
    assert len(curve.rss) == IMAGES and curve.instances > IMAGES  # masks were made and drawn for every image
    assert curve.growth() < _bound_mb(curve), (curve.growth(), curve.rss[:: IMAGES // 8])


@pytest.mark.slow
def test_eval_keeps_memory_flat_and_results_as_rle(soak_data):
    weights, root, work = soak_data
    curve = soak_eval(weights, root, work / "results.json")  # also asserts RLE segmentations
    assert len(curve.rss) == IMAGES and curve.instances > IMAGES
    assert curve.growth() < _bound_mb(curve), (curve.growth(), curve.rss[:: IMAGES // 8])
