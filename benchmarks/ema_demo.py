"""EMA's effect on the short demo's mask AP: the demo without and with ``train.ema``, seed by seed, two
runs side by side with one thread each (they share the machine alike), the AP of each run's final
weights (``last.pt``: with EMA, the average) on the synthetic val split.

    python benchmarks/ema_demo.py --seeds 0 1 2 --ema "train.ema=0.998 train.ema_warmup=100" --out runs/ema_ab

Prints a table (and writes it to ``OUT/ema_demo.md``); the runs stay in ``OUT``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from csrseg.engine.checkpoint import load_checkpoint
from csrseg.runtime.cpu import cpu_description


def start(out: Path, seed: int, extra: list[str], minutes: float) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "csrseg.cli", "demo", "--out", str(out), "--device", "cpu", "--minutes", str(minutes),
           "--exist-ok", "--set", f"train.seed={seed}", *extra]
    log = open(out.with_suffix(".log"), "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def final_ap(run: Path) -> tuple[float, int]:
    last = load_checkpoint(run / "train" / "last.pt")
    return float(last["metrics"]["AP"]), int(last["iteration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ema", default="train.ema=0.998 train.ema_warmup=100", help="the EMA arm's --set values")
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--out", type=Path, default=Path("runs/ema_ab"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        runs = {"off": args.out / f"off_s{seed}", "ema": args.out / f"ema_s{seed}"}
        procs = [start(runs["off"], seed, [], args.minutes), start(runs["ema"], seed, args.ema.split(), args.minutes)]
        if any(p.wait() for p in procs):
            raise SystemExit(f"a run failed: see {args.out}/*.log")
        (off, off_iters), (ema, ema_iters) = final_ap(runs["off"]), final_ap(runs["ema"])
        rows.append((seed, off, ema, off_iters, ema_iters))
        print(f"seed {seed}: AP off {off:.1f} ({off_iters} it), ema {ema:.1f} ({ema_iters} it)", flush=True)
    diffs = [ema - off for _, off, ema, _, _ in rows]
    lines = [f"EMA arm: `{args.ema}`; {args.minutes:g} min of training each, two runs side by side, 1 thread each; "
             f"{cpu_description()}; torch {torch.__version__}", "",
             "| seed | AP, no EMA | AP, EMA | EMA - none | iterations (none / EMA) |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {o:.1f} | {e:.1f} | {e - o:+.1f} | {oi} / {ei} |" for s, o, e, oi, ei in rows]
    lines.append(f"| mean | {sum(r[1] for r in rows) / len(rows):.1f} | {sum(r[2] for r in rows) / len(rows):.1f} | "
                 f"{sum(diffs) / len(diffs):+.1f} | |")
    table = "\n".join(lines)
    print(table)
    (args.out / "ema_demo.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
