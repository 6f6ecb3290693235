"""ByteTrack's association (Zhang et al., ECCV 2022): identities across the frames of a video.

Each frame's detections are split by score. The confident ones (``score >= high``) are matched first,
to every track alive (seen in the last frame, or lost for at most ``buffer`` frames), each track at
the box its Kalman filter expects (:mod:`csrseg.tracking.kalman`). The doubtful ones (``low <= score
< high``: a partly occluded object scores low) are then matched to the tracks seen in the last frame
that are still free: they keep a track going, but never start one, so clutter does not make tracks.
Confident detections left over start tracks. A track missed in more than ``buffer`` frames in a row
is removed. Matching is Hungarian (``scipy.optimize.linear_sum_assignment``) on box IoU, or on mask
IoU (the track's last mask moved with its box), within a category only.

Left out of the paper's tracker, for a simpler one: a new track's first detection is reported at
once (ByteTrack waits for a second frame to confirm it), tracks are born at ``high`` (ByteTrack:
``high + 0.1``), and the detection score is not fused into the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from csrseg.errors import CsrsegError
from csrseg.tracking.kalman import BoxKalman, xyxy_to_cxcywh
from csrseg.tracking.overlap import PlacedMask, box_iou, mask_iou

IOU_KINDS = ("box", "mask")


class Detection(Protocol):
    """What the tracker reads of a detection (:class:`~csrseg.inference.predictor.Instance` has it)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1, inclusive
    score: float
    category_id: int
    crop: np.ndarray  # (y1 - y0 + 1, x1 - x0 + 1) bool: the mask within the box

    @property
    def origin(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings; the defaults are the paper's (its ``match_thresh`` 0.8 is a cost,
    ``1 - IoU``: a first-stage match needs IoU at least 0.2)."""

    high: float = 0.5  # first stage, and the least score that starts a track
    low: float = 0.1  # second stage: from low to high
    match_iou: float = 0.2  # the least IoU of a first-stage match
    low_match_iou: float = 0.5  # the least IoU of a second-stage match (stricter: these may be clutter)
    buffer: int = 30  # frames a lost track waits to be found again
    iou: str = "box"  # "box" or "mask"

    def __post_init__(self) -> None:
        for option, value in (("--track-high", self.high), ("--track-low", self.low),
                              ("--track-match", self.match_iou), ("low_match_iou", self.low_match_iou)):
            if not 0 <= value <= 1:  # NaN fails too
                raise CsrsegError(f"{option} {value}: must be from 0 to 1")
        if self.low > self.high:
            raise CsrsegError(f"--track-low {self.low} is above --track-high {self.high}: the second stage takes "
                              "the scores between them")
        if not isinstance(self.buffer, int) or self.buffer < 1:
            raise CsrsegError(f"--track-buffer {self.buffer}: must be an integer of at least 1 (frames)")
        if self.iou not in IOU_KINDS:
            raise CsrsegError(f"--track-iou {self.iou!r}: expected one of {', '.join(IOU_KINDS)}")


@dataclass
class Track:
    """One identity: its filter, its last mask and where it was seen."""

    track_id: int
    category_id: int
    kalman: BoxKalman
    mask: PlacedMask
    mask_centre: tuple[float, float]  # the box centre when ``mask`` was seen
    last_seen: int  # frame number

    def predicted_mask(self) -> PlacedMask:
        """The last mask moved as the filter moved the box since (whole pixels)."""
        cx, cy = self.kalman.mean[:2]
        return self.mask.shifted(int(round(cx - self.mask_centre[0])), int(round(cy - self.mask_centre[1])))

    def see(self, detection: Detection, frame: int) -> None:
        box = np.asarray(detection.box, np.float64)
        self.kalman.update(box)
        self.mask, self.mask_centre = _placed(detection), tuple(xyxy_to_cxcywh(box)[:2])
        self.last_seen = frame


class ByteTracker:
    """Feed it every frame's detections in order (:meth:`update`); it answers each with an identity.

    One tracker per video: identities are numbered from 1 in the order tracks start.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_id = 1

    def update(self, detections: Sequence[Detection]) -> list[int | None]:
        """One frame's detections -> their track ids, in their order; ``None`` for a detection no
        track took and that starts none (under ``high`` and matched to nothing, or under ``low``)."""
        cfg = self.config
        self.frame += 1
        for track in self.tracks:
            track.kalman.predict(keep_size=track.last_seen < self.frame - 1)
        high = [i for i, d in enumerate(detections) if d.score >= cfg.high]
        low = [i for i, d in enumerate(detections) if cfg.low <= d.score < cfg.high]
        ids: list[int | None] = [None] * len(detections)

        first, free_tracks, free_high = self._match(self.tracks, detections, high, cfg.match_iou)
        recent = [t for t in free_tracks if t.last_seen == self.frame - 1]  # lost tracks wait for a confident one
        second, _, _ = self._match(recent, detections, low, cfg.low_match_iou)
        for track, index in first + second:
            track.see(detections[index], self.frame)
            ids[index] = track.track_id
        for index in free_high:
            track = self._start(detections[index])
            ids[index] = track.track_id
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen <= cfg.buffer]
        return ids

    def _start(self, detection: Detection) -> Track:
        box = np.asarray(detection.box, np.float64)
        track = Track(self._next_id, detection.category_id, BoxKalman(box), _placed(detection),
                      tuple(xyxy_to_cxcywh(box)[:2]), self.frame)
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _match(self, tracks: list[Track], detections: Sequence[Detection], chosen: list[int],
               least_iou: float) -> tuple[list[tuple[Track, int]], list[Track], list[int]]:
        """Hungarian matching of ``tracks`` to ``detections[chosen]`` -> the matched pairs, the tracks
        left free and the detections left free (indices into ``detections``)."""
        if not tracks or not chosen:
            return [], list(tracks), list(chosen)
        iou = self._iou(tracks, [detections[i] for i in chosen])
        same = np.array([[t.category_id == detections[i].category_id for i in chosen] for t in tracks])
        iou = np.where(same, iou, 0.0)
        rows, cols = linear_sum_assignment(1.0 - iou)
        pairs = [(tracks[r], chosen[c]) for r, c in zip(rows, cols) if iou[r, c] >= least_iou and iou[r, c] > 0]
        taken_tracks = {id(t) for t, _ in pairs}
        taken = {i for _, i in pairs}
        return pairs, [t for t in tracks if id(t) not in taken_tracks], [i for i in chosen if i not in taken]

    def _iou(self, tracks: list[Track], detections: list[Detection]) -> np.ndarray:
        """``(tracks, detections)`` IoU of each track where it is expected with each detection."""
        boxes = box_iou(np.stack([t.kalman.box for t in tracks]), np.array([d.box for d in detections], np.float64))
        if self.config.iou == "box":
            return boxes
        masks = np.zeros_like(boxes)
        touching = boxes > 0  # masks inside boxes that do not meet cannot meet either
        predicted = [t.predicted_mask() for t in tracks]
        placed = [_placed(d) for d in detections]
        for r, c in zip(*np.nonzero(touching)):
            masks[r, c] = mask_iou([predicted[r]], [placed[c]])[0, 0]
        return masks


def _placed(detection: Detection) -> PlacedMask:
    x0, y0 = detection.origin
    return PlacedMask(np.asarray(detection.crop, dtype=bool), int(x0), int(y0))
