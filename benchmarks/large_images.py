"""Large photos: time and peak memory of ``csrseg predict`` on one image, by megapixels and instances.

    python benchmarks/large_images.py                                  # 1, 6, 12, 24, 48 MP x 10, 100 instances
    python benchmarks/large_images.py --old-code /tmp/csrseg-before    # also the code of another checkout

What is timed is what ``csrseg predict photo.jpg`` does with one image (``predict_files``): read the JPEG,
``Predictor.predict`` (network at the config's input size, post-processing at the photo's size), the
overlay (drawn and written as JPEG) and the RLE rows (written as JSON). Each measurement runs in a process
of its own, after a warm-up on a small image: its peak RSS (``VmHWM`` of ``/proc/self/status``, reset
through ``/proc/self/clear_refs`` before the photo) is the photo's, with the process's baseline (Python,
PyTorch, the model) included, as a user sees it.

The model is the demo network with a K-Net head whose last stage is replaced by ``--instances`` known
instances: ellipses of log-uniform radii (``--radius``, fractions of the image's short side) at random
places, one class each, with distinct scores; so every photo has exactly that many instances, whatever
the random weights would have found. ``--old-code DIR`` runs the same measurement on the code in ``DIR``
(e.g. ``git archive <commit> | tar -x -C DIR``): only the public API both share is used here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STATUS = Path("/proc/self/status")
HERE = Path(__file__).resolve()
CODE = HERE.parents[1]


def vm_mb(key: str) -> float:
    """``VmRSS``, ``VmHWM`` ... of this process in MB (Linux)."""
    for line in STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in {STATUS}")


def reset_peak() -> None:
    """Give freed memory back to the OS and make ``VmHWM`` the current RSS."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def photo_size(megapixels: float) -> tuple[int, int]:
    """``(H, W)`` of a 3:2 landscape photo of about ``megapixels``."""
    height = int(round(math.sqrt(megapixels * 1e6 / 1.5)))
    return height, int(round(height * 1.5))


def write_photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A smooth colourful ``size`` photo with some grain, saved as a JPEG (quality 92)."""
    from PIL import Image

    height, width = size
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None]
    channels = [128 + 100 * np.sin(6.0 * xs + 4.0 * ys + phase) for phase in (0.0, 2.0, 4.0)]
    image = np.stack(channels, axis=-1)
    image += rng.normal(0, 8, (height, 1, 1)).astype(np.float32)  # row grain: cheap, and not flat for JPEG
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def controlled_model(count: int, radius: tuple[float, float], seed: int):
    """``(model, cfg)``: the demo network with a K-Net head whose last stage gives ``count`` ellipses."""
    import torch
    from torch import nn

    from csrseg.config import load_config, without_pretrained
    from csrseg.data.transforms import target_size
    from csrseg.models import build_model
    from csrseg.models.heads.knet import KNetConfig
    from csrseg.models.heads.knet.config import KNetPostprocessConfig

    cfg = load_config("demo")
    head = KNetConfig(postprocess=KNetPostprocessConfig(max_per_img=count))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=head))
    torch.manual_seed(seed)
    net = build_model(without_pretrained(cfg))

    class Controlled(nn.Module):
        """``net``, its last stage's mask logits and class logits replaced by ``count`` known instances."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.orig_size = (1, 1)  # of the photo about to be predicted: the ellipses lie within it

        def forward(self, x: torch.Tensor):
            out = self.net(x)
            in_h, in_w = target_size(*self.orig_size, cfg.input.short_side, cfg.input.max_size)
            masks = ellipse_logits(count, (x.shape[-2] // 8, x.shape[-1] // 8), (in_h, in_w), radius, seed)
            classes = cfg.model.num_classes
            cls = torch.full((count, classes), -20.0)
            cls[torch.arange(count), torch.arange(count) % classes] = 5.0 - 0.01 * torch.arange(count)
            b = x.shape[0]
            return out._replace(stage_masks=[*out.stage_masks[:-1], masks[None].expand(b, -1, -1, -1)],
                                stage_cls=[*out.stage_cls[:-1], cls[None].expand(b, -1, -1)])

        def postprocess(self, outputs, input_sizes, orig_sizes, static: bool = False):
            return self.net.postprocess(outputs, input_sizes, orig_sizes, static)

    return Controlled().eval(), cfg


def ellipse_logits(count: int, grid: tuple[int, int], input_size: tuple[int, int], radius: tuple[float, float],
                   seed: int):
    """``(count, gh, gw)`` mask logits at stride 8: ellipses centred in the ``input_size`` image, radii
    log-uniform in ``radius`` (fractions of its short side), 6 at the centre, 0 on the outline."""
    import torch

    rng = np.random.default_rng(seed)
    in_h, in_w = input_size
    short = min(in_h, in_w)
    ys = (torch.arange(grid[0], dtype=torch.float32)[:, None] + 0.5) * 8
    xs = (torch.arange(grid[1], dtype=torch.float32)[None] + 0.5) * 8
    logits = []
    for _ in range(count):
        cy, cx = rng.uniform(0, in_h), rng.uniform(0, in_w)
        r = short * math.exp(rng.uniform(math.log(radius[0]), math.log(radius[1])))
        aspect = math.exp(rng.uniform(-0.7, 0.7))
        ry, rx = max(r * aspect, 6.0), max(r / aspect, 6.0)
        dist = (((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2).sqrt()
        logits.append(6.0 * (1 - dist))
    return torch.stack(logits)


def measure(megapixels: float, count: int, radius: tuple[float, float], work: Path, threads: int = 0) -> dict:
    """One photo through ``predict_files`` in this process: seconds, peak RSS, instances written."""
    import torch

    from csrseg.inference.records import RecordWriter
    from csrseg.inference.runner import predict_files

    torch.set_num_threads(threads or max(1, torch.get_num_threads()))
    model, cfg = controlled_model(count, radius, seed=0)
    names = [str(i) for i in range(cfg.model.num_classes)]
    from csrseg.inference.predictor import Predictor

    predictor = Predictor.for_model(model, cfg, names, list(range(1, len(names) + 1)), "cpu", score_thr=0.0)
    predict_time = []
    inner = predictor.predict_batch

    def timed(images):
        tic = time.perf_counter()
        result = inner(images)
        predict_time.append(time.perf_counter() - tic)
        return result

    predictor.predict_batch = timed

    def run(path: Path, out: Path) -> float:
        out.mkdir(parents=True, exist_ok=True)
        model.orig_size = photo_size(megapixels) if path.name == "photo.jpg" else (480, 640)
        writer = RecordWriter(out / "predictions.json")
        tic = time.perf_counter()
        predict_files(predictor, [path], out, writer)
        writer.close()
        return time.perf_counter() - tic

    run(write_photo(work / "warmup.jpg", (480, 640)), work / "warmup")  # first-call costs: not the photo's
    reset_peak()
    baseline = vm_mb("VmRSS")
    seconds = run(work / "photo.jpg", work / "out")
    peak = vm_mb("VmHWM")
    rows = json.loads((work / "out" / "predictions.json").read_text())
    return dict(seconds=seconds, predict=predict_time[-1], peak_mb=peak, baseline_mb=baseline, instances=len(rows))


def run_one(code: Path, megapixels: float, count: int, radius: tuple[float, float], work: Path, threads: int) -> dict:
    """:func:`measure` in a fresh process on the code in ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    args = [sys.executable, str(HERE), "--one", str(megapixels), str(count), "--radius", *map(str, radius),
            "--work", str(work), "--threads", str(threads)]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode:
        return dict(error=(done.stderr.strip().splitlines() or ["failed"])[-1][:120])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1, 6, 12, 24, 48])
    parser.add_argument("--instances", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--radius", type=float, nargs=2, default=[0.03, 0.2],
                        help="instance radii, log-uniform between these fractions of the short side")
    parser.add_argument("--old-code", type=Path, help="a checkout of other code to measure as well")
    parser.add_argument("--old-max-mp", type=float, default=24, help="largest photo measured on --old-code")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (default: PyTorch's choice, one a core)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--one", nargs=2, metavar=("MP", "INSTANCES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not STATUS.is_file():
        raise SystemExit("needs Linux (/proc/self/status)")
    radius = (args.radius[0], args.radius[1])
    if args.one:  # a child: the photo is in --work
        print(json.dumps(measure(float(args.one[0]), int(args.one[1]), radius, args.work, args.threads)))
        return
    codes = {"new": CODE} | ({"old": args.old_code.resolve()} if args.old_code else {})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for mp in args.megapixels:
            folder = work / f"{mp:g}mp"
            folder.mkdir(parents=True, exist_ok=True)
            write_photo(folder / "photo.jpg", photo_size(mp))
            for count in args.instances:
                for name, code in codes.items():
                    if name == "old" and mp > args.old_max_mp:
                        continue
                    result = run_one(code, mp, count, radius, folder, args.threads)
                    rows.append((mp, count, name, result))
                    print(f"{mp:g} MP, {count} instances, {name}: {result}", file=sys.stderr, flush=True)
    import torch

    from csrseg.runtime.cpu import cpu_model

    threads = args.threads or torch.get_num_threads()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, {threads} PyTorch threads; torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}; radii {radius[0]:g}-{radius[1]:g} of the short side")
    print("| photo | instances | code | total (s) | predict (s) | rest (s) | peak RSS (MB) | baseline RSS (MB) | written |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mp, count, name, r in rows:
        size = "x".join(map(str, photo_size(mp)[::-1]))
        if "error" in r:
            print(f"| {mp:g} MP ({size}) | {count} | {name} | failed: {r['error']} | | | | | |")
            continue
        print(f"| {mp:g} MP ({size}) | {count} | {name} | {r['seconds']:.2f} | {r['predict']:.2f} | "
              f"{r['seconds'] - r['predict']:.2f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | {r['instances']} |")


if __name__ == "__main__":
    main()
