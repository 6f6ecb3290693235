"""Predictions as COCO-style rows: RLE-encoded masks, one row per instance, streamed to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path


from csrseg.masks.rle import encode_crop


def instance_records(file_name: str, instances: list, track_ids: list[int] | None = None, **extra: object) -> list[dict]:
    """COCO-style result rows (xywh ``bbox``, RLE ``segmentation``) for one image or video frame's
    :class:`~csrseg.inference.predictor.Instance` list; with ``track_ids`` (one per instance), each
    row's ``track_id``."""
    rows = []
    for k, inst in enumerate(instances):
        x0, y0, x1, y1 = inst.box
        tracked = {} if track_ids is None else {"track_id": int(track_ids[k])}
        rows.append(dict(file_name=file_name, **extra, **tracked, category_id=inst.category_id, category=inst.class_name,
                         score=round(inst.score, 5), bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                         segmentation=encode_crop(inst.packed, inst.origin, inst.image_size)))
    return rows


class RecordWriter:
    """Writes result rows to a JSON array as they come, so memory stays flat over long runs.

    The array goes to a hidden temporary file beside ``path``, renamed onto ``path`` only when
    every row is written: an interrupted run never leaves a truncated ``predictions.json``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.count = 0
        self._file = self.tmp.open("w")
        self._file.write("[")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self._file.write((",\n" if self.count else "\n") + json.dumps(row))
            self.count += 1

    def flush(self) -> None:
        """What is written so far onto the disk (a stream's rows, frame by frame)."""
        self._file.flush()

    def close(self) -> Path:
        self._file.write("\n]\n")
        self._file.close()
        self.tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)


