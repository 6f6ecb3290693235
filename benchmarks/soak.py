"""Long runs, flat memory: the resident memory of ``csrseg predict`` and ``csrseg eval`` over many images.

    python benchmarks/soak.py --images 5000          # on demand; prints the slope in MB per 1000 images

Both verbs run in this process (the CLI's own code, ``cli.main``) over ``--images`` generated
synthetic images; the process RSS (``/proc/self/status`` VmRSS, Linux) is read after every image.
What a run may keep is its results (RLE rows, a few hundred bytes per instance); anything that
grows faster than that (dense masks, per-image tensors, caches) shows as a slope. The slope is
taken between the middle and the end of the run, after allocators and caches have warmed up.
``tests/test_soak.py`` runs the same at a few hundred images with a bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from csrseg.config import Config, load_config, to_dict
from csrseg.data.synth import SynthSpec, write_split
from csrseg.engine.checkpoint import atomic_save
from csrseg.models import build_model

STATUS = Path("/proc/self/status")


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class Curve:
    """RSS (MB) after each image, and the results the run keeps (instances, bytes as JSON)."""

    rss: list[float] = field(default_factory=list)
    instances: int = 0
    result_bytes: int = 0

    def growth(self) -> float:
        """MB gained from the middle image to the last."""
        return self.rss[-1] - self.rss[len(self.rss) // 2 - 1]

    def slope(self) -> float:
        """MB per 1000 images over the second half of the run."""
        return self.growth() / (len(self.rss) - len(self.rss) // 2) * 1000


@contextlib.contextmanager
def sampling(module: object, name: str, curve: Curve, per_call: int = 1):
    """Wrap ``module.name`` (called once per image, or once per batch of ``per_call``) to read RSS after each call."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        curve.rss.extend([rss_mb()] * per_call)
        return result

    setattr(module, name, wrapper)
    try:
        yield curve
    finally:
        setattr(module, name, original)


def make_images(root: Path, count: int, size: int) -> Path:
    """``count`` synthetic images of ``size`` px with their COCO annotations as split ``val`` of ``root``."""
    write_split(root, "val", count, seed=11, spec=SynthSpec(image_size=size))
    return root


def make_weights(path: Path, cfg: Config, cls_bias: float = -1.0) -> Path:
    """A random model that finds a handful of instances in any image (untrained ones find none)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_out.weight.normal_(0, 0.5)
        model.head.cls_out.bias.fill_(cls_bias)
        model.head.kernel_out.weight.normal_(0, 0.2)
    classes = [str(i) for i in range(cfg.model.num_classes)]
    atomic_save(dict(model=model.state_dict(), config=to_dict(cfg), classes=classes,
                     cat_ids=list(range(1, cfg.model.num_classes + 1))), path)
    return path


def soak_predict(weights: Path, images: Path, out: Path) -> Curve:
    """``csrseg predict`` over every image of the folder ``images``, RSS after each."""
    import csrseg.inference.runner
    from csrseg.cli import main

    curve = Curve()
    with sampling(csrseg.inference.runner, "draw_predictions", curve):  # once per image, overlay drawn
        code = main(["predict", str(images), "--weights", str(weights), "--out", str(out), "--device", "cpu",
                     "--score-thr", "0.1", "--exist-ok"])
    if code:
        raise RuntimeError(f"csrseg predict exited with {code}")
    rows = json.loads((out / "predictions.json").read_text())
    curve.instances, curve.result_bytes = len(rows), len(json.dumps(rows))
    return curve


def soak_eval(weights: Path, root: Path, out: Path) -> Curve:
    """``csrseg eval`` on split ``val`` of ``root`` (batch 1, no worker processes), RSS after each image."""
    import csrseg.evaluation.coco
    from csrseg.cli import main

    curve = Curve()
    with sampling(csrseg.evaluation.coco, "predictions_to_coco", curve):
        code = main(["eval", "--weights", str(weights), "--data", str(root), "--split", "val", "--device", "cpu",
                     "--batch", "1", "--workers", "0", "--out", str(out)])
    if code:
        raise RuntimeError(f"csrseg eval exited with {code}")
    rows = json.loads(out.read_text())
    assert all(isinstance(r["segmentation"]["counts"], str) for r in rows)  # RLE, never dense masks
    curve.instances, curve.result_bytes = len(rows), len(json.dumps(rows))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    if not STATUS.is_file():
        raise SystemExit("needs Linux (/proc/self/status)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        cfg = load_config(args.config, [f"input.short_side={args.size}", f"input.max_size={args.size}"])
        weights = make_weights(work / "model.pt", cfg)
        root = make_images(work / "data", args.images, args.size)
        rows = []
        for verb, curve in (("predict", soak_predict(weights, root / "val", work / "pred")),
                            ("eval", soak_eval(weights, root, work / "results.json"))):
            rows.append(f"| {verb} | {len(curve.rss)} | {curve.rss[0]:.0f} | {curve.rss[len(curve.rss) // 2 - 1]:.0f} | "
                        f"{curve.rss[-1]:.0f} | {curve.slope():.2f} | {curve.instances} | "
                        f"{curve.result_bytes / 2**20 / len(curve.rss) * 1000:.2f} |")
    print(f"config {args.config}, {args.size}x{args.size} images, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {platform.processor() or platform.machine()}")
    print("| verb | images | RSS first (MB) | RSS middle (MB) | RSS last (MB) | slope (MB / 1000 images) | "
          "instances kept | results as JSON (MB / 1000 images) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
