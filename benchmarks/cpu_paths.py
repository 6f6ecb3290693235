"""The eager and torch.compile paths of ``paper`` in fp32 and bf16, timed taking turns in one process.

``csrseg benchmark`` times many models in one process, and a row's time there depends on what ran
before it (oneDNN's primitive cache, the allocator). The decisions of issue 32 (is bf16 faster, does
``--compile`` pay) are made on this narrower run instead: four paths of one network, each as
``predict`` runs it (BatchNorm folded, channels-last, :func:`~csrseg.research.benchmark.ours_step`),
warmed up (the compiles) and then timed in rounds, medians printed as a table.

    python benchmarks/cpu_paths.py --size 1333x800 --rounds 7
    python benchmarks/cpu_paths.py --size 1333x800 --network-only   # without post-processing
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1333x800", help="WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--network-only", action="store_true", help="time the network alone, not post-processing")
    parser.add_argument("--no-compile", action="store_true", help="the eager paths only")
    args = parser.parse_args(argv)

    from csrseg.config import load_config
    from csrseg.data.transforms import collate, normalize
    from csrseg.runtime.cpu import cpu_description, native_bf16
    from csrseg.research.benchmark import ours_step, parse_sizes, synthetic_image

    (height, width), = parse_sizes([args.size])
    image = synthetic_image(height, width)
    cpu, cfg = torch.device("cpu"), load_config("paper")
    paths = [(f"{'torch.compile' if compiled else 'eager'} {precision}", precision, compiled)
             for compiled in ((False,) if args.no_compile else (False, True))
             for precision in (("fp32", "bf16") if native_bf16() else ("fp32",))]
    steps = {}
    for name, precision, compiled in paths:
        step, _ = ours_step(cfg, image, cpu, precision=precision, predict_path=True, compiled=compiled)
        if args.network_only:
            predictor = step.predictor
            batch, _ = collate([dict(image=normalize(image, cfg.input), masks=torch.zeros(0, height, width))])
            batch = batch.contiguous(memory_format=torch.channels_last)

            def step(predictor=predictor, batch=batch, precision=predictor.precision):
                with torch.no_grad(), precision.autocast(cpu):
                    return predictor.network(batch)
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        step()
        steps[name] = (step, first)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, (step, _) in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    what = "network alone" if args.network_only else "network and post-processing"
    print(f"{cpu_description()}; paper at {width}x{height} as predict runs it, {what}, medians of "
          f"{args.rounds} rounds taking turns\n")
    print("| path | first call (s) | s per image | images/s |")
    print("|---|---|---|---|")
    for name, (_, first) in steps.items():
        median = statistics.median(times[name])
        print(f"| {name} | {first:.1f} | {median:.3f} | {1 / median:.2f} |")


if __name__ == "__main__":
    main()
