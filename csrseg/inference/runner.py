"""Predicting over many sources: images in batches and videos frame by frame, overlays written beside
COCO-style rows streamed to ``predictions.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from csrseg.data.io import ImageReadError
from csrseg.inference.predictor import Instance, as_rgb_array
from csrseg.inference.records import RecordWriter, instance_records
from csrseg.inference.video import VideoReadError, is_video, predict_video
from csrseg.inference.visualize import draw_predictions


@dataclass
class PredictCounts:
    """What a run over sources did: ``images`` and ``videos`` read (of ``videos_given``; ``frames`` of them predicted),
    ``instances`` written, and why each unreadable file was skipped (``skipped_files``, one line each)."""

    images: int = 0
    videos_given: int = 0
    videos: int = 0
    frames: int = 0
    instances: int = 0
    skipped_files: list[str] = field(default_factory=list)
    below_threshold: int = 0  # instances left out for scoring under the threshold
    top_below: float = 0.0  # the highest score among them

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)


def predict_files(predictor, paths: list[Path], out_dir: Path, records: RecordWriter, batch: int = 1,
                  video_stride: int = 1) -> PredictCounts:
    """Overlays of every image (``OUT/<stem>.jpg``) and video (``OUT/<stem>.mp4``) of ``paths`` into
    ``out_dir`` and their rows into ``records``; a file that cannot be read is skipped, its reason kept
    in the counts, never the end of the run. ``predictor``: a :class:`Predictor` or an ``OnnxPredictor``."""
    counts = PredictCounts()
    images = [p for p in paths if not is_video(p)]
    for start in range(0, len(images), batch):
        chunk, arrays = [], []
        for path in images[start : start + batch]:
            try:
                arrays.append(as_rgb_array(path))
                chunk.append(path)
            except ImageReadError as exc:
                counts.skipped_files.append(str(exc))
        if not arrays:
            continue
        for path, image, instances in zip(chunk, arrays, predictor.predict_batch(arrays)):
            draw(image, instances, predictor.class_names).save(out_dir / f"{path.stem}.jpg", quality=92)
            counts.images += 1
            records.write(instance_records(str(path), instances))
    videos = [p for p in paths if is_video(p)]
    counts.videos_given = len(videos)
    for path in videos:
        try:
            # each frame's instances become RLE rows at once: dense masks of a long clip would fill memory
            results = predict_video(predictor, path, out_dir / f"{path.stem}.mp4", stride=video_stride, batch=batch,
                                    convert=partial(_frame_records, str(path)))
        except VideoReadError as exc:
            counts.skipped_files.append(str(exc))
            continue
        counts.videos, counts.frames = counts.videos + 1, counts.frames + len(results)
        for _, rows in results:
            records.write(rows)
    counts.instances = records.count
    counts.below_threshold, counts.top_below = predictor.below.count, predictor.below.top
    return counts


def draw(image, instances: list[Instance], class_names: list[str]):
    """The overlay of ``instances`` on ``image`` ``(H, W, 3)`` uint8, as a PIL image."""
    return draw_predictions(image, instances, class_names)


def _frame_records(file_name: str, index: int, instances: list[Instance]) -> list[dict]:
    return instance_records(file_name, instances, frame=index)
