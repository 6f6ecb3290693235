"""ByteTrack's association (csrseg.tracking.bytetrack) on synthetic detections: no model involved."""

import numpy as np
import pytest

from csrseg.errors import CsrsegError
from csrseg.tracking import ByteTracker, TrackerConfig
from csrseg.tracking.metrics import mot_metrics
from csrseg.tracking.scenes import Mover, Scene, SyntheticDetection, detect, render, standard_scenes


def _square(x0, y0, size=20, score=0.9, category=1, crop=None):
    crop = np.ones((size, size), bool) if crop is None else crop
    return SyntheticDetection((x0, y0, x0 + size - 1, y0 + size - 1), score, category, crop)


def _run(scene, config, *, seed=0, drop=range(0), **noise):
    """Track ``scene`` (frames in ``drop`` without detections) -> its MotMetrics and each identity's track ids."""
    rng, tracker = np.random.default_rng(seed), ByteTracker(config)
    truth, tracked, given = [], [], {}
    for f in range(scene.frames):
        frame = render(scene, f)
        detections = [] if f in drop else detect(frame, rng, **noise)
        ids = tracker.update(detections)
        truth.append({s.identity: s.box for s in frame.seen if f not in drop})
        tracked.append({i: d.box for i, d in zip(ids, detections) if i is not None})
        for d, i in zip(detections, ids):
            if d.identity is not None and i is not None:
                given.setdefault(d.identity, set()).add(i)
    return mot_metrics(truth, tracked), given


@pytest.mark.parametrize("iou", ["box", "mask"])
def test_crossing_squares_of_one_class_keep_their_identities(iou):
    crossing = next(s for s in standard_scenes() if s.name == "crossing")
    metrics, given = _run(crossing, TrackerConfig(iou=iou))
    # the far square is hidden behind the near one at the crossing: only the Kalman filter's
    # velocities tell which square comes out on which side
    assert metrics.switches == 0 and metrics.tracks == 2
    assert given[1] != given[2] and all(len(ids) == 1 for ids in given.values())


@pytest.mark.parametrize("buffer, tracks", [(10, 1), (5, 2)])
def test_a_track_missed_for_up_to_buffer_frames_is_found_where_its_velocity_takes_it(buffer, tracks):
    # 8 frames without a detection while the square moves 32 px, more than its own 20 px: found
    # again only at the box the filter predicts, and only while the buffer keeps the track
    scene = Scene("gap", (Mover(1, (20, 60), (4.0, 0.0)),), frames=30)
    metrics, given = _run(scene, TrackerConfig(buffer=buffer), drop=range(10, 18))
    assert len(given[1]) == tracks and metrics.tracks == tracks


def test_low_scores_continue_a_track_and_never_start_one():
    tracker = ByteTracker(TrackerConfig(high=0.5, low=0.1))
    first = tracker.update([_square(10, 10, score=0.9)])[0]
    # half hidden: scores 0.3, matched in the second stage; a lone 0.3 elsewhere starts nothing
    for k in range(1, 6):
        ids = tracker.update([_square(10 + 2 * k, 10, score=0.3), _square(100, 100, score=0.3)])
        assert ids == [first, None]
    assert tracker.update([_square(22, 10, score=0.05)]) == [None]  # under low: not even a candidate


def test_a_lost_track_waits_for_a_confident_detection():
    tracker = ByteTracker(TrackerConfig())
    first = tracker.update([_square(10, 10)])[0]
    assert tracker.update([]) == []
    # seen again at a low score after a missed frame: the second stage takes only tracks seen in
    # the last frame, so this stays untracked; a confident one in the next frame finds the track
    assert tracker.update([_square(10, 10, score=0.3)]) == [None]
    assert tracker.update([_square(10, 10, score=0.9)]) == [first]


def test_mask_iou_keeps_apart_two_objects_that_share_a_box():
    upper = np.triu(np.ones((20, 20), bool))  # the upper-right half, diagonal included
    lower = ~upper  # the other half: no pixel in common, the same box
    for iou, same in (("box", True), ("mask", False)):
        tracker = ByteTracker(TrackerConfig(iou=iou))
        first = [tracker.update([_square(40, 40, crop=upper)])[0] for _ in range(3)][0]
        # the first object leaves; another appears in its box: box IoU 1, mask IoU 0
        second = tracker.update([_square(40, 40, crop=lower)])[0]
        assert (second == first) is same, iou


def test_detections_of_another_category_never_take_a_track():
    tracker = ByteTracker(TrackerConfig())
    first = tracker.update([_square(10, 10, category=1)])[0]
    assert tracker.update([_square(10, 10, category=2)])[0] not in (None, first)


def test_two_tracks_in_one_frame_get_their_own_detections_whatever_the_order():
    tracker = ByteTracker(TrackerConfig())
    a, b = tracker.update([_square(10, 10), _square(60, 10)])
    assert a != b
    assert tracker.update([_square(62, 10), _square(12, 10)]) == [b, a]


@pytest.mark.parametrize("fields, option", [
    (dict(high=1.5), "--track-high 1.5"), (dict(low=-0.1), "--track-low -0.1"), (dict(match_iou=float("nan")), "--track-match"),
    (dict(low=0.6, high=0.5), "--track-low 0.6 is above --track-high 0.5"), (dict(buffer=0), "--track-buffer 0"),
    (dict(iou="giou"), "--track-iou 'giou'"),
])
def test_settings_out_of_range_are_one_line_errors_naming_the_option(fields, option):
    with pytest.raises(CsrsegError, match="^" + option.replace("(", r"\(").replace("+", r"\+")) as info:
        TrackerConfig(**fields)
    assert "\n" not in str(info.value)
