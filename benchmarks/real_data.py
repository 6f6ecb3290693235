"""Real data, straight from its folder: train and evaluate on a Roboflow COCO export of photographs.

    python benchmarks/real_data.py [--data ../shared/data/iotkits/valid] [--out runs/real_data]
                                   [--config demo] [--epochs 24] [--size 320] [--quick] [--set KEY=VALUE ...]

The IoT-kits set (CC BY 4.0) is one Roboflow split folder: 620 photographs of 640x640,
``_annotations.coco.json`` beside them, 32 classes plus Roboflow's unannotated parent
category (id 0, which gets no output class). Roboflow's augmented copies of a photo
share the file-name prefix before ``_jpg.rf.``; the split keeps each prefix on one side
(80 / 20, by a hash of the prefix), so no photo is seen in training and scored in val.
The split is written as two COCO files and a dataset YAML in the run folder; images
stay where they are. ``--quick``: a few iterations, to see that everything runs.

Writes ``OUT/report.md``: the command, the machine, mask and box AP, AP per class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from csrseg import evaluate, train
from csrseg.config import load_config
from csrseg.evaluation.coco import format_detailed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "iotkits" / "valid"
QUICK = ["train.max_iters=4", "train.eval_interval=1", "train.batch_size=2"]


def photo_of(file_name: str) -> str:
    """Roboflow names augmented copies ``<photo>_jpg.rf.<hash>.jpg``: the photo is the prefix."""
    return file_name.split("_jpg.rf.")[0].split(".rf.")[0]


def split_by_photo(ann_file: Path, out: Path, val_fraction: float = 0.2) -> Path:
    """Write ``out/train.json``, ``out/val.json`` and ``out/data.yaml`` (images in ``ann_file``'s folder)."""
    data = json.loads(ann_file.read_text(encoding="utf-8"))

    def in_val(image: dict) -> bool:
        digest = hashlib.sha1(photo_of(image["file_name"]).encode("utf-8")).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF < val_fraction

    out.mkdir(parents=True, exist_ok=True)
    for split, keep in (("train", False), ("val", True)):
        images = [im for im in data["images"] if in_val(im) == keep]
        ids = {im["id"] for im in images}
        subset = dict(data, images=images, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
        (out / f"{split}.json").write_text(json.dumps(subset), encoding="utf-8")
    images = ann_file.parent.resolve()
    yaml_text = "".join(f"{s}: {{annotations: {s}.json, images: {json.dumps(str(images))}}}\n" for s in ("train", "val"))
    (out / "data.yaml").write_text(yaml_text, encoding="utf-8")
    return out / "data.yaml"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a Roboflow split folder with _annotations.coco.json")
    parser.add_argument("--out", type=Path, default=Path("runs/real_data"))
    parser.add_argument("--config", default="demo")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--size", type=int, default=320, help="input side (the photos are 640x640)")
    parser.add_argument("--quick", action="store_true", help="a few iterations: check that everything runs")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ann_file = args.data / "_annotations.coco.json"
    if not ann_file.is_file():
        sys.exit(f"real_data: error: {ann_file} not found (the data set lives in ../shared/data/iotkits)")

    data_yaml = split_by_photo(ann_file, args.out / "split")
    overrides = [f"input.short_side={args.size}", f"input.max_size={args.size}", f"train.epochs={args.epochs}",
                 "train.eval_interval=4", *(QUICK if args.quick else []), *args.overrides]
    cfg = load_config(args.config, overrides)
    tic = time.perf_counter()
    run = train(data_yaml, config=cfg, out=args.out / "train", progress=not args.quick, exist_ok=True)
    minutes = (time.perf_counter() - tic) / 60
    if run.best is None:
        sys.exit("real_data: error: no evaluation ran (no best.pt)")
    report = evaluate(run.best, data=data_yaml)
    command = "python benchmarks/real_data.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        f"command: `{command}`", f"machine: {machine()}",
        f"config: {cfg.name} ({' '.join(overrides)}), {run.iterations} iterations in {minutes:.1f} min; "
        f"val: {report['images']} images, {sum(r['instances'] for r in report['classes'])} instances", "",
        format_detailed(report)])
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nreport: {args.out / 'report.md'}; run folder: {run.run_dir}")


if __name__ == "__main__":
    main()
