"""The page at ``/`` in a real headless Chromium: an image chosen in its file input is uploaded by the
page's own script, its instances drawn and listed; the slider filters them; a bad file says why."""

from __future__ import annotations

import http.client
import json

import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from csrseg.serve import app
from tests.serve.cdp import Browser, find_browser
from tests.serve.conftest import LiveServer

ROWS = "document.querySelectorAll('#instances tbody tr').length"


def _answer(port: int, body: bytes) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/predict?score_thr=0", body=body, headers={"Content-Type": "image/png"})
    return json.loads(connection.getresponse().read())


@pytest.fixture
def browser(tmp_path):
    executable = find_browser()
    if executable is None:
        pytest.skip("no headless browser: none of chromium, chromium-browser, google-chrome is on PATH "
                    "(Debian: apt-get install -y chromium; .ci/run installs it where apt-get works)")
    browser = Browser(executable, tmp_path / "profile")
    yield browser
    browser.close()


def test_the_page_uploads_an_image_draws_and_lists_its_instances(browser, weights, image_files, tmp_path):
    path = image_files[0]
    with LiveServer(app(weights=weights)) as server:
        answer = _answer(server.port, path.read_bytes())
        browser.open(server.url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        assert browser.evaluate("document.getElementById('model').textContent").startswith("model.pt (checkpoint, fp32)")
        browser.choose_file("#file", path)
        shown = int(browser.wait_for("document.body.dataset.rendered"))

        expected = [i for i in answer["instances"] if i["score"] >= 0.3]  # the slider starts at the server's 0.3
        assert shown == browser.evaluate(ROWS) == len(expected) > 0
        cells = browser.evaluate("[...document.querySelectorAll('#instances tbody tr')].map("
                                 "r => [...r.cells].map(c => c.textContent))")
        for row, inst in zip(cells, expected):
            assert row[2] == inst["class_name"] and float(row[3]) == pytest.approx(inst["score"], abs=1e-3)
            rle = dict(size=inst["mask"]["size"], counts=inst["mask"]["counts"].encode())
            assert int(row[5]) == int(mask_utils.area(rle))  # the page's RLE decoding, pixel for pixel
        assert browser.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]") \
            == [answer["width"], answer["height"]]
        shot = browser.screenshot(tmp_path / "page.png")
        assert Image.open(shot).size[0] >= 800

        # the slider filters without asking the server again
        high = browser.evaluate("(() => { const t = document.getElementById('thr'); t.value = '0.9';"
                                f" t.dispatchEvent(new Event('input')); return {ROWS}; }})()")
        assert high == sum(i["score"] >= 0.9 for i in answer["instances"]) < len(expected)
        assert "at score ≥ 0.90" in browser.evaluate("document.getElementById('status').textContent")

        # a file that is no image: the server's one line, shown as an error
        bad = tmp_path / "notes.png"
        bad.write_text("not an image at all")
        browser.choose_file("#file", bad)
        assert browser.wait_for("document.body.dataset.rendered") == "error"
        text = browser.evaluate("document.getElementById('status').textContent")
        assert "notes.png: not an image" in text and browser.evaluate("document.getElementById('status').className") == "error"
