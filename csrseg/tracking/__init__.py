"""Tracking: identities of instances across the frames of a video (ByteTrack's association on box or
mask IoU), and the MOT metrics that score it against known identities."""

from csrseg.tracking.bytetrack import IOU_KINDS, ByteTracker, TrackerConfig

__all__ = ["IOU_KINDS", "ByteTracker", "TrackerConfig"]
