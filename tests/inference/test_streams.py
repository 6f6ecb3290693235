"""Endless sources: an MJPEG stream over HTTP and an RTSP camera on the loopback, a camera index,
Ctrl-C, a watched folder, bad sources."""

import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csrseg.api import predict
from csrseg.cli import main
from csrseg.inference.video import iter_frames, open_video
from benchmarks.loopback import free_port
from tests.conftest import exit_code, fake_checkpoint, one_line_error
from tests.inference.rtsp import RtspServer

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("streams"), cls_bias=-3.0)


def _jpeg(k: int) -> bytes:
    frame = np.full((64, 96, 3), 30, np.uint8)
    frame[20:44, (4 * k) % 70 : (4 * k) % 70 + 24] = 240
    return cv2.imencode(".jpg", frame)[1].tobytes()


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """An endless MJPEG stream (multipart/x-mixed-replace, as IP cameras serve it), 50 frames a second."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        k = 0
        try:
            while not self.server.closing:
                data = _jpeg(k)
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data) + data + b"\r\n")
                k += 1
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def mjpeg_url():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _MjpegHandler)
    server.daemon_threads, server.closing = True, False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.mjpg"
    server.closing = True
    server.shutdown()
    server.server_close()


@pytest.fixture
def rtsp_url():
    server = RtspServer(_jpeg)
    yield server.url
    server.close()


def _frames_of(path):
    capture, _ = open_video(path)
    return len(list(iter_frames(capture)))


def test_an_mjpeg_stream_is_tracked_frame_by_frame_until_max_frames(tmp_path, weights, mjpeg_url, capsys):
    out = tmp_path / "out"
    assert main(["track", mjpeg_url, "--weights", str(weights), "--out", str(out), "--score-thr", "0.0",
                 "--max-frames", "5", "--batch", "2"]) == 0
    assert "1 videos (5 frames)" in capsys.readouterr().out
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and {r["frame"] for r in rows} <= set(range(5)) and all(r["file_name"] == mjpeg_url for r in rows)
    assert all(isinstance(r["track_id"], int) for r in rows)
    assert _frames_of(out / "live.mp4") == 5 and not list(out.glob("*partial*"))


def test_an_rtsp_camera_is_tracked_frame_by_frame_until_max_frames(tmp_path, weights, rtsp_url, capsys):
    out = tmp_path / "out"
    assert main(["track", rtsp_url, "--weights", str(weights), "--out", str(out), "--score-thr", "0.0",
                 "--max-frames", "4"]) == 0
    assert "1 videos (4 frames)" in capsys.readouterr().out
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and {r["frame"] for r in rows} <= set(range(4)) and all(r["file_name"] == rtsp_url for r in rows)
    assert all(isinstance(r["track_id"], int) for r in rows)
    assert _frames_of(out / "live.mp4") == 4


def test_a_camera_index_is_opened_as_a_camera_and_read_until_max_frames(tmp_path, weights, rtsp_url, monkeypatch, capsys):
    """``predict 0`` asks OpenCV for camera 0 by its index (no camera here: OpenCV's capture of index 0
    is given the RTSP stream, as a camera would send frames) and names its clip camera0."""
    real = cv2.VideoCapture
    asked = []

    def capture(source, *args):
        if isinstance(source, int):
            asked.append((source, args[0] if args else None))
            return real(rtsp_url, cv2.CAP_FFMPEG)
        return real(source, *args)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    out = tmp_path / "out"
    assert main(["predict", "0", "--weights", str(weights), "--out", str(out), "--score-thr", "0.0",
                 "--max-frames", "3"]) == 0
    assert asked == [(0, cv2.CAP_ANY)]
    assert "1 videos (3 frames)" in capsys.readouterr().out
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and {r["frame"] for r in rows} <= set(range(3))
    assert _frames_of(out / "camera0.mp4") == 3


def test_ctrl_c_ends_a_stream_with_its_json_and_clip_finished(tmp_path, weights, mjpeg_url):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from csrseg.cli import main; sys.exit(main())", "predict",
                             mjpeg_url, "--weights", str(weights), "--out", str(out), "--score-thr", "0.0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial_json = out / ".predictions.json.tmp"
    try:
        deadline = time.monotonic() + 120
        # rows reach the disk frame by frame: wait until three frames are in
        while not (partial_json.is_file() and '"frame": 2,' in partial_json.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped by SIGINT" in stdout
    rows = json.loads((out / "predictions.json").read_text())
    frames = {r["frame"] for r in rows}
    assert {0, 1, 2} <= frames
    assert _frames_of(out / "live.mp4") >= max(frames) + 1
    assert not partial_json.exists() and not list(out.glob("*partial*"))


def test_a_watched_folder_is_read_as_images_arrive(tmp_path, weights):
    folder, out = tmp_path / "incoming", tmp_path / "out"
    folder.mkdir()
    image = np.full((48, 64, 3), 60, np.uint8)
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(image).save(folder / ".partial.png")  # a copy tool's temporary: never read

    done = threading.Event()

    def arrive():
        for name in ("b.png", "c.png"):
            time.sleep(0.6)
            Image.fromarray(image).save(folder / f".{name}")  # written whole, then named, as a camera app does
            (folder / f".{name}").rename(folder / name)
        # a stuck watch is stopped as Ctrl-C would; once the test is over the thread must not fire into
        # whatever test runs next (a late SIGINT there ends the whole suite with KeyboardInterrupt)
        if not done.wait(90):
            os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=arrive, daemon=True)
    helper.start()
    try:
        result = predict(folder, weights=weights, out=out, score_thr=0.0, watch=True, max_frames=3, track=True)
    finally:
        done.set()
        helper.join()
    assert result.counts.images == 3 and result.counts.stopped_by == "--max-frames"
    rows = json.loads(result.predictions.read_text())
    assert {Path(r["file_name"]).name for r in rows} == {"a.png", "b.png", "c.png"}
    assert all(isinstance(r["track_id"], int) for r in rows)
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg", "c.jpg"]


def test_a_watched_image_that_changes_after_it_was_given_is_given_again_once_still(tmp_path):
    from csrseg.inference.streams import watch_images

    (tmp_path / "a.png").write_bytes(b"half an image")  # a copy that stalled for longer than a listing
    deadline = time.monotonic() + 30  # a watch that never gives ends, and the test fails instead of hanging
    images = watch_images(tmp_path, max_images=None, stop=lambda: "late" if time.monotonic() > deadline else None,
                          poll=0.01)
    assert next(images).name == "a.png"  # given (its read fails: skipped with its reason)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")  # the copy goes on and ends
    (tmp_path / "b.png").write_bytes(b"b")
    assert [next(images).name, next(images).name] == ["a.png", "b.png"]  # a.png again, whole now
    os.utime(tmp_path / "b.png", ns=(1, 1))  # touched: the same bytes, not given again
    (tmp_path / "c.png").write_bytes(b"c")
    assert next(images).name == "c.png"


def test_a_watched_file_read_half_written_then_whole_is_one_image_not_a_skip(tmp_path, monkeypatch):
    from csrseg.inference import runner
    from csrseg.inference.predictor import BelowThreshold
    from csrseg.inference.records import RecordWriter

    class Nothing:  # a predictor that finds nothing: what is counted is the folder's reading
        class_names, below = ["thing"], BelowThreshold()

        def predict_batch(self, arrays):
            return [[] for _ in arrays]

    failed = threading.Event()
    read = runner.as_rgb_array

    def reading(path):
        try:
            return read(path)
        except Exception:
            failed.set()
            raise

    monkeypatch.setattr(runner, "as_rgb_array", reading)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    (folder / "a.png").write_bytes(b"the first half of a png")  # given, and its read fails

    def finish_the_copy():
        if failed.wait(30):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")

    helper = threading.Thread(target=finish_the_copy, daemon=True)
    helper.start()
    records = RecordWriter(out / "predictions.json")
    counts = runner.predict_watched(Nothing(), folder, out, records, max_frames=2)
    records.close()
    helper.join()
    assert failed.is_set() and (counts.images, counts.skipped, counts.stopped_by) == (1, 0, "--max-frames")
    assert (out / "a.jpg").is_file()


def test_a_stream_nothing_serves_is_one_line_naming_it(tmp_path, weights, capsys):
    url = f"http://127.0.0.1:{free_port()}/live.mjpg"
    assert main(["predict", url, "--weights", str(weights), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, url, "cannot be opened as a stream")
    assert not (tmp_path / "o" / "predictions.json").exists()


def test_a_camera_that_is_not_there_is_one_line(tmp_path, weights, capsys):
    assert main(["predict", "37", "--weights", str(weights), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "camera 37: cannot be opened")


@pytest.mark.parametrize("more, extra, part", [
    ([], ["--max-frames", "3"], "--max-frames ends a camera, stream or --watch folder"),
    ([], ["--watch"], "--watch needs a folder"),
    (["0"], ["--max-frames", "3"], "read alone"),
    ([], ["--max-frames", "0"], "argument --max-frames: must be at least 1"),
])
def test_stream_options_that_do_not_fit_are_one_line(tmp_path, weights, capsys, more, extra, part):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert exit_code(["predict", str(clip), *more, "--weights", str(weights), "--out", str(tmp_path / "o"), *extra]) == 2
    one_line_error(capsys, part)
