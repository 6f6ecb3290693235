"""The paper's network at the demo recipe, one change per run, every run side by side on one GPU.

For the question of why K-Net's head on the CSR + D2S neck learns far less than on K-Net's own neck
(benchmarks/RESULTS.md, "The paper's network at the demo recipe"). Each run is the demo recipe
(``--config demo``, 1000 synthetic images of seed 0, 1800 iterations at batch 8, 256 px) with K-Net's
head as the issue measured it (:data:`BASE`), plus one variant's overrides (:data:`VARIANTS`).

    python benchmarks/gpu_knet_ab.py --variants baseline branch2 sine lr3e-4 knet_loss --out OUT
    python benchmarks/gpu_knet_ab.py --variants baseline branch2 --seeds 0 1 2 --out OUT
    python benchmarks/gpu_knet_ab.py --quick --variants baseline branch2 --out /tmp/ab   # the script itself, on a CPU

Every run is a ``csrseg train`` process under ``timeout`` (``--minutes``), so that logs come back
even from a run cut short. At the end, for each run: the mask AP at every evaluation, and from its
last ``val_results.json`` (:func:`csrseg.evaluation.diagnostics.instance_stats`) the class-agnostic AP
(identical masks of an image counted once), the mean best mask IoU per object, and how often
the top-scored prediction hitting an object (IoU > 0.5) has its class: which of the two problems
(masks, or naming the class) a change touches. Writes ``OUT/summary.md`` and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from csrseg.evaluation.diagnostics import instance_stats

# K-Net's head at the demo recipe as the issue measured it: the demo's loss settings (alpha 0.25)
# and mask threshold (0.4), which a head of its own now has to be given
BASE = ["model.head.type=knet", "model.head.loss.mask_focal_alpha=0.25", "model.head.postprocess.mask_thr=0.4"]
KNET_LOSS = ["model.head.loss.cls_weight=2", "model.head.loss.dice_weight=4", "model.head.loss.focal_weight=1",
             "model.head.loss.mask_type=bce"]
VARIANTS = {
    "baseline": [],  # the paper's network as it is
    "knet_neck": ["model.neck.type=fpn_semantic"],  # K-Net itself (Table II row 1): the reference
    "solov2": ["model.head.type=solov2"],  # the demo: the same neck under the SOLOv2 head
    "branch1": ["model.head.branch_convs=1"],
    "branch2": ["model.head.branch_convs=2"],
    "branch4": ["model.head.branch_convs=4"],  # the paper's "four 3x3 convolution layers" on each branch
    "control": ["model.neck.reweight=false", "model.neck.upsample=nearest"],  # Table II's fusion control row
    # D2S on C5 -> stride 16 only, nearest to stride 8 (with FPN's 3x3 output conv, or without: the paper's words)
    "d2s_top": ["model.neck.d2s_steps=top"],
    "d2s_top_sum": ["model.neck.d2s_steps=top", "model.neck.output_conv=false"],
    "sine": ["model.head.position=sine"],
    "coords": ["model.head.position=coords"],
    "branch2_sine": ["model.head.branch_convs=2", "model.head.position=sine"],
    "linear_cost": ["model.head.mask_cost=linear"],
    "knet_loss": KNET_LOSS,
    "lr3e-4": ["train.lr=3e-4"],
    "lr1e-4": ["train.lr=1e-4"],
    "branch2_lr3e-4": ["model.head.branch_convs=2", "train.lr=3e-4"],
}


def summarize(run: Path, gt: dict) -> dict:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()] \
        if (run / "log.jsonl").is_file() else []
    curve = [(r["iter"], round(r["AP"], 1)) for r in rows if r.get("type") == "eval"]
    trains = [r for r in rows if r.get("type") == "train"]
    out = dict(run=run.name, curve=curve, iterations=trains[-1]["iter"] if trains else 0,
               final_ap=curve[-1][1] if curve else None)
    if trains:
        last = trains[-1]
        out.update({k: round(v, 3) for k, v in last.items() if k.startswith("loss")})
    results_path = run / "val_results.json"
    if results_path.is_file() and curve:
        results = json.loads(results_path.read_text())
        if results:  # class-agnostic AP with identical masks of an image counted once
            out.update({k: round(v, 3) for k, v in instance_stats(gt, results).items()})
    return out


def table(summaries: list[dict]) -> str:
    lines = ["| run | AP at each evaluation (iteration: AP) | final AP | class-agnostic AP | best IoU (mean) | "
             "objects hit | class of the top hit right | top score | loss_cls |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        curve = ", ".join(f"{i}: {ap}" for i, ap in s["curve"]) or "-"
        lines.append(f"| {s['run']} | {curve} | {s.get('final_ap', '-')} | {s.get('class_agnostic_ap', '-')} | "
                     f"{s.get('best_iou', '-')} | {s.get('hit_share', '-')} | {s.get('class_right', '-')} | "
                     f"{s.get('top_score', '-')} | {s.get('loss_cls', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["baseline"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--runs", nargs="+", default=[], metavar="VARIANT:SEED",
                        help="runs to add one by one, e.g. branch2_sine:1 branch2_sine:2 (all side by side)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="the demo's 1000 images (default OUT/synth1000, made if missing)")
    parser.add_argument("--minutes", type=float, default=8.5, help="each run's time limit (timeout)")
    parser.add_argument("--workers", type=int, default=3, help="data loader workers per run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--quick", action="store_true", help="20 images, 4 iterations, on the CPU: checks the script")
    args = parser.parse_args(argv)

    from csrseg.data.synth import make_synthetic_dataset

    data = args.data or args.out / ("synth20" if args.quick else "synth1000")
    if not (data / "annotations" / "instances_val.json").is_file():
        make_synthetic_dataset(data, 20 if args.quick else 1000, seed=0, val_fraction=0.2)
    device = "cpu" if args.quick else "cuda"
    quick = ["train.max_iters=4", "train.eval_interval=1", "train.epochs=2", "model.head.num_proposals=10",
             "model.head.ffn_channels=64"] if args.quick else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = []
    runs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    for spec in args.runs:
        variant, _, seed = spec.partition(":")
        if variant not in VARIANTS or not seed.isdigit():
            parser.error(f"--runs {spec}: VARIANT:SEED with VARIANT one of {', '.join(sorted(VARIANTS))}")
        runs.append((variant, int(seed)))
    for variant, seed in dict.fromkeys(runs):
        run = args.out / f"{variant}_seed{seed}"
        overrides = [*BASE, *VARIANTS[variant], f"train.seed={seed}", f"train.workers={args.workers}", *args.set, *quick]
        cmd = ["timeout", str(int(args.minutes * 60)), sys.executable, "-m", "csrseg.cli", "train", "--config", "demo",
               "--data", str(data), "--device", device, "--out", str(run), "--exist-ok", "--log-interval", "20",
               "--set", *overrides]
        run.mkdir(parents=True, exist_ok=True)
        log = open(run / "train.log", "w")  # noqa: SIM115 (closed when the process ends)
        procs.append((run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        (run / "command.txt").write_text(" ".join(cmd) + "\n")
    tic = time.monotonic()
    for run, proc, log in procs:
        proc.wait()
        log.close()
        print(f"{run.name}: exit {proc.returncode} after {(time.monotonic() - tic) / 60:.1f} min", flush=True)
    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    summaries = [summarize(run, gt) for run, _, _ in procs]
    text = table(summaries)
    (args.out / "summary.md").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(summaries, indent=1))
    print(text)


if __name__ == "__main__":
    main()
