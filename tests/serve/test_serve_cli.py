"""``csrseg serve``: bad options are one line and status 2 before anything loads; without the extra,
one line naming it; a real server with two worker processes answers."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csrseg.cli import main
from csrseg.errors import CsrsegError
from tests.conftest import one_line_error
from benchmarks.loopback import free_port, get_json


@pytest.mark.parametrize("argv,message", [
    (["--port", "0"], "argument --port: must be at least 1, got 0"),
    (["--port", "70000"], "argument --port: a port is from 1 to 65535, got 70000"),
    (["--port", "http"], "argument --port: expected an integer, got 'http'"),
    (["--max-batch", "0"], "argument --max-batch: must be at least 1, got 0"),
    (["--max-wait-ms", "-1"], "argument --max-wait-ms: must be at least 0, got -1"),
    (["--max-bytes", "0"], "argument --max-bytes: must be at least 1, got 0"),
    (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["--score-thr", "1.5"], "argument --score-thr: must be from 0 to 1, got 1.5"),
    (["--tile", "8"], "argument --tile: must be at least 32, got 8"),
])
def test_impossible_options_are_one_line_and_status_2(weights, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--weights", str(weights), *argv])
    assert exit_info.value.code == 2
    one_line_error(capsys, message, "(serve)")


def test_a_missing_model_file_or_no_model_is_one_line(tmp_path, capsys):
    assert main(["serve", "--weights", str(tmp_path / "best.pt")]) == 2
    one_line_error(capsys, f"--weights {tmp_path / 'best.pt'}: no such file")
    assert main(["serve"]) == 2
    one_line_error(capsys, "give one of --weights CKPT, --onnx MODEL.onnx or --openvino MODEL.xml")


def test_an_unknown_default_class_is_one_line_before_serving(weights, capsys):
    assert main(["serve", "--weights", str(weights), "--classes", "zebra"]) == 2
    one_line_error(capsys, "zebra not among the model's classes")


def test_a_port_already_taken_is_one_line(weights, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--weights", str(weights), "--port", str(port)]) == 2
    one_line_error(capsys, f"--host 127.0.0.1 --port {port}: cannot listen there")


@pytest.mark.skipif(sys.platform != "linux", reason="binds 127.0.0.2, a loopback address on Linux only")
def test_a_port_taken_on_any_address_the_host_names_is_one_line(monkeypatch):
    from csrseg.serve import server

    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))  # loopback too: the second address a name like localhost may resolve to
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(server.socket, "getaddrinfo", lambda host, at, **kwargs: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, at)) for ip in ("127.0.0.1", "127.0.0.2")])
        with pytest.raises(CsrsegError, match=f"--host here --port {port}: cannot listen there "
                                              rf"\(127.0.0.2 port {port}: Address already in use\)"):
            server.check_address("here", port)
        server.check_address("here", free_port())  # both free: no complaint
        server.check_address("127.0.0.1", port, workers=2)  # one socket on the host itself, as uvicorn's workers bind


def test_without_the_serve_extra_the_error_names_the_install(weights, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", "--weights", str(weights)]) == 2
    one_line_error(capsys, "csrseg serve needs uvicorn: pip install 'csrseg[serve]'")


def test_serve_with_two_workers_answers_from_worker_processes(weights, image_files):
    psutil = pytest.importorskip("psutil")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "csrseg.cli", "serve", "--weights", str(weights), "--port", str(port),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        health = None
        while health is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
            health = get_json(port, "/healthz")
        children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        pids = {h["pid"] for h in (get_json(port, "/healthz") for _ in range(20)) if h}
        assert pids and pids <= children and proc.pid not in pids  # answered by worker processes
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/predict", body=image_files[0].read_bytes(), headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["instances"]
    finally:
        proc.terminate()
        try:
            output = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # never leave the server and its workers holding the port
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            output = proc.communicate()[0]
    assert f"at http://127.0.0.1:{port}/ with 2 worker(s)" in output.splitlines()[0], output
