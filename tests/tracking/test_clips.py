"""Tracking end to end: ``csrseg track`` on a clip written with OpenCV, the overlay's colour per track,
and a synthetic clip's identities kept through encoding, decoding, prediction and the rows written."""

import json
import types
from collections import defaultdict

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from csrseg.cli import main
from csrseg.inference.predictor import Instance
from csrseg.inference.records import RecordWriter
from csrseg.inference.runner import predict_files
from csrseg.inference.video import iter_frames, open_video
from csrseg.inference.visualize import draw_predictions, instance_colour
from csrseg.tracking import TrackerConfig
from csrseg.tracking.metrics import mot_metrics
from csrseg.tracking.scenes import render, standard_scenes
from tests.conftest import fake_checkpoint

cv2 = pytest.importorskip("cv2")


def _write_clip(path, frames):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def test_csrseg_track_writes_a_track_id_on_every_row(tmp_path):
    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    frames = []
    for k in range(6):
        frame = np.full((64, 96, 3), 30, np.uint8)
        frame[20:44, 8 + 8 * k : 32 + 8 * k] = 240
        frames.append(frame)
    clip = _write_clip(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"
    assert main(["track", str(clip), "--weights", str(weights), "--out", str(out), "--track-iou", "mask"]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    assert rows and all(isinstance(r["track_id"], int) and r["track_id"] >= 1 for r in rows)
    # one identity per row of a frame: a track is one object
    per_frame = defaultdict(list)
    for r in rows:
        per_frame[r["frame"]].append(r["track_id"])
    assert all(len(ids) == len(set(ids)) for ids in per_frame.values())
    assert min(r["score"] for r in rows) >= 0.1  # --score-thr follows --track-low when tracking
    assert len(list(iter_frames(open_video(out / "clip.mp4")[0]))) == 6
    # the same clip through plain predict: no identities, and no instance dropped for lack of a track
    plain = tmp_path / "plain"
    assert main(["predict", str(clip), "--weights", str(weights), "--out", str(plain), "--score-thr", "0.1"]) == 0
    untracked = json.loads((plain / "predictions.json").read_text())
    assert len(untracked) >= len(rows) and not any("track_id" in r for r in untracked)


def test_an_instance_is_drawn_in_its_track_colour_wherever_it_is_in_the_list():
    image = np.zeros((30, 30, 3), np.uint8)
    inst = Instance(0, "a", 1, 0.9, np.ones((10, 10), bool), (5.0, 5.0, 14.0, 14.0), (30, 30))
    other = Instance(0, "a", 1, 0.9, np.ones((5, 5), bool), (20.0, 20.0, 24.0, 24.0), (30, 30))
    alone = np.asarray(draw_predictions(image, [inst], ["a"], track_ids=[7]))
    second = np.asarray(draw_predictions(image, [other, inst], ["a"], track_ids=[3, 7]))
    assert (alone[10, 10] == second[10, 10]).all()  # inside the mask, away from its tag
    untracked = np.asarray(draw_predictions(image, [other, inst], ["a"]))
    assert not (untracked[10, 10] == second[10, 10]).all()
    assert instance_colour(7) != instance_colour(1)


class ColourDetector:
    """A stand-in for a model on the synthetic clips: one instance per shape colour found in the frame
    (after MPEG-4 has blurred it), its mask the pixels near that colour. It knows colours, not
    identities: the two squares of the crossing clip differ in colour but not in class."""

    class_names = ["shape"]

    def __init__(self, colours):
        self.colours = [np.array(c, np.int16) for c in colours]
        self.below = types.SimpleNamespace(count=0, top=0.0)

    def predict_batch(self, images):
        out = []
        for image in images:
            found = []
            for colour in self.colours:
                mask = (np.abs(image.astype(np.int16) - colour) < 40).all(axis=2)
                if mask.sum() < 30:
                    continue
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                found.append(Instance(0, "shape", 1, 0.9, crop, (float(cols[0]), float(rows[0]), float(cols[-1]),
                                                                  float(rows[-1])), mask.shape))
            out.append(found)
        return out


def test_a_crossing_clip_keeps_its_identities_through_the_whole_pipeline(tmp_path):
    scene = next(s for s in standard_scenes() if s.name == "crossing")
    rendered = [render(scene, f) for f in range(scene.frames)]
    clip = _write_clip(tmp_path / "crossing.mp4", [r.image for r in rendered])
    detector = ColourDetector([m.colour for m in scene.movers])
    records = RecordWriter(tmp_path / "predictions.json")
    counts = predict_files(detector, [clip], tmp_path, records, track=TrackerConfig())
    rows = json.loads(records.close().read_text())
    assert counts.frames == scene.frames
    tracked = [dict() for _ in range(scene.frames)]
    for r in rows:
        x0, y0, *_ = r["bbox"]
        x1, y1 = x0 + r["bbox"][2] - 1, y0 + r["bbox"][3] - 1
        tracked[r["frame"]][r["track_id"]] = (x0, y0, x1, y1)
        assert mask_utils.area(r["segmentation"]) > 0
    truth = [{s.identity: s.box for s in frame.seen} for frame in rendered]
    metrics = mot_metrics(truth, tracked)
    assert metrics.switches == 0 and metrics.tracks == 2 and metrics.mota > 0.9


@pytest.mark.parametrize("options, part", [
    (["--track-high", "1.5"], "argument --track-high: must be from 0 to 1, got 1.5"),
    (["--track-buffer", "0"], "argument --track-buffer: must be at least 1, got 0"),
    (["--track-iou", "giou"], "argument --track-iou: invalid choice"),
    (["--track-low", "0.7"], "--track-low 0.7 is above --track-high 0.5"),
])
def test_tracker_options_out_of_range_are_one_line_before_any_work(tmp_path, capsys, options, part):
    from tests.conftest import exit_code, one_line_error

    assert exit_code(["track", str(tmp_path / "clip.mp4"), "--weights", str(tmp_path / "none.pt"), *options]) == 2
    one_line_error(capsys, part)
