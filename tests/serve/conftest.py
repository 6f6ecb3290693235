"""What the serving tests share: a tiny checkpoint, its images, an in-process client, a live server."""

from __future__ import annotations

import io
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")

from tests.conftest import fake_checkpoint  # noqa: E402
from benchmarks.loopback import free_port  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402,F401


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """The tiny SOLOv2 checkpoint that sees something everywhere (about 100 instances an image)."""
    return fake_checkpoint(tmp_path_factory.mktemp("serve_model"), cls_bias=0.0)


@pytest.fixture(scope="session")
def image_files(synth_root) -> list[Path]:
    """The synthetic val images (PNG, 128 px)."""
    return sorted((synth_root / "val").glob("*.png"))


def encoded(array: np.ndarray, format: str = "PNG", **params) -> bytes:
    """An ``(H, W, 3)`` uint8 array as image file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **params)
    return buffer.getvalue()


class LiveServer:
    """An app under a real uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
