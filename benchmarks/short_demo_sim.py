"""Short-demo recipes compared at equal *simulated* time on a 2-core AVX2 AMD EPYC.

    python benchmarks/short_demo_sim.py NAME MINUTES SHARE LR {mn,r18} [key=value ...]
    python benchmarks/short_demo_sim.py S5_mn_prog_lr3e-3 9 0.75 3e-3 mn     # the shipped short demo

Wall time on a shared machine is noisy and a slower or faster CPU changes how many steps fit in a
budget, so this trains the demo data (``DATA``, ``csrseg synth DATA --images 1000 --seed 0``) with the
short demo's hooks (:class:`csrseg.research.demo.TimeBudget`, :class:`~csrseg.research.demo.ProgressiveSize`)
on a clock that advances, after each step, by that step's cost on the EPYC: 2.5 s for ResNet-18 at
256 px and batch 8 (the README's fresh-clone run, 77 min / 1800 iterations) times the ratio of the
step at hand to it, measured side by side on an Intel Xeon under the AVX2 variables (``RATIOS``).
``SHARE``: the share of the budget at 160 px (0: 256 px throughout); ``mn``: MobileNetV3-Small with
a 64-wide neck and head (:data:`csrseg.research.demo.SHORT_NETWORK`), ``r18``: the demo preset's
ResNet-18. Appends one JSON row (iterations, val mask AP) to ``short_demo_sim.jsonl`` in ``OUT``.
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

from csrseg.api import train
from csrseg.config import load_config
from csrseg.engine.trainer import Hook
from csrseg.research import demo

EPYC_256 = 2.5  # s per demo step at 256 px, batch 8, ResNet-18 on the EPYC
RATIOS = {  # (backbone, batch, input side) -> step time against ("r18", 8, 256); RESULTS.md "The short demo"
    ("r18", 8, 256): 1.0, ("r18", 8, 160): 0.606, ("r18", 8, 192): 0.732,
    ("mn", 8, 256): 0.266, ("mn", 8, 160): 0.197, ("r18", 4, 256): 0.559, ("r18", 4, 160): 0.367,
}
DATA = Path(os.environ.get("DATA", "runs/demo/data"))
OUT = Path(os.environ.get("OUT", "runs/short_demo_sim"))


class Clock:
    """The simulated clock, in seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimulatedStep(Hook):
    """Advances the clock by the EPYC's cost of the step just taken, at the input size it took."""

    def __init__(self, clock: Clock, arch: str, batch: int) -> None:
        self.clock, self.arch, self.batch = clock, arch, batch

    def after_step(self, trainer) -> None:
        side = trainer.dataset.transform.cfg.short_side
        self.clock.now += EPYC_256 * RATIOS[(self.arch, self.batch, side)]


def main(argv: list[str]) -> dict:
    name, minutes, share, lr, arch, *extra = argv
    minutes, share = float(minutes), float(share)
    cfg = load_config("demo", ["train.eval_interval=1000", f"train.lr={lr}", "train.warmup_iters=50",
                               "train.lr_gamma=0.01", "train.workers=0", "train.precision=fp32",
                               *(demo.SHORT_NETWORK if arch == "mn" else []), *extra])
    clock = Clock()
    budget = demo.TimeBudget(minutes * 60, clock=clock)
    hooks = [SimulatedStep(clock, arch, cfg.train.batch_size), budget]
    if share > 0:
        hooks.append(demo.ProgressiveSize(budget, demo.SMALL_SIDE, share))
    tic = time.perf_counter()
    result = train(DATA, config=cfg, out=OUT / name, device="cpu", exist_ok=True, hooks=hooks, progress=False)
    row = dict(name=name, sim_minutes=minutes, share=share, lr=float(lr), arch=arch, extra=extra,
               iterations=result.iterations, wall_min=round((time.perf_counter() - tic) / 60, 2),
               **{k: round(v, 2) for k, v in result.metrics.items()})
    with open(OUT / "short_demo_sim.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(sys.argv[1:])
