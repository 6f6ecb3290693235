"""The paper's network under K-Net's head at the CPU recipe, one change per row, with the diagnostics.

Issue 31's A/B: each row is the ``cpu`` recipe of ``csrseg ablate`` (ResNet-18 from scratch, 64 wide,
128 px, 1200 iterations on the demo's 1000 synthetic images) on the CSR + D2S neck with the head
settings of :data:`VARIANTS`, against ``baseline`` (the head as K-Net defines it, no extra context or
position) and ``knet_neck`` (K-Net's own neck: the reference). Runs go side by side (``--jobs``, one
thread each), resume, and reuse a finished run of the same config in a sibling folder of ``--out``.
The report is ``csrseg ablate``'s: AP per seed, paired differences against the first row, and the
diagnostics of every row (class-agnostic AP, hits, the class probe, empty pools, duplicate masks).

    python benchmarks/cpu_knet_ab.py --variants baseline knet_neck branch2 sine --out runs/ab
    python benchmarks/cpu_knet_ab.py --variants baseline context knet_neck --seeds 3 --out runs/ab3

Every row spells out all of :data:`HEAD_KEYS`, so that a row means the same whatever the presets'
defaults are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from csrseg.config.presets import TABLE2_ROWS

PAPER_NECK = next(row.neck for row in TABLE2_ROWS if row.preset == "paper")
KNET_NECK = next(row.neck for row in TABLE2_ROWS if row.preset == "knet")
HEAD_KEYS = dict(branch_convs=0, position="none")  # K-Net's head as K-Net defines it


def _head(**changes: object) -> dict:
    return {**HEAD_KEYS, **changes}


VARIANTS: dict[str, dict] = {
    "baseline": dict(neck=PAPER_NECK, head=_head()),  # the paper's network with K-Net's head as it is
    "knet_neck": dict(neck=KNET_NECK, head=_head()),  # K-Net itself (Table II row 1): the reference
    "branch1": dict(neck=PAPER_NECK, head=_head(branch_convs=1)),
    "branch2": dict(neck=PAPER_NECK, head=_head(branch_convs=2)),  # 3x3 context before the 1x1 reads
    "sine": dict(neck=PAPER_NECK, head=_head(position="sine")),  # position, as K-Net's neck adds to P5
    "coords": dict(neck=PAPER_NECK, head=_head(position="coords")),
    "context": dict(neck=PAPER_NECK, head=_head(branch_convs=2, position="sine")),  # both
    "branch4": dict(neck=PAPER_NECK, head=_head(branch_convs=4)),  # the paper's "four 3x3 convolution layers"
    # the same head on K-Net's neck: does branch4 repair the fusion path, or add capacity to any neck?
    "knet_branch4": dict(neck=KNET_NECK, head=_head(branch_convs=4)),
    # K-Net's neck on the paper's three levels: what K-Net's neck gains from C2
    "knet_c3": dict(neck=dict(type="fpn_semantic_c3"), head=_head()),
    # the paper's network with a 3x3 conv after the neck's last sum, as the nearest-upsampling rows have
    "d2s_outconv": dict(neck={**PAPER_NECK, "d2s_output_conv": True}, head=_head()),
    # D2S as ESPCN's sub-pixel layer (a 1x1 C -> 4C before the shuffle, so that C channels pass it, not C/4):
    # is D2S's channel bottleneck what K-Net's head loses on? (``expand2``: the paper's printed B_i / r)
    "d2s_expand4": dict(neck={**PAPER_NECK, "d2s_expand": 4}, head=_head()),
    # the same, started as nearest upsampling + mixing (ICNR): is it the shuffle's checkerboard at the start?
    "d2s_icnr": dict(neck={**PAPER_NECK, "d2s_expand": 4, "d2s_icnr": True}, head=_head()),
    "d2s_expand2": dict(neck={**PAPER_NECK, "d2s_expand": 2}, head=_head()),
    # D2S without the GroupNorm + ReLU that DESIGN.md adds (the paper names a depthwise-separable conv only):
    # linear, as the nearest path it replaces; the fused map is then a sum of linear maps of C3-C5 again
    "d2s_linear": dict(neck={**PAPER_NECK, "d2s_norm": False}, head=_head()),
    # D2S on one of the two top-down steps, nearest on the other: which D2S does K-Net's head lose on?
    # ``d2s_top`` is the paper's last words on the neck read literally (C5 and C4 fused by D2S, then summed
    # with C3; nearest + FPN's 3x3 output conv to stride 8); ``d2s_bottom`` keeps D2S for stride 16 -> 8 only
    "d2s_top": dict(neck={**PAPER_NECK, "d2s_steps": "top"}, head=_head()),
    # ``d2s_top`` without FPN's 3x3 output conv: the neck ends at the sum, as the paper words it (31.99 M
    # parameters at full width against d2s_top's 32.58 M and the paper's 32.13 M)
    "d2s_top_sum": dict(neck={**PAPER_NECK, "d2s_steps": "top", "output_conv": False}, head=_head()),
    "d2s_bottom": dict(neck={**PAPER_NECK, "d2s_steps": "bottom"}, head=_head()),
    "control": dict(neck=next(r.neck for r in TABLE2_ROWS if r.preset == "fpn"), head=_head()),  # CSR, D2S off
    "csr_only": dict(neck=next(r.neck for r in TABLE2_ROWS if r.preset == "csr"), head=_head()),
    "d2s_only": dict(neck=next(r.neck for r in TABLE2_ROWS if r.preset == "d2s"), head=_head()),
    "bce_mask": dict(neck=PAPER_NECK, head=_head(loss=dict(mask_type="bce"))),  # calibrated masks pool more
    "linear_cost": dict(neck=PAPER_NECK, head=_head(mask_cost="linear")),  # K-Net's matching cost
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["baseline", "knet_neck"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="the demo's 1000 images (default OUT/data, made if missing)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every row")
    args = parser.parse_args(argv)

    from csrseg.research.ablate import Sweep, run_ablation

    sweep = Sweep(2, base="paper", seeds=args.seeds, overrides=tuple(args.set), recipe="cpu",
                  variants={name: VARIANTS[name] for name in args.variants})
    text = run_ablation(args.data, sweep, args.out, jobs=args.jobs)
    print(text)


if __name__ == "__main__":
    main()
