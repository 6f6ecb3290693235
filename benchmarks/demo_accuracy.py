"""Accuracy benchmark of the built-in demo: the same as `csrseg demo`, timed, AP printed.

    python benchmarks/demo_accuracy.py [--out runs/demo_bench]

Target (issue 3): mask AP >= 50 on the synthetic val split within 15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import logging
import time

from csrseg.research.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo_bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tic = time.perf_counter()
    print(run_demo(args.out))
    minutes = (time.perf_counter() - tic) / 60
    print(f"\n| wall time | target |\n|---|---|\n| {minutes:.1f} min | <= 15 min, AP >= 50 |")


if __name__ == "__main__":
    main()
