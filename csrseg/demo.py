"""The built-in demo: synthetic data -> training on the CPU -> COCO mask AP -> overlays.

Everything lands in one run folder::

    RUN/data/        the synthetic COCO-format dataset (train and val)
    RUN/train/       config.yaml, log.jsonl, last.pt, best.pt, results.png, val_results.json
    RUN/overlays/    val images with the predicted masks drawn on them
"""

from __future__ import annotations

import time
from pathlib import Path

from csrseg.config import load_config
from csrseg.data.io import read_image
from csrseg.data.synth import make_synthetic_dataset
from csrseg.engine.rundir import TRAIN_OUTPUTS, check_outputs
from csrseg.engine.trainer import train
from csrseg.evaluate import format_table
from csrseg.predict import Predictor
from csrseg.visualize import draw_instances

QUICK_OVERRIDES = ["train.epochs=1", "train.max_iters=3", "train.batch_size=2", "train.warmup_iters=2", "train.workers=0"]


def run_demo(out: str | Path, quick: bool = False, images: int | None = None, device: str = "cpu",
             overrides: list[str] | tuple[str, ...] = (), num_overlays: int = 8, exist_ok: bool = False) -> str:
    """Run the demo into ``out``; returns the report printed by ``csrseg demo``.

    ``exist_ok``: replace a demo already in ``out`` (refused otherwise, naming its files).
    """
    out = Path(out)
    check_outputs(out, [f"train/{name}" for name in TRAIN_OUTPUTS] + ["overlays"], exist_ok)
    tic = time.perf_counter()
    images = images or (12 if quick else 1000)
    data = make_synthetic_dataset(out / "data", images, seed=0)
    cfg = load_config("demo", [*(QUICK_OVERRIDES if quick else []), *overrides])
    result = train(cfg, data, out / "train", device=device, exist_ok=exist_ok)

    weights = result.best or result.last
    predictor = Predictor(weights, device=device, score_thr=0.3)
    metrics = predictor.metrics or result.metrics  # those of the weights we hand out
    overlay_dir = out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    val_images = sorted((data / "val").glob("*.png"))[:num_overlays]
    for path, instances in zip(val_images, predictor.predict_batch(val_images)):
        overlay = draw_instances(read_image(path), [i.mask for i in instances], [i.label for i in instances],
                                 [i.score for i in instances], predictor.class_names)
        overlay.save(overlay_dir / f"{path.stem}.jpg", quality=92)
    minutes = (time.perf_counter() - tic) / 60
    return "\n".join([
        f"demo finished in {minutes:.1f} min: {result.iterations} iterations; mask AP of {weights.name} "
        f"on the synthetic val split ({len(list((data / 'val').glob('*.png')))} images):",
        format_table(metrics),
        f"weights:      {weights}",
        f"training log: {result.run_dir / 'log.jsonl'}",
        f"plot:         {result.run_dir / 'results.png'}",
        f"overlays:     {overlay_dir}/ ({len(val_images)} val images)",
        f"dataset:      {data}",
    ])
