"""Evaluation pictures beside the report: precision-recall curves (mask and box, overall and per class)
and the confusion matrix, each as PNG and as JSON data.

Files, for results ``<dir>/<stem>.json``: ``<stem>.pr_mask.png``, ``<stem>.pr_box.png``,
``<stem>.pr_curves.json`` (:func:`csrseg.evaluation.curves.pr_curves` for ``mask`` and ``box``),
``<stem>.confusion.png`` and ``<stem>.confusion.json`` (:mod:`csrseg.evaluation.confusion`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from csrseg.errors import CsrsegError
from csrseg.evaluation.backends import LIBRARIES
from csrseg.evaluation.coco import Scored
from csrseg.evaluation.confusion import RULE, confusion_matrix
from csrseg.evaluation.curves import IOUS, RECALL, pr_curves

#: classes named in a curve plot's legend; more are drawn unnamed
LEGEND_CLASSES = 20
#: classes whose counts are written in the confusion matrix's cells; more are colour only
ANNOTATED_CLASSES = 30


def picture_paths(results: Path) -> dict[str, Path]:
    """Where :func:`write_pictures` writes for the results file ``results``, by what each holds."""
    results = Path(results)
    names = dict(pr_mask="pr_mask.png", pr_box="pr_box.png", pr_curves="pr_curves.json", confusion="confusion.png",
                 confusion_data="confusion.json")
    return {what: results.with_name(f"{results.stem}.{name}") for what, name in names.items()}


def check_confusion_options(score_thr: float, iou_thr: float) -> None:
    """A threshold outside [0, 1] (IoU: (0, 1]) is one line naming it."""
    if not 0.0 <= score_thr <= 1.0:
        raise CsrsegError(f"--confusion-score-thr {score_thr}: must lie in [0, 1]")
    if not 0.0 < iou_thr <= 1.0:
        raise CsrsegError(f"confusion IoU threshold {iou_thr}: must lie in (0, 1]")


def write_pictures(scored: Scored, results: Path, *, score_thr: float = 0.3, iou_thr: float = 0.5) -> dict[str, Path]:
    """Curves and confusion matrix of ``scored`` (:func:`csrseg.evaluation.coco.score_results`) as PNG and
    JSON beside ``results``; returns :func:`picture_paths`. Classes without ground truth have no curve."""
    check_confusion_options(score_thr, iou_thr)
    paths = picture_paths(results)
    curves = {}
    for kind, scores in (("mask", scored.mask), ("box", scored.box)):
        data = pr_curves(scores.precision, scores.cat_ids, scored.names)
        data["classes"] = [c for c in data["classes"] if scored.counts.get(c["category_id"], 0)]
        curves[kind] = data
        plot_pr(data, f"{kind} precision-recall, area all, 100 detections ({LIBRARIES[scored.evaluator]})",
                paths[f"pr_{kind}"])
    _write_json(paths["pr_curves"], curves)

    predicted = {int(r["category_id"]) for r in scored.results}
    cat_ids = sorted(c for c in set(scored.mask.cat_ids) | predicted if scored.counts.get(c, 0) or c in predicted)
    matrix = confusion_matrix(scored.dataset, scored.results, cat_ids, iou_thr=iou_thr, score_thr=score_thr)
    names = [str(scored.names.get(c, c)) for c in cat_ids] + ["background"]
    _write_json(paths["confusion_data"], dict(
        classes=names, category_ids=cat_ids + [None], rows="ground truth", columns="prediction", iou_thr=iou_thr,
        score_thr=score_thr, iou="mask", rule=RULE, matrix=matrix.tolist()))
    plot_confusion(matrix, names, paths["confusion"], f"mask IoU >= {iou_thr}, score >= {score_thr}")
    return paths


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed, or used where there is one
    import matplotlib.pyplot as plt

    return plt


def plot_pr(curves: dict, title: str, path: Path) -> Path:
    """One panel per IoU of :data:`~csrseg.evaluation.curves.IOUS`: a thin line per class, the overall mean bold."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(IOUS), figsize=(5 * len(IOUS), 4.6), sharey=True)
    named = len(curves["classes"]) <= LEGEND_CLASSES
    for ax, iou in zip(axes, IOUS):
        for row in curves["classes"]:
            if row["curves"][iou] is not None:
                ax.plot(RECALL, row["curves"][iou], linewidth=1, alpha=0.8 if named else 0.3,
                        label=f"{row['name']} {row['AP'][iou]:.1f}" if named else None)
        overall = curves["overall"][iou]
        if overall is not None:
            ax.plot(RECALL, overall, color="black", linewidth=2.5, label=f"all classes {np.mean(overall) * 100:.1f}")
        ax.set_title(f"IoU {iou}")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="lower left", title="AP", title_fontsize=7)
    axes[0].set_ylabel("precision")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path, subtitle: str) -> Path:
    """Counts ``(K+1, K+1)`` (rows true, columns predicted, background last), each row coloured by its share."""
    plt = _pyplot()
    side = max(6.0, 0.45 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90 if len(names) > 8 else 45, ha="center" if len(names) > 8 else "right",
                  fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= ANNOTATED_CLASSES + 1:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_title(f"confusion matrix ({subtitle})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
