"""Where eager bf16 autocast gains and loses against fp32 on this CPU, op by op (issue 32).

Profiles one image of ``paper`` (random weights, full load, as the Predictor runs it: channels-last, BatchNorm folded)
through :meth:`~csrseg.inference.predictor.Predictor.run_batch` in fp32 and in bf16 autocast, and
prints a table of the ops by self CPU time in each, with the change. Ops that autocast runs in bf16
on a CPU with native bf16 (AVX512-BF16, AMX) should get faster; those it leaves in fp32 cost the
same plus the conversions (``aten::to`` / ``aten::copy_``) at their borders.

    python benchmarks/bf16_ops.py --size 1333x800 --runs 3
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch


def op_times(step, runs: int) -> dict[str, float]:
    """Self CPU milliseconds per run of each op that ``step()`` calls, over ``runs`` profiled runs."""
    from torch.profiler import ProfilerActivity, profile

    step()  # oneDNN picks and caches its kernels on the first call of a shape and dtype
    totals: dict[str, float] = defaultdict(float)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            step()
    for event in prof.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e3 / runs
    return dict(totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1333x800", help="WIDTHxHEIGHT")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args(argv)

    from csrseg.config import load_config
    from csrseg.runtime.cpu import cpu_description
    from csrseg.research.benchmark import ours_step, parse_sizes, synthetic_image

    (height, width), = parse_sizes([args.size])
    image = synthetic_image(height, width)
    cpu = torch.device("cpu")
    times = {}
    for precision in ("fp32", "bf16"):
        step, _ = ours_step(load_config("paper"), image, cpu, precision=precision, predict_path=True)
        times[precision] = op_times(step, args.runs)
    fp32, bf16 = times["fp32"], times["bf16"]
    print(f"{cpu_description()}; paper at {width}x{height}, as predict runs it (channels-last, BatchNorm folded), self CPU ms per image "
          f"(median-free: mean of {args.runs} profiled runs)\n")
    print(f"total: fp32 {sum(fp32.values()):.0f} ms, bf16 autocast {sum(bf16.values()):.0f} ms\n")
    print("| op | fp32 ms | bf16 ms | bf16 - fp32 ms |")
    print("|---|---|---|---|")
    ops = sorted(set(fp32) | set(bf16), key=lambda op: -max(fp32.get(op, 0.0), bf16.get(op, 0.0)))
    for op in ops[: args.top]:
        a, b = fp32.get(op, 0.0), bf16.get(op, 0.0)
        print(f"| {op} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")


if __name__ == "__main__":
    main()
