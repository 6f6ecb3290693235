"""Tables II and III under K-Net's head at demo scale, and Table II's knet / paper rows on the
IoT-kits photographs: every run trained side by side on one GPU, inside a fixed time.

    python benchmarks/gpu_ablation.py --minutes 8                  # size the epochs to 8 minutes
    python benchmarks/gpu_ablation.py --epochs 18 --seeds 3        # the demo's schedule, however long
    python benchmarks/gpu_ablation.py --minutes 8 --no-photos      # synthetic tables only

1. Writes the demo's synthetic data (1000 images, seed 0) and the photographs' 80/20 split by photo
   (``benchmarks/real_data.py``) under ``--root``, unless they are there.
2. Plans every run of the three sweeps (:func:`csrseg.research.ablate.plan_sweep`); Table III's CSR 128 is
   Table II's CSR + D2S and is trained once.
3. Without ``--epochs``: trains all runs at once for 12 iterations, measures the slowest run's pace,
   and picks the largest multiple of 3 epochs (the demo's evaluation interval) that fits in
   ``--minutes``. Where that is under 12 epochs, Table III is left out and the sizing redone.
4. Trains every run at once (:func:`csrseg.research.ablate.train_runs`, one child process each, logs in each
   run folder's ``train.log``). It first tries to start the CUDA MPS daemon, so that the processes
   share the GPU at the same time instead of taking turns (without MPS, 30 runs on an H200 made
   25 iterations/s in all against 12.5 for one run alone: benchmarks/RESULTS.md).
5. Prints the ``csrseg ablate`` commands that write the tables, plots and the side-by-side speed.
   They may run on another machine (a CPU one) that holds the same data at the same paths: copy
   ``--root`` over (``*.pt`` can stay behind).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import DEFAULT_DATA, split_by_photo  # noqa: E402

from csrseg.research.ablate import PlannedRun, plan_sweep, train_runs  # noqa: E402
from csrseg.research.ablate import Sweep as TableSweep  # noqa: E402  (this file's Sweep is a table with its data)
from csrseg.data.synth import SynthSpec, make_synthetic_dataset  # noqa: E402
from csrseg.errors import CsrsegError  # noqa: E402

KNET = ["model.head.type=knet"]
EVAL_EVERY = 3  # the demo's evaluation interval, in epochs
EVAL_SECONDS = 12  # one evaluation (200 images and COCOeval) with every process busy: a guess, on the safe side
PROBE_ITERS = 12


@dataclasses.dataclass
class Sweep:
    data: Path
    table: int
    out: Path
    overrides: list[str]
    rows: tuple[str, ...] = ()

    def command(self, seeds: int, epochs: int) -> str:
        rows = f" --rows {' '.join(self.rows)}" if self.rows else ""
        return (f"csrseg ablate --table {self.table} --config demo --data {self.data} --seeds {seeds} "
                f"--epochs {epochs} --set {' '.join(self.overrides)}{rows} --out {self.out}")


def sweeps(root: Path, photos: bool, table3: bool) -> list[Sweep]:
    out = [Sweep(root / "synth1000", 2, root / "knet" / "table2", KNET)]
    if table3:
        out.append(Sweep(root / "synth1000", 3, root / "knet" / "table3", KNET))
    if photos:
        out.append(Sweep(root / "iotkits_split" / "data.yaml", 2, root / "iotkits" / "table2",
                         KNET + ["model.num_classes=32"], ("fpn_baseline", "csr_d2s")))
    return out


def plan(all_sweeps: list[Sweep], seeds: int, epochs: int) -> list[PlannedRun]:
    """The runs still to train, each once (the same data and config in two tables: trained once)."""
    runs: list[PlannedRun] = []
    for sweep in all_sweeps:
        planned = TableSweep(sweep.table, base="demo", seeds=seeds, epochs=epochs, overrides=tuple(sweep.overrides),
                             rows=tuple(sweep.rows))
        _, pending = plan_sweep(sweep.data, planned, sweep.out)
        runs += [p for p in pending if all(p.run != q.run for q in runs)]
    return runs


def _probe_one(planned: PlannedRun, run_dir: str) -> None:
    import torch

    from csrseg.api import train

    torch.set_num_threads(1)
    cfg = dataclasses.replace(planned.cfg, train=dataclasses.replace(planned.cfg.train, max_iters=PROBE_ITERS))
    train(planned.run["data"], config=cfg, out=run_dir, device="cuda", progress=False, val_split=None, log_interval=4,
          exist_ok=True)


def probe(runs: list[PlannedRun], root: Path) -> float:
    """Seconds per iteration of the slowest run, with all of them training at once."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_probe_one, args=(p, str(root / "probe" / str(i)))) for i, p in enumerate(runs)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    paces = []
    for i in range(len(runs)):
        rows = [json.loads(line) for line in (root / "probe" / str(i) / "log.jsonl").read_text().splitlines()]
        times = {r["iter"]: r["time"] for r in rows if r.get("type") == "train"}
        paces.append((times[PROBE_ITERS] - times[4]) / (PROBE_ITERS - 4))
    shutil.rmtree(root / "probe")
    return max(paces)


def fit_epochs(seconds: float, pace: float) -> int:
    """Epochs (a multiple of EVAL_EVERY) of 100 iterations at ``pace`` s each, plus evaluations, in ``seconds``."""
    epochs = int(seconds / (100 * pace + EVAL_SECONDS / EVAL_EVERY))
    return epochs - epochs % EVAL_EVERY


def start_mps() -> bool:
    """Start the CUDA MPS daemon (root, before any CUDA context); False where it is not available."""
    try:
        return subprocess.run(["nvidia-cuda-mps-control", "-d"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def stop_mps() -> None:
    subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", capture_output=True, timeout=20, check=False)


def prepare_data(root: Path, photos: Path | None) -> None:
    if not (root / "synth1000" / "annotations" / "instances_val.json").is_file():
        make_synthetic_dataset(root / "synth1000", 1000, 0, 0.2, SynthSpec(image_size=256))
    if photos is not None and not (root / "iotkits_split" / "data.yaml").is_file():
        split_by_photo(photos / "_annotations.coco.json", root / "iotkits_split")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/csrseg_ablation"),
                        help="data and sweeps (an absolute path the assembling machine can have too)")
    parser.add_argument("--minutes", type=float, default=8.0, help="time for training, probe included")
    parser.add_argument("--epochs", type=int, help="a fixed schedule instead of one sized to --minutes")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--photos", type=Path, default=DEFAULT_DATA, help="the IoT-kits Roboflow folder")
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--no-mps", action="store_true", help="do not try to start the CUDA MPS daemon")
    args = parser.parse_args(argv)
    deadline = time.time() + args.minutes * 60
    root = args.root.resolve()
    photos = None if args.no_photos else args.photos.resolve()
    if photos is not None and not (photos / "_annotations.coco.json").is_file():
        sys.exit(f"gpu_ablation: error: {photos / '_annotations.coco.json'} not found (--photos, or --no-photos)")
    prepare_data(root, photos)
    mps = not args.no_mps and start_mps()
    print(f"CUDA MPS: {'on' if mps else 'off'}", flush=True)
    try:
        all_sweeps = sweeps(root, photos is not None, table3=True)
        epochs = args.epochs
        if epochs is None:
            runs = plan(all_sweeps, args.seeds, 18)
            if not runs:
                sys.exit("gpu_ablation: every 18-epoch run is trained already; give --epochs for another schedule")
            pace = probe(runs, root)
            epochs = fit_epochs(deadline - time.time() - 30, pace)  # 30 s: the children's start-up
            print(f"{len(runs)} runs at once: {pace:.3f} s/iteration (slowest); {epochs} epochs fit", flush=True)
            if epochs < 12:
                all_sweeps = sweeps(root, photos is not None, table3=False)
                fewer = len(plan(all_sweeps, args.seeds, 18))
                epochs = fit_epochs(deadline - time.time() - 30, pace * fewer / len(runs))
                print(f"Table III left out: {fewer} runs, {epochs} epochs", flush=True)
            if epochs < EVAL_EVERY:
                sys.exit("gpu_ablation: error: not even 3 epochs fit in --minutes; give it more time")
        runs = plan(all_sweeps, args.seeds, epochs)
        print(f"training {len(runs)} runs of {epochs} epochs at once" if runs else "every run is trained already",
              flush=True)
        tic = time.time()
        try:
            if runs:
                train_runs(runs, "cuda", jobs=len(runs))
        except CsrsegError as err:
            sys.exit(f"gpu_ablation: error: {err}")
        print(f"trained in {(time.time() - tic) / 60:.1f} min. The tables (here or on a machine with {root}):", flush=True)
    finally:
        if mps:
            stop_mps()
    for sweep in all_sweeps:
        print("  " + sweep.command(args.seeds, epochs))


if __name__ == "__main__":
    main()
