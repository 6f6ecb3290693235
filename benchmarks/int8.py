"""CPU inference at the limit (issue 14): Mask R-CNN, `paper` eager fp32, ONNX fp32 and ONNX INT8, side by side.

    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/int8.py --sizes 1333x800 640x640 --rounds 5

One process, one image per size (random pixels; random weights: speed does not depend on them),
batch 1, post-processing included, every model at full load (as `csrseg benchmark`: score
thresholds 0, so K-Net's top 100 masks and Mask R-CNN's 100 detections are all drawn). Every entry
sees the same pixels: Mask R-CNN's and the ONNX graph's resize are set to the image size. The
entries are timed in interleaved rounds (one run of each per round, after ``--warmup-rounds``
untimed ones, default 1), so a slow spell of the machine hits all of them; the table gives the
median. ONNX Runtime's CPU arena reaches its full size only after about three runs at 1333x800
(until then fresh pages fault in: runs 1-2 take 4.0-5.2 s, later ones 3.5-3.7 s on one EPYC core),
so ``--warmup-rounds 3`` gives the steady state that a stream of images sees, 1 the second image. Peak memory: the rise
of the process's peak RSS during one run on a fresh session (ONNX) or the built model (eager),
measured after the timing; ONNX Runtime with its CPU arena (its default and csrseg's) and without.
Prints a markdown table; `--out FILE` also writes it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from csrseg.research.benchmark import MASK_RCNN, PeakMemory, full_load, interleaved_times, maskrcnn_step, onnx_file, ours_step, synthetic_image
from csrseg.config import load_config
from csrseg.runtime.cpu import cpu_description


def measure(size: tuple[int, int], rounds: int, tmp: Path, warmup_rounds: int = 1) -> list[dict]:
    """Rows (name, seconds, peak_mb) for one ``size`` (H, W)."""
    from csrseg.inference.onnx_predictor import onnx_session

    cpu = torch.device("cpu")
    image = synthetic_image(*size)
    feed = {"image": image.round().clamp(0, 255).to(torch.uint8)[None].numpy()}
    cfg = full_load(load_config("paper"))
    eager, model = ours_step(cfg, image, cpu, channels_last=True)  # the Predictor's default layout
    fp32 = onnx_file(cfg, size, tmp / "paper.onnx", model=model.to(memory_format=torch.contiguous_format))
    int8 = onnx_file(cfg, size, tmp / "paper_int8.onnx", int8=True, model=model)
    model.to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    sessions = {path: onnx_session(path, threads) for path in (fp32, int8)}
    entries = {
        MASK_RCNN: maskrcnn_step(image, cpu)[0],
        "paper, eager fp32 (channels-last)": eager,
        "paper, ONNX Runtime fp32": lambda: sessions[fp32].run(None, feed),
        "paper, ONNX Runtime INT8": lambda: sessions[int8].run(None, feed),
    }
    times = interleaved_times(entries, rounds, cpu, warmup_rounds)
    rows = [dict(name=name, seconds=statistics.median(t), runs=t) for name, t in times.items()]
    sessions.clear()  # the ONNX sessions go before peak memory is measured
    peaks = {}
    for name, step in list(entries.items())[:2]:
        with PeakMemory(cpu) as mem:
            step()
        peaks[name] = mem.mb
    for name, path, arena in (("paper, ONNX Runtime fp32", fp32, True), ("paper, ONNX Runtime INT8", int8, True),
                              ("ONNX fp32 without the arena", fp32, False), ("ONNX INT8 without the arena", int8, False)):
        session = onnx_session(path, threads, arena=arena)
        with PeakMemory(cpu) as mem:
            session.run(None, feed)
        peaks[name] = mem.mb
        del session
    for row in rows:
        row["peak_mb"] = peaks[row["name"]]
    rows.append(dict(name="(ONNX peak without ORT's CPU arena: fp32 / INT8)", seconds=float("nan"), runs=[],
                     peak_mb=f"{peaks['ONNX fp32 without the arena']:.0f} / {peaks['ONNX INT8 without the arena']:.0f}"))
    return rows


def table(results: dict[tuple[int, int], list[dict]], rounds: int, warmup_rounds: int = 1) -> str:
    lines = [f"CPU: {cpu_description()}; torch threads: {torch.get_num_threads()}; median of {rounds} interleaved rounds "
             f"after {warmup_rounds} warm-up round(s).",
             "", "| model | input (W×H) | s / image | images/s | × Mask R-CNN | peak mem (MB) |", "|---|---|---|---|---|---|"]
    for (h, w), rows in results.items():
        ref = rows[0]["seconds"]
        for row in rows:
            if row["seconds"] != row["seconds"]:  # the memory-only line
                lines.append(f"| {row['name']} | {w}×{h} | | | | {row['peak_mb']} |")
                continue
            lines.append(f"| {row['name']} | {w}×{h} | {row['seconds']:.2f} | {1 / row['seconds']:.3f} | "
                         f"{ref / row['seconds']:.2f} | {row['peak_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1333x800", "640x640"], help="WIDTHxHEIGHT ...")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup-rounds", type=int, default=1, help="untimed rounds first (3: ONNX Runtime's steady state)")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.sizes:
            width, height = (int(v) for v in text.split("x"))
            results[(height, width)] = measure((height, width), args.rounds, Path(tmp), args.warmup_rounds)
    report = table(results, args.rounds, args.warmup_rounds)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
