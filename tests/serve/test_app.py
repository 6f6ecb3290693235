"""The HTTP API in process (Starlette's TestClient): what /predict answers, in JSON and PNG, against the
Predictor's own instances; /healthz and /metadata; every bad upload a one-line 4xx, the next answered."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from csrseg.inference.predictor import Predictor
from csrseg.inference.visualize import draw_predictions
from csrseg.serve import app
from tests.serve.conftest import TestClient, encoded


@pytest.fixture(scope="module")
def client(weights):
    with TestClient(app(weights=weights)) as client:
        yield client


@pytest.fixture(scope="module")
def predictor(weights):
    return Predictor(weights, device="cpu")


def _decode(mask: dict) -> np.ndarray:
    return mask_utils.decode(dict(size=mask["size"], counts=mask["counts"].encode())).astype(bool)


def test_predict_answers_the_predictors_instances_with_masks_as_coco_rle(client, predictor, image_files):
    path = image_files[0]
    response = client.post("/predict", files={"image": (path.name, path.read_bytes(), "image/png")})
    assert response.status_code == 200
    answer = response.json()
    expected = predictor.predict(path)
    assert (answer["width"], answer["height"]) == (128, 128)
    assert len(answer["instances"]) == len(expected) > 0
    for got, want in zip(answer["instances"], expected):
        assert set(got) == {"class_id", "category_id", "class_name", "score", "box", "mask"}
        assert (got["class_id"], got["category_id"], got["class_name"]) == (want.label, want.category_id, want.class_name)
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        assert got["box"] == pytest.approx(list(want.box), abs=0.01)
        assert got["mask"]["size"] == [128, 128] and isinstance(got["mask"]["counts"], str)
        assert np.array_equal(_decode(got["mask"]), want.mask)


def test_a_raw_body_and_a_form_file_under_any_name_are_read_alike(client, image_files):
    data = image_files[1].read_bytes()
    answers = [client.post("/predict", content=data, headers={"content-type": "image/png"}).json(),
               client.post("/predict", content=data).json(),  # no content type at all
               client.post("/predict", content=data, headers={"content-type": "application/octet-stream"}).json(),
               client.post("/predict", files={"upload": ("x.png", data)}).json()]
    assert all(a == answers[0] for a in answers) and answers[0]["instances"]


def test_format_png_returns_the_overlay_predict_draws(client, predictor, image_files):
    path = image_files[2]
    response = client.post("/predict?format=png", content=path.read_bytes())
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    expected = predictor.predict(path)
    assert int(response.headers["x-instances"]) == len(expected)
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    image = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(drawn, np.asarray(draw_predictions(image, expected, predictor.class_names)))


def test_query_parameters_set_threshold_classes_and_tiles(client, weights, image_files):
    data = image_files[0].read_bytes()
    everything = client.post("/predict?score_thr=0", content=data).json()["instances"]
    high = client.post("/predict?score_thr=0.9", content=data).json()
    assert high["score_thr"] == 0.9
    assert [i["score"] for i in high["instances"]] == [i["score"] for i in everything if i["score"] >= 0.9]
    stars = client.post("/predict?score_thr=0&classes=star,circle", content=data).json()["instances"]
    assert stars and {i["class_name"] for i in stars} <= {"star", "circle"}
    assert len(stars) == sum(i["class_name"] in ("star", "circle") for i in everything)

    from csrseg.api.predict import load_predictor

    tiled = load_predictor(weights, device="cpu", tile=64, overlap=0.25)
    expected = tiled.predict(image_files[0])
    answer = client.post("/predict?tile=64&overlap=0.25", content=data).json()["instances"]
    assert [i["score"] for i in answer] == pytest.approx([i.score for i in expected], abs=1e-5)


def test_server_defaults_apply_and_requests_override_them(weights, image_files):
    data = image_files[0].read_bytes()
    with TestClient(app(weights=weights, score_thr=0.8, classes=["star"])) as client:
        found = client.post("/predict", content=data).json()["instances"]
        assert found and all(i["class_name"] == "star" and i["score"] >= 0.8 for i in found)
        wider = client.post("/predict?score_thr=0.5&classes=", content=data).json()["instances"]
        assert len({i["class_name"] for i in wider}) > 1 and min(i["score"] for i in wider) < 0.8


def test_healthz_and_metadata_describe_the_server_and_its_model(client, weights):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["pid"] > 0
    meta = client.get("/metadata").json()
    import csrseg

    assert meta["csrseg_version"] == csrseg.__version__
    assert meta["model"] == dict(file="model.pt", format="checkpoint", precision="fp32",
                                 sha256={"model.pt": hashlib.sha256(weights.read_bytes()).hexdigest()})
    assert [c["name"] for c in meta["classes"]] == ["circle", "rectangle", "triangle", "star"]
    assert meta["input"]["short_side"] == 128 and meta["input"]["max_size"] == 128
    assert meta["defaults"]["score_thr"] == 0.3 and meta["batching"]["max_batch"] == 8


def test_the_page_is_served_and_fetches_nothing_from_elsewhere(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'type="file"' in page and 'type="range"' in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page  # works offline


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no data: what a bomb looks like
    before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


BAD_CASES = [
    "non-image bytes", "truncated JPEG", "truncated PNG", "decompression bomb", "bomb under Pillow's error limit",
    "zero-size image", "one-pixel image", "empty body", "wrong content type", "a JSON body", "a form without a file",
    "two files", "unknown query parameter", "score_thr out of range", "score_thr not a number", "tile too small",
    "unknown class", "unknown format"]


def _bad_uploads(image_files):
    png = image_files[0].read_bytes()
    jpeg = encoded(np.asarray(Image.open(image_files[0]).convert("RGB")), "JPEG", quality=90)
    return {
        "non-image bytes": (dict(content=b"hello, this is not an image"), 400, "not an image"),
        "truncated JPEG": (dict(content=jpeg[: len(jpeg) // 2]), 400, "truncated"),
        "truncated PNG": (dict(content=png[:300]), 400, "not a readable image"),
        "decompression bomb": (dict(content=_png_claiming(60_000, 60_000)), 413, "over Pillow's pixel limit"),
        "bomb under Pillow's error limit": (dict(content=_png_claiming(10_000, 10_000)), 413,
                                            "10000x10000 px: over the server's limit of 89478485 pixels"),
        "zero-size image": (dict(content=_png_claiming(0, 0)), 400, "not an image"),  # Pillow reads no 0x0 PNG
        "one-pixel image": (dict(content=encoded(np.zeros((1, 1, 3), np.uint8))), 400, "1x1 px: at least 8x8"),
        "empty body": (dict(content=b""), 400, "empty upload"),
        "wrong content type": (dict(content=png, headers={"content-type": "text/plain"}), 415, "Content-Type text/plain"),
        "a JSON body": (dict(json={"image": "x"}), 415, "Content-Type application/json"),
        "a form without a file": (dict(data={"image": "not a file"}), 415, "x-www-form-urlencoded"),
        "two files": (dict(files=[("a", ("a.png", png)), ("b", ("b.png", png))]), 400, "2 files"),
        "unknown query parameter": (dict(content=png, params={"score": "0.5"}), 400, "unknown query parameter score"),
        "score_thr out of range": (dict(content=png, params={"score_thr": "2"}), 400, "score_thr 2.0: must be from 0 to 1"),
        "score_thr not a number": (dict(content=png, params={"score_thr": "high"}), 400, "expected a number"),
        "tile too small": (dict(content=png, params={"tile": "4"}), 400, "at least 32 px"),
        "unknown class": (dict(content=png, params={"classes": "zebra"}), 400, "zebra not among"),
        "unknown format": (dict(content=png, params={"format": "gif"}), 400, "format=gif"),
    }


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_one_line_4xx_and_the_next_request_is_answered(client, image_files, case):
    request, status, message = _bad_uploads(image_files)[case]
    response = client.post("/predict", **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error and len(error) < 300, error
    after = client.post("/predict", content=image_files[0].read_bytes())
    assert after.status_code == 200 and after.json()["instances"]


def test_an_image_over_max_pixels_is_413_however_small_its_file(weights, image_files):
    flat = encoded(np.zeros((1000, 1200, 3), np.uint8))  # a few KB that decode to 3.6 MB
    assert len(flat) < 20_000
    with TestClient(app(weights=weights, max_pixels=1_000_000)) as client:
        response = client.post("/predict", content=flat)
        assert response.status_code == 413 and "1200x1000 px: over the server's limit of 1000000" in response.json()["error"]
        assert client.post("/predict", content=image_files[0].read_bytes()).status_code == 200


def test_an_upload_over_max_bytes_is_413_declared_or_streamed(weights, image_files):
    data = image_files[0].read_bytes()
    with TestClient(app(weights=weights, max_bytes=len(data) - 1)) as client:
        declared = client.post("/predict", content=data)
        assert declared.status_code == 413 and f"{len(data)} bytes over" in declared.json()["error"]

        def chunks():  # no Content-Length: the body is counted as it streams
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]

        streamed = client.post("/predict", content=chunks())
        assert streamed.status_code == 413 and "the upload over" in streamed.json()["error"]
        multipart = client.post("/predict", files={"image": ("a.png", data)})
        assert multipart.status_code == 413
    with TestClient(app(weights=weights, max_bytes=len(data) + 1000)) as client:  # room for the form's own bytes
        assert client.post("/predict", files={"image": ("a.png", data)}).status_code == 200


def test_unknown_routes_and_methods_are_json_errors(client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    response = client.get("/predict")
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}
