"""Speed benchmark: csrseg against torchvision's Mask R-CNN, one process, medians.

    python benchmarks/speed.py                      # CPU, 1333x800 and 640x640
    python benchmarks/speed.py --device cuda        # GPU (bf16 autocast as the fast path; fp16 where the GPU has no bf16)

Prints a markdown table and writes it to benchmarks/results/speed_<device>.md; copy the
figures into benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from csrseg.research.benchmark import run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["1333x800", "640x640"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x"))[::-1] for s in args.sizes]
    report = run_benchmark(sizes, runs=args.runs, warmup=args.warmup, device=args.device)
    print(report)
    out = Path(__file__).parent / "results" / f"speed_{args.device.replace(':', '')}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
