"""The training plot: loss terms per iteration and mask AP per epoch, as one PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


def plot_training(log_path: str | Path, out_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    steps = [r for r in rows if r.get("type") == "train"]
    evals = [r for r in rows if r.get("type") == "eval"]
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "loss_cls", "loss_dice", "loss_focal"):
        xs = [r["iter"] for r in steps if key in r]
        ys = [r[key] for r in steps if key in r]
        if xs:
            ax_loss.plot(xs, ys, label=key, linewidth=1)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    if ax_loss.lines:
        ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key in ("AP", "AP50", "AP75"):
        xs = [r["epoch"] for r in evals if key in r]
        ys = [r[key] for r in evals if key in r]
        if xs:
            ax_ap.plot(xs, ys, marker="o", label=key)
    ax_ap.set_xlabel("epoch")
    ax_ap.set_ylabel("mask AP (val)")
    if ax_ap.lines:
        ax_ap.legend()
    ax_ap.grid(alpha=0.3)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
