"""``csrseg convert``: YOLO-seg, LabelMe or VIA annotations -> a validated COCO dataset (ROOT layout)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from csrseg.data.convert import ImageRecord, write_coco_root
from csrseg.outputs import check_outputs
from csrseg.errors import CsrsegError

FORMATS = ("yolo", "labelme", "via")


@dataclass
class ConvertResult:
    out: Path
    splits: dict[str, list[ImageRecord]]
    names: list[str]
    skipped: Counter  # what was left out, by reason, with counts

    def counts(self) -> str:
        return ", ".join(f"{split} {len(records)} images / {sum(len(r.instances) for r in records)} objects"
                         for split, records in self.splits.items())


def convert(format: str, src: str | Path, out: str | Path, copy: bool = False, class_attr: str = "class",
            val_fraction: float = 0.2, exist_ok: bool = False) -> ConvertResult:
    """Read ``src`` in ``format`` and write it as a COCO dataset at ``out`` (images linked, or copied with
    ``copy``), read back with the same validation as training. ``class_attr``: VIA's region attribute
    holding the class; ``val_fraction``: the val share of LabelMe and VIA sets without split folders."""
    if format not in FORMATS:
        raise CsrsegError(f"convert {format}: choose {', '.join(FORMATS)}")
    out = Path(out)
    check_outputs(out, ["annotations"], exist_ok, "pass --exist-ok to replace it or choose another OUT")
    skipped: Counter = Counter()
    if format == "yolo":
        from csrseg.data.convert.yolo import read_yolo

        splits, names, skipped = read_yolo(src)
    elif format == "labelme":
        from csrseg.data.convert.labelme import read_labelme

        splits, names, skipped = read_labelme(src, val_fraction)
    else:
        from csrseg.data.convert.via import read_via

        splits, names, skipped = read_via(src, class_attr, val_fraction)
    write_coco_root(out, splits, names, copy=copy)
    return ConvertResult(out, splits, names, skipped)
