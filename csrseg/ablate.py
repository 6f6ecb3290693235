"""Reproduce the structure of the paper's ablations on any dataset and budget.

Table II: the four neck variants (FPN baseline, +CSR, +D2S, CSR + D2S); Table III:
the CSR widths 128/256/512/1024. Every variant is trained and evaluated with the
same base config and the same seeds; the results are averaged over seeds
(mean ± sample std). Each finished run leaves ``summary.json`` in its folder, so an
interrupted sweep resumes without redoing finished runs (and an unfinished run
resumes from its ``last.pt``). A run whose resolved config, data and seed equal those
of a finished run in this sweep or a sibling sweep (``OUT/../*``) is not trained
again: Table III's CSR width equal to the base config's is Table II's CSR + D2S.

Layout: ``OUT/<variant>/seed<k>/`` (a normal run folder + ``summary.json``),
``OUT/table<N>.md`` and ``OUT/table<N>.png``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path

import torch

from csrseg.config import Config, load_config, merge, parse_overrides, to_dict
from csrseg.errors import CsrsegError
from csrseg.evaluate import METRICS
from csrseg.info import count_params
from csrseg.models import build_model

VARIANTS: dict[int, dict[str, list[str]]] = {
    2: {
        "FPN baseline": ["model.neck.reweight=false", "model.neck.upsample=nearest"],
        "+ CSR": ["model.neck.reweight=true", "model.neck.upsample=nearest"],
        "+ D2S": ["model.neck.reweight=false", "model.neck.upsample=d2s"],
        "CSR + D2S": ["model.neck.reweight=true", "model.neck.upsample=d2s"],
    },
    3: {f"CSR {c}": ["model.neck.reweight=true", "model.neck.upsample=d2s", f"model.neck.csr_channels={c}"]
        for c in (128, 256, 512, 1024)},
}

PAPER = {  # the paper's numbers (COCO val, R50, 12 epochs) for the table footers
    2: {"FPN baseline": (34.1, 55.5, 35.7), "+ CSR": (34.9, 56.4, 36.7), "+ D2S": (34.8, 56.3, 36.4), "CSR + D2S": (35.4, 56.8, 36.9)},
    3: {"CSR 128": (34.9, 54.7, 36.2), "CSR 256": (35.4, 56.8, 36.9), "CSR 512": (36.1, 57.2, 37.1), "CSR 1024": (36.5, 57.5, 37.6)},
}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def variant_config(base: Config, variant: list[str], seed: int, epochs: int | None) -> Config:
    cfg = merge(base, parse_overrides(variant), "variant")
    train = dataclasses.replace(cfg.train, seed=seed, **({"epochs": epochs} if epochs else {}))
    if epochs and any(m >= epochs for m in train.milestones):
        # scale the lr steps with a shortened schedule (the paper's 8 and 11 of 12)
        train = dataclasses.replace(train, milestones=tuple(max(1, round(m * epochs / cfg.train.epochs)) for m in cfg.train.milestones))
    return dataclasses.replace(cfg, train=train)


def images_per_second(cfg: Config, runs: int = 5) -> float:
    """CPU images/s of ``cfg``'s model at ``max_size x short_side`` (batch 1, post-processing included)."""
    from csrseg.benchmark import benchmark_ours, synthetic_image

    # the input the config trains at: 1333x800 for the paper's configs (its FPS column), 256x256 for demo
    image = synthetic_image(cfg.input.short_side, cfg.input.max_size)
    row = benchmark_ours(cfg, image, torch.device("cpu"), runs=runs, warmup=1)
    return row.fps


def run_ablation(data: str | Path, table: int, out: str | Path, base: str = "paper", seeds: int = 3,
                 epochs: int | None = None, overrides: list[str] | tuple[str, ...] = (), device: str | None = None,
                 progress: bool = True) -> str:
    """Train and evaluate every variant of ``table`` for ``seeds`` seeds; returns the markdown table."""
    from csrseg.engine.trainer import train

    if table not in VARIANTS:
        raise CsrsegError(f"--table {table}: choose 2 or 3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config(base, overrides)
    summaries: dict[str, list[dict]] = {}
    for name, variant in VARIANTS[table].items():
        summaries[name] = []
        for seed in range(seeds):
            run_dir = out / _slug(name) / f"seed{seed}"
            summary_path = run_dir / "summary.json"
            if summary_path.is_file():
                summaries[name].append(json.loads(summary_path.read_text()))
                continue
            cfg = variant_config(base_cfg, variant, seed, epochs)
            run = dict(data=str(Path(data).resolve()), config=to_dict(cfg))
            summary = find_finished_run(out, seed, run)
            if summary is not None:
                summary = dict(summary, variant=name)
            else:
                resume = (run_dir / "last.pt").is_file()
                result = train(cfg, data, run_dir, resume=resume, device=device, progress=progress)
                summary = dict(variant=name, seed=seed, metrics=result.metrics, iterations=result.iterations,
                               params=count_params(build_model(cfg)), run=run)
            run_dir.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(summary, indent=1))
            summaries[name].append(summary)
        cfg = variant_config(base_cfg, variant, 0, epochs)
        speed_path = out / _slug(name) / "speed.json"
        if not speed_path.is_file():
            speed_path.write_text(json.dumps(dict(images_per_second=images_per_second(cfg))))
        for summary in summaries[name]:
            summary["fps"] = json.loads(speed_path.read_text())["images_per_second"]

    text = format_ablation(summaries, table, base_cfg.name, seeds)
    (out / f"table{table}.md").write_text(text + "\n")
    iterations = _iterations(summaries)
    plot_ablation(summaries, out / f"table{table}.png",
                  f"Table {table} ({base_cfg.name}, {iterations} iterations, {seeds} seeds)")
    return text


def find_finished_run(out: Path, seed: int, run: dict) -> dict | None:
    """The summary of a finished run with the same data and resolved config as ``run``, in ``out``
    or a sibling sweep folder, with ``reused_from`` set to its folder; ``None`` when there is none."""
    for path in sorted(out.parent.glob(f"*/*/seed{seed}/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("run") == run:
            return dict(summary, reused_from=summary.get("reused_from", str(path.parent)))
    return None


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _iterations(summaries: dict[str, list[dict]]) -> str:
    """The runs' iteration count ("800"), or its range when variants differ ("400-800")."""
    counts = sorted({r.get("iterations", 0) for runs in summaries.values() for r in runs})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def format_ablation(summaries: dict[str, list[dict]], table: int, base: str, seeds: int) -> str:
    head = ["variant", *METRICS, "params (M)", "images/s (CPU)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in summaries.items():
        cells = [_mean_std([r["metrics"].get(m, 0.0) for r in runs]) for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {runs[0]['params']:.2f} | {runs[0]['fps']:.2f} |")
    lines.append("")
    lines.append(f"Base config `{base}`, {_iterations(summaries)} training iterations per run, {seeds} seed(s) each, "
                 "mean ± sample std over seeds. The paper (COCO val, "
                 "R50, 12 epochs): " + "; ".join(f"{k} {v[0]} AP" for k, v in PAPER[table].items()) + ".")
    # the per-seed values, so a reader can tell a seed-driven mean from a consistent shift
    lines.append("")
    lines.append("AP per seed: " + "; ".join(
        f"{name} " + " / ".join(f"{r['metrics'].get('AP', 0.0):.1f}" for r in sorted(runs, key=lambda r: r["seed"]))
        for name, runs in summaries.items()) + ".")
    return "\n".join(lines)


def plot_ablation(summaries: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    means = [statistics.mean(r["metrics"].get("AP", 0.0) for r in summaries[n]) for n in names]
    stds = [statistics.stdev([r["metrics"].get("AP", 0.0) for r in summaries[n]]) if len(summaries[n]) > 1 else 0.0
            for n in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, means, yerr=stds, capsize=6, color="#4c78a8")
    for i, runs in enumerate(summaries.values()):
        ax.scatter([i] * len(runs), [r["metrics"].get("AP", 0.0) for r in runs], color="black", s=12, zorder=3)
    ax.set_ylabel("mask AP")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
