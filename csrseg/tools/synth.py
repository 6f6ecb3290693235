"""``csrseg synth``: a synthetic COCO-format dataset of shapes, written into a folder of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from csrseg.data.synth import SynthSpec, make_synthetic_dataset
from csrseg.outputs import check_outputs


def synthesize(out: str | Path, images: int = 500, seed: int = 0, val_fraction: float = 0.2, size: int = 256,
               exist_ok: bool = False) -> Path:
    """``images`` synthetic images (train + val) in the COCO ROOT layout at ``out``. A dataset already
    there is refused unless ``exist_ok``, and then replaced whole: a smaller set must not leave the
    old one's images behind."""
    found = check_outputs(Path(out), ["annotations", "train", "val"], exist_ok,
                          "pass --exist-ok to replace it or choose another OUT")
    for name in found:
        shutil.rmtree(name) if name.is_dir() else name.unlink()
    return make_synthetic_dataset(out, images, seed, val_fraction, SynthSpec(image_size=size))
