"""Under a real uvicorn on the loopback: a client that leaves mid-upload harms nothing; concurrent
requests are batched together and each answered."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np

from csrseg.serve import app
from tests.serve.conftest import LiveServer, encoded
from tests.serve.test_serve_model import StubPredictor


def _post(port: int, body: bytes, path: str = "/predict") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_a_client_that_disconnects_mid_upload_leaves_the_server_answering(weights, image_files):
    data = image_files[0].read_bytes()
    with LiveServer(app(weights=weights)) as server:
        for cut in (0, len(data) // 3):  # gone after the headers, and after a third of the body
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:cut])
            status, answer = _post(server.port, data)
            assert status == 200 and answer["instances"]
        # a multipart upload cut in the middle of its file
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            head = (b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                    b"Content-Type: image/png\r\n\r\n")
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                        + f"Content-Length: {len(head) + len(data) + 8}\r\n\r\n".encode() + head + data[:500])
        status, answer = _post(server.port, data)
        assert status == 200 and answer["instances"]
        assert _get(server.port, "/healthz")["status"] == "ok"


class GatedStub(StubPredictor):
    """The stub model, holding its first batch until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def predict_batch(self, images):
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(60)
        return super().predict_batch(images)


def test_requests_arriving_while_the_model_is_busy_are_batched_together_and_each_answered():
    stub = GatedStub()
    image = encoded(np.zeros((16, 16, 3), np.uint8))
    poisoned = encoded(np.full((16, 16, 3), 7, np.uint8))  # StubPredictor fails on this one
    with LiveServer(app(predictor=stub, max_batch=8, max_wait_ms=0)) as server:
        results: dict[int, tuple[int, dict]] = {}

        def client(index: int, body: bytes) -> None:
            results[index] = _post(server.port, body)

        threads = [threading.Thread(target=client, args=(0, image))]
        threads[0].start()
        assert stub.entered.wait(60)  # the first request holds the model
        threads += [threading.Thread(target=client, args=(i, poisoned if i == 3 else image)) for i in range(1, 6)]
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 60
        while _get(server.port, "/healthz")["queued"] < 5:
            assert time.monotonic() < deadline, "the five requests never queued"
            time.sleep(0.01)
        stub.gate.set()
        for thread in threads:
            thread.join(60)
        health = _get(server.port, "/healthz")
    assert sorted(results) == list(range(6))
    assert results[3][0] == 500 and "this image breaks the model" in results[3][1]["error"]
    assert all(results[i][0] == 200 and len(results[i][1]["instances"]) == 1 for i in (0, 1, 2, 4, 5))
    assert stub.batches[:2] == [(1, 0.3), (5, 0.3)]  # the five that waited went through as one batch
    assert (health["answered"], health["batches"], health["largest_batch"]) == (6, 2, 5)
