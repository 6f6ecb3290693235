"""What a reader needs to trust an ablation table: AP curves, paired differences, speed side by side.

Every row of a sweep is trained with the same seeds, and seed ``k`` of every row sees the same
data order, so two rows are compared *per seed*: the difference ``AP(row, k) - AP(ref, k)`` takes
out what the seed does to both. A difference is called larger than the seed noise when a paired
t-test over the seeds gives p < 0.05 (two-sided); with one seed there is nothing to test against.

A row's AP curve has flattened when its last evaluation interval added less than
``max(FLAT_AP, seed std of the row's final AP)`` points, averaged over seeds.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from csrseg.config import Config

FLAT_AP = 0.5  # AP points: a last interval that adds less than this (or the seed std) is flat
P_NOISE = 0.05


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    """``(iteration, mask AP)`` at every evaluation logged in ``run_dir/log.jsonl``, in order."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    curve = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if row.get("type") == "eval" and "AP" in row:
            curve.append((int(row.get("iter", 0)), float(row["AP"])))
    return curve


def final_ap(run: dict) -> float:
    return float(run["metrics"].get("AP", 0.0))


@dataclass(frozen=True)
class Paired:
    """``row`` minus ``reference``, seed by seed."""

    row: str
    reference: str
    diffs: tuple[float, ...]  # per common seed, in seed order
    p_value: float | None  # paired t-test; None with fewer than 2 seeds or identical differences

    @property
    def mean(self) -> float:
        return statistics.mean(self.diffs)

    @property
    def std(self) -> float:
        return statistics.stdev(self.diffs) if len(self.diffs) > 1 else 0.0

    @property
    def verdict(self) -> str:
        if len(self.diffs) < 2:
            return "one seed: no noise estimate"
        if self.p_value is None:  # every seed moved by exactly the same amount
            return "the same on every seed" if self.mean == 0 else "exceeds the seed noise (identical on every seed)"
        if self.p_value < P_NOISE:
            return f"exceeds the seed noise ({'better' if self.mean > 0 else 'worse'})"
        return "within the seed noise"


def paired(summaries: dict[str, list[dict]], row: str, reference: str) -> Paired:
    """Per-seed AP differences of ``row`` against ``reference`` over the seeds both have."""
    from scipy.stats import ttest_rel

    by_seed = {r["seed"]: final_ap(r) for r in summaries[reference]}
    pairs = sorted((r["seed"], final_ap(r), by_seed[r["seed"]]) for r in summaries[row] if r["seed"] in by_seed)
    diffs = tuple(a - b for _, a, b in pairs)
    p_value = None
    if len(diffs) > 1 and len(set(diffs)) > 1:
        p_value = float(ttest_rel([a for _, a, _ in pairs], [b for _, _, b in pairs]).pvalue)
    return Paired(row, reference, diffs, p_value)


def format_paired(comparisons: Sequence[Paired]) -> str:
    lines = ["| comparison | AP difference per seed | mean ± std | paired t-test p | verdict |", "|---|---|---|---|---|"]
    for c in comparisons:
        per_seed = " / ".join(f"{d:+.1f}" for d in c.diffs)
        p = "—" if c.p_value is None else f"{c.p_value:.3f}"
        lines.append(f"| {c.row} − {c.reference} | {per_seed} | {c.mean:+.1f} ± {c.std:.1f} | {p} | {c.verdict} |")
    return "\n".join(lines)


def last_interval_gain(runs: list[dict]) -> float | None:
    """Mean over seeds of the AP added by the last evaluation interval (None: under two evaluations)."""
    gains = [c[-1][1] - c[-2][1] for c in (r.get("curve", []) for r in runs) if len(c) >= 2]
    return statistics.mean(gains) if gains else None


def flatness(summaries: dict[str, list[dict]]) -> str:
    """One sentence per row: has its AP curve flattened by the end of the budget?"""
    parts = []
    for name, runs in summaries.items():
        gain = last_interval_gain(runs)
        if gain is None:
            parts.append(f"{name}: fewer than two evaluations, cannot tell")
            continue
        aps = [final_ap(r) for r in runs]
        limit = max(FLAT_AP, statistics.stdev(aps) if len(aps) > 1 else 0.0)
        state = "flat" if gain < limit else "still climbing"
        parts.append(f"{name}: {state} (last interval {gain:+.1f} AP, limit {limit:.1f})")
    return "; ".join(parts) + "."


def plot_curves(summaries: dict[str, list[dict]], path: Path, title: str) -> None:
    """AP against iteration: per row the mean over seeds (thick) and each seed (thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, runs) in enumerate(summaries.items()):
        colour = f"C{index}"
        curves = [r.get("curve", []) for r in runs]
        for curve in curves:
            if curve:
                ax.plot(*zip(*curve), color=colour, alpha=0.3, linewidth=0.8)
        points = sorted({it for curve in curves for it, _ in curve})
        means = [statistics.mean(ap for curve in curves for it2, ap in curve if it2 == it) for it in points]
        if points:
            ax.plot(points, means, color=colour, linewidth=2, marker="o", markersize=3, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mask AP")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def speed_side_by_side(cfgs: dict[str, Config], rounds: int = 5) -> dict[str, dict[str, float]]:
    """Images/s of each whole model and milliseconds of its neck alone, measured in one process.

    Rows take turns within every round (one image each, batch 1, at the size the config trains at;
    the whole model as ``csrseg benchmark`` times it: normalise, network, post-processing at full
    load), so drifting machine load falls on all rows alike; medians over rounds. The neck is timed
    on backbone features computed once. Random weights: speed does not depend on them.
    """
    from csrseg.research.benchmark import interleaved_times, ours_step, padded_input, synthetic_image

    cpu = torch.device("cpu")
    whole, necks, sizes = {}, {}, {}
    for name, cfg in cfgs.items():
        image = synthetic_image(cfg.input.short_side, cfg.input.max_size)
        whole[name], model = ours_step(cfg, image, cpu)
        sizes[name] = list(image.shape[-2:])
        with torch.no_grad():
            feats = model.backbone(padded_input(sizes[name]))
        necks[name] = torch.no_grad()(lambda model=model, feats=feats: model.neck(feats))
    whole_s = interleaved_times(whole, rounds, cpu)
    neck_s = interleaved_times(necks, rounds, cpu)
    return {n: dict(images_per_second=1 / statistics.median(whole_s[n]), neck_ms=1e3 * statistics.median(neck_s[n]),
                    size=sizes[n]) for n in cfgs}
