"""``csrseg predict`` on video clips (OpenCV in, MPEG-4 out)."""

import json
import sys

import numpy as np
import pytest

from csrseg.cli import main
from csrseg.inference.predictor import Predictor
from csrseg.inference.sources import expand_sources
from csrseg.inference.video import VideoReadError, iter_frames, open_video, predict_video
from tests.conftest import fake_checkpoint

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("video"), cls_bias=-3.0)


def _clip(path, frames=7, size=(96, 64), fps=10.0):
    """A clip of a white square moving right on a dark background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for k in range(frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        frame[20:44, 8 + 8 * k : 32 + 8 * k] = 240
        writer.write(frame)
    writer.release()
    return path


def test_cli_predicts_every_nth_frame_and_writes_the_overlaid_clip(tmp_path, weights, capsys):
    clip = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    argv = ["predict", str(clip), "--weights", str(weights), "--out", str(out), "--score-thr", "0.0",
            "--video-stride", "2", "--batch", "3"]
    assert main(argv) == 0
    assert "1 videos (4 frames)" in capsys.readouterr().out
    capture, info = open_video(out / "clip.mp4")
    written = list(iter_frames(capture))
    assert len(written) == 4 and (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(5.0)  # 10 fps clip, every 2nd frame
    assert not list(out.glob("*partial*"))
    records = json.loads((out / "predictions.json").read_text())
    assert sorted({r["frame"] for r in records}) == [0, 2, 4, 6]
    # each frame's rows are what the Predictor says about that decoded frame on its own
    predictor = Predictor(weights, device="cpu", score_thr=0.0)
    frames = dict(iter_frames(open_video(clip)[0]))
    for index in (0, 6):
        expected = predictor.predict(frames[index])
        rows = [r for r in records if r["frame"] == index]
        # as sorted lists with a tolerance: frames batched together and one frame alone may run
        # different convolution kernels, so near-equal scores can swap places
        assert sorted(r["score"] for r in rows) == pytest.approx(sorted(i.score for i in expected), abs=1e-4)
        assert all(r["segmentation"]["size"] == [64, 96] and r["file_name"] == str(clip) for r in rows)


def test_unreadable_video_is_skipped_and_images_still_run(tmp_path, weights, capsys):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.mp4").write_text("not a video")
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(src / "a.png")
    assert [p.name for p in expand_sources([str(src)])] == ["a.png", "broken.mp4"]
    out = tmp_path / "out"
    assert main(["predict", str(src), "--weights", str(weights), "--out", str(out), "--score-thr", "0.0"]) == 0
    captured = capsys.readouterr()
    assert "broken.mp4: cannot be opened as a video" in captured.err
    assert "1 images, 0 videos (0 frames)" in captured.out and "1 skipped" in captured.out
    assert (out / "a.jpg").is_file() and not list(out.glob("broken*"))


def test_missing_opencv_is_a_one_line_error_naming_the_clip(tmp_path, weights, monkeypatch):
    clip = _clip(tmp_path / "clip.mp4", frames=2)
    monkeypatch.setitem(sys.modules, "cv2", None)  # what an install without the [video] extra looks like
    with pytest.raises(VideoReadError, match=r"clip\.mp4: video input needs OpenCV: pip install"):
        predict_video(Predictor(weights, device="cpu"), clip, tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_bad_stride_is_refused(tmp_path, weights, capsys):
    clip = _clip(tmp_path / "clip.mp4", frames=2)
    with pytest.raises(SystemExit) as exit_info:  # refused by the option parser, before the model is loaded
        main(["predict", str(clip), "--weights", str(weights), "--video-stride", "0"])
    assert exit_info.value.code == 2
    assert "argument --video-stride: must be at least 1, got 0" in capsys.readouterr().err
