"""Reproduce the structure of the paper's ablations on any dataset and budget.

Table II: the four neck variants (FPN baseline, +CSR, +D2S, CSR + D2S); Table III:
the CSR widths 128/256/512/1024. Every variant is trained and evaluated with the
same base config and the same seeds; the results are averaged over seeds
(mean ± sample std). Each finished run leaves ``summary.json`` in its folder, so an
interrupted sweep resumes without redoing finished runs (and an unfinished run
resumes from its ``last.pt``). A run whose resolved config, data and seed equal those
of a finished run in this sweep or a sibling sweep (``OUT/../*``) is not trained
again: Table III's CSR width equal to the base config's is Table II's CSR + D2S.

Under the K-Net head Table II adds a control row (the fusion neck with both switches off) between
K-Net and the CSR/D2S rows. The table comes with what a reader needs to trust it
(:mod:`csrseg.research.ablate_stats`): AP per seed, paired differences per seed with a paired t-test,
whether each row's AP curve has flattened, and the speed of every row measured side by side in
one process after training (whole model and neck alone).

Layout: ``OUT/<variant>/seed<k>/`` (a normal run folder + ``run.json``, what it trains, and ``summary.json``),
``OUT/table<N>.md``, ``OUT/table<N>.png`` (final AP per row), ``OUT/table<N>_curves.png`` (AP at every
evaluation) and ``OUT/speed.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path
from typing import Any

from csrseg.research.ablate_stats import eval_curve, flatness, format_paired, paired, plot_curves, speed_side_by_side
from csrseg.config import Config, ConfigError, config_from_dict, load_config, merge, to_dict, without_pretrained
from csrseg.config.presets import TABLE2_ROWS, recipe_overrides, table_rows
from csrseg.outputs import TRAIN_OUTPUTS, check_outputs, existing_outputs, output_lock
from csrseg.engine.trainer import Hook, Trainer
from csrseg.errors import CsrsegError
from csrseg.evaluation.coco import METRICS
from csrseg.tools.info import count_params
from csrseg.models import build_model

# Table II's extra row under the K-Net head: our fusion neck with both switches off (the `fpn` preset)
CONTROL = TABLE2_ROWS[1].name


def table_variants(table: int, base: Config) -> dict[str, dict[str, Any]]:
    """The rows of ``table`` for ``base``, as neck settings (:func:`csrseg.config.presets.table_rows`, where
    the presets read them too). Under the K-Net head Table II's first row is K-Net itself (its FPN on
    C2-C5 + SemanticFPN, as the paper's baseline row is K-Net's Table I row), followed by the control
    row (the fusion neck with both switches off); under the SOLOv2 head the first row is that fusion
    neck. Every row names its neck type, so a base on K-Net's own neck is switched to the rows' necks
    too. Losses stay the base's in every row."""
    if table not in (2, 3):
        raise CsrsegError(f"--table {table}: choose 2 or 3")
    return table_rows(table, base.model.head.type)


def selected_rows(table: int, base: Config, rows: list[str] | tuple[str, ...] = (),
                  variants: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``table_variants`` (or the given ``variants``: ``{row name: model settings}``, an A/B of one's own)
    limited to ``rows`` (row folder names such as ``fpn_baseline``); all when empty."""
    variants = variants if variants is not None else table_variants(table, base)
    if not rows:
        return variants
    known = {_slug(name): name for name in variants}
    unknown = [row for row in rows if row not in known]
    if unknown:
        raise CsrsegError(f"--rows {' '.join(unknown)}: Table {table} with {base.name} has the rows {', '.join(known)}")
    return {known[row]: variants[known[row]] for row in known if row in rows}


def comparisons(names: list[str]) -> list[tuple[str, str]]:
    """(row, reference) pairs to test: every row against the first; with the control row present,
    every fusion-neck row against the control too (that separates the switches from the neck change)."""
    pairs = [(name, names[0]) for name in names[1:]]
    if CONTROL in names:
        pairs += [(name, CONTROL) for name in names if name not in (names[0], CONTROL)]
    return pairs

PAPER = {  # the paper's numbers (COCO val, R50, 12 epochs) for the table footers
    2: {"FPN baseline": (34.1, 55.5, 35.7), "+ CSR": (34.9, 56.4, 36.7), "+ D2S": (34.8, 56.3, 36.4), "CSR + D2S": (35.4, 56.8, 36.9)},
    3: {"CSR 128": (34.9, 54.7, 36.2), "CSR 256": (35.4, 56.8, 36.9), "CSR 512": (36.1, 57.2, 37.1), "CSR 1024": (36.5, 57.5, 37.6)},
}


RUN_FILE = "run.json"  # the data and resolved config of a run folder, written before training starts


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def variant_config(base: Config, model: dict[str, Any], seed: int, epochs: int | None) -> Config:
    """``base`` with a row's model settings (``{"neck": {...}, "head": {...}}``), the sweep's seed and (if
    given) its schedule length."""
    cfg = merge(base, {"model": model}, "variant")
    train = dataclasses.replace(cfg.train, seed=seed, **({"epochs": epochs} if epochs else {}))
    if epochs and epochs != cfg.train.epochs:
        # the lr steps keep their place in a shorter or longer schedule (the paper's 8 and 11 of 12)
        train = dataclasses.replace(train, milestones=tuple(max(1, round(m * epochs / cfg.train.epochs)) for m in cfg.train.milestones))
    return dataclasses.replace(cfg, train=train)


@dataclasses.dataclass
class PlannedRun:
    """One (row, seed) training of a sweep that has no finished result yet."""

    name: str
    seed: int
    cfg: Config
    run_dir: Path
    run: dict  # data (resolved path) + resolved config, as written to RUN_FILE
    resume: bool  # an unfinished run of the same config is in run_dir: continue from its last.pt


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What a sweep trains: the rows of Table ``table`` (or ``variants``: ``{row name: model settings}``,
    an A/B of one's own, every row compared with the first), limited to ``rows`` (their folder names,
    e.g. ``fpn_baseline csr_d2s``; all when empty), each for ``seeds`` seeds, on config ``base`` with
    training ``recipe`` (:data:`csrseg.config.presets.RECIPES`; ``cpu``: a scale two CPU cores train)
    laid on it, then ``overrides``; ``epochs`` replaces the recipe's length."""

    table: int
    base: str = "paper"
    seeds: int = 3
    epochs: int | None = None
    overrides: tuple[str, ...] = ()
    rows: tuple[str, ...] = ()
    variants: dict[str, dict[str, Any]] | None = None
    recipe: str = "paper"

    def all_overrides(self) -> tuple[str, ...]:
        """The recipe's overrides (for the head the sweep's config has, its own overrides included),
        then the sweep's own."""
        head = load_config(self.base, self.overrides).model.head.type
        return (*recipe_overrides(self.recipe, head), *self.overrides)

    def base_config(self) -> Config:
        return load_config(self.base, self.all_overrides())

    def row_settings(self, base_cfg: Config) -> dict[str, dict[str, Any]]:
        return selected_rows(self.table, base_cfg, self.rows, self.variants)


def plan_sweep(data: str | Path, sweep: Sweep, out: str | Path, *,
               exist_ok: bool = False) -> tuple[dict[str, list[dict]], list[PlannedRun]]:
    """Every run of the sweep: ``(summaries, pending)``. ``summaries`` holds each row's finished runs
    (its own, or a finished run with the same data and config in a sibling sweep, reused);
    ``pending`` the runs still to train. A run folder left by another sweep (other config or data)
    is refused, naming its files, unless ``exist_ok``."""
    out = Path(out)
    base_cfg = sweep.base_config()
    # a training run folder is not a sweep folder
    check_outputs(out, TRAIN_OUTPUTS, how="choose another --out for the sweep")
    summaries: dict[str, list[dict]] = {}
    pending: list[PlannedRun] = []
    for name, variant in sweep.row_settings(base_cfg).items():
        summaries[name] = []
        for seed in range(sweep.seeds):
            run_dir = out / _slug(name) / f"seed{seed}"
            summary_path = run_dir / "summary.json"
            cfg = variant_config(base_cfg, variant, seed, sweep.epochs)
            run = dict(data=str(Path(data).resolve()), config=to_dict(cfg))
            previous = _same_run(run_dir, run, exist_ok)
            if previous == "finished":
                summaries[name].append(_with_curve(json.loads(summary_path.read_text()), run_dir))
                continue
            summary = find_finished_run(out, seed, run)
            if summary is None:
                pending.append(PlannedRun(name, seed, cfg, run_dir, run, resume=previous == "unfinished"))
                continue
            summary = _with_curve(dict(summary, variant=name), Path(summary["reused_from"]))
            run_dir.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(summary, indent=1))
            summaries[name].append(summary)
    return summaries, pending


def train_planned(planned: PlannedRun, device: str | None = None, progress: bool = True) -> dict:
    """Train one planned run (on its ``run["data"]``); its :class:`SweepSummary` hook writes ``summary.json``,
    which this returns."""
    from csrseg.api.train import train

    planned.run_dir.mkdir(parents=True, exist_ok=True)
    (planned.run_dir / RUN_FILE).write_text(json.dumps(planned.run, indent=1))
    # _same_run has refused a folder of another run: what is left here is this run's own
    train(planned.run["data"], config=planned.cfg, out=planned.run_dir, resume=planned.resume, device=device, progress=progress,
          exist_ok=True, hooks=[SweepSummary(planned)])
    return json.loads((planned.run_dir / "summary.json").read_text())


class SweepSummary(Hook):
    """At the end of a sweep's run: ``summary.json`` (row, seed, final metrics, iterations, parameters,
    the AP curve), which marks the run finished for the sweep and feeds its tables."""

    def __init__(self, planned: PlannedRun) -> None:
        self.planned = planned

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.env.is_main:
            return
        planned, state = self.planned, trainer.state
        summary = dict(variant=planned.name, seed=planned.seed, metrics=state.metrics, iterations=state.iteration,
                       params=count_params(build_model(without_pretrained(planned.cfg))), run=planned.run,
                       curve=eval_curve(planned.run_dir))
        (planned.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


def _train_in_child(planned: PlannedRun, device: str | None, threads: int) -> None:
    """A child process's whole job (:func:`train_runs` with ``jobs > 1``); its log is ``train.log``.

    The child leaves the terminal's process group, so that a Ctrl-C reaches the sweep alone, which
    asks each child once to stop (two signals would kill a run before it writes ``last.pt``). A child
    whose sweep died without asking (SIGKILL, a crash) stops as if asked: nothing trains on unwatched.
    Exit codes: 0 trained, 128 + the signal when stopped with ``last.pt`` written, 1 on an error.
    """
    import logging
    import os
    import sys

    import torch

    from csrseg.engine.preempt import TrainingInterrupted

    if hasattr(os, "setpgrp"):
        os.setpgrp()
    _stop_when_orphaned()
    torch.set_num_threads(threads)
    log = open(planned.run_dir / "train.log", "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO, force=True)
    try:
        train_planned(planned, device, progress=False)
    except TrainingInterrupted as err:
        print(f"stopped: {err}", file=log)
        raise SystemExit(err.exit_code) from None
    except CsrsegError as err:
        print(f"error: {err}", file=log)
        raise SystemExit(1) from None


def _stop_when_orphaned() -> None:
    """In a child of :func:`train_runs`: when the parent process ends, send this process SIGTERM,
    unless a stop was asked already (a second SIGTERM would kill it before ``last.pt``)."""
    import multiprocessing
    import os
    import signal
    import threading
    from multiprocessing.connection import wait

    from csrseg.engine import preempt

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])  # ready once the parent has exited, however it ended
        if not preempt.stop_requested():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="csrseg-orphan-watch", daemon=True).start()


def train_runs(pending: list[PlannedRun], device: str | None = None, jobs: int = 1, progress: bool = True) -> None:
    """Train ``pending`` (runs of one sweep or of several, on any data): one after another in this
    process, or ``jobs`` at a time in child processes
    (several small runs sharing one GPU or many cores; each child gets ``cpu_count // jobs`` threads
    and writes its log to ``RUN_DIR/train.log``). A failed child does not stop the others; the
    failures are reported together at the end, and rerunning the sweep resumes them.

    SIGTERM or SIGINT (Ctrl-C) stops the sweep as they stop ``csrseg train``: no new run starts, each
    run in progress finishes its step and writes ``last.pt``, then
    :class:`~csrseg.engine.preempt.TrainingInterrupted` is raised; a second signal stops at once.
    """
    if jobs <= 1:
        for planned in pending:
            train_planned(planned, device, progress)
        return
    from csrseg.engine import preempt

    preempt.preemptible(_train_children)(pending, device, jobs, progress)


def _train_children(pending: list[PlannedRun], device: str | None, jobs: int, progress: bool) -> None:
    """:func:`train_runs` with ``jobs > 1``, inside :func:`~csrseg.engine.preempt.preemptible`."""
    import multiprocessing
    import os
    import signal
    import time

    from csrseg.engine import preempt

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue, running, failed, stopped, done = list(pending), {}, [], [], 0
    started, stopping = time.monotonic(), 0
    try:
        while queue or running:
            if not stopping and (stopping := preempt.stop_requested()):
                queue.clear()
                for child in running:  # once each: the child's own handler stops it after its step
                    os.kill(child.pid, signal.SIGTERM)
                if progress:
                    print(f"{preempt.signal_name(stopping)}: stopping the {len(running)} runs in progress after "
                          "their current step (another signal stops at once)", flush=True)
            while queue and len(running) < jobs:
                planned = queue.pop(0)
                planned.run_dir.mkdir(parents=True, exist_ok=True)
                child = ctx.Process(target=_train_in_child, args=(planned, device, threads))
                child.start()
                running[child] = planned
            time.sleep(0.5)
            for child in [c for c in running if not c.is_alive()]:
                planned = running.pop(child)
                child.join()
                done += 1
                where = f"{planned.name} seed {planned.seed}"
                if child.exitcode == 0:
                    ap = json.loads((planned.run_dir / "summary.json").read_text())["metrics"].get("AP", 0.0)
                    outcome = f"mask AP {ap:.1f}"
                elif child.exitcode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                    stopped.append(where)
                    outcome = f"stopped, {planned.run_dir / 'last.pt'} written"
                elif stopping and child.exitcode == -signal.SIGTERM:  # asked before its training began
                    stopped.append(where)
                    outcome = "stopped before its first step"
                else:
                    failed.append(f"{where} (exit code {child.exitcode}; see {planned.run_dir / 'train.log'})")
                    outcome = "failed"
                if progress:
                    print(f"[{done}/{len(pending)}, {(time.monotonic() - started) / 60:.1f} min] {where}: {outcome}",
                          flush=True)
    finally:  # left by an exception (a second Ctrl-C among them): no child trains on without its sweep
        for child in running:
            child.kill()
            child.join()
    if stopping:
        raise preempt.TrainingInterrupted(
            f"{preempt.signal_name(stopping)}: the sweep stopped; {len(stopped)} runs in progress stopped "
            f"({', '.join(stopped) or 'none'}; each resumes from its last.pt), {len(pending) - done} runs not started"
            + (f", {len(failed)} failed: {'; '.join(failed)}" if failed else "")
            + ". Rerun the same command to resume.", stopping)
    if failed:
        raise CsrsegError(f"{len(failed)} of {len(pending)} runs failed: " + "; ".join(failed)
                          + ". Rerun the same command to retrain them; finished runs are kept.")


def default_sweep_dir(table: int) -> Path:
    """Where a sweep goes without ``--out`` (rerunning it resumes there)."""
    return Path("runs") / "ablate" / f"table{table}"


def run_ablation(data: str | Path | None, sweep: Sweep, out: str | Path | None = None, *, device: str | None = None,
                 progress: bool = True, exist_ok: bool = False, jobs: int = 1, train_only: bool = False) -> str:
    """Train and evaluate every row of ``sweep`` for its seeds; returns the markdown table.

    With ``data`` ``None`` the ``cpu`` recipe trains on the demo's 1000 synthetic images, made once in
    ``OUT/data``. Rows of one's own (``Sweep.variants``) make an A/B, e.g. of head settings on one neck
    (``benchmarks/cpu_knet_ab.py``).

    Rerunning the same sweep resumes it. A run folder left by another sweep (other config or data)
    is refused, naming its files, unless ``exist_ok``: then that run is trained again. ``jobs``: runs
    trained at a time (:func:`train_runs`). ``train_only``: stop once every run is trained (the
    tables, plots and side-by-side speed come from a later call without it, e.g. on another machine
    that holds the same data at the same path).
    """
    from csrseg.data.sources import resolve_dataset

    out = Path(out) if out else default_sweep_dir(sweep.table)
    sweep.all_overrides()  # an unknown recipe, or one for another head, is refused before the lock is taken
    with output_lock(out, "csrseg ablate"):  # one sweep at a time in a sweep folder
        data = data if data is not None else recipe_data(sweep.recipe, out)
        _, pending = plan_sweep(data, sweep, out, exist_ok=exist_ok)
        resolve_dataset(data)  # a dataset that is not there is named before any run folder is written
        out.mkdir(parents=True, exist_ok=True)
        train_runs(pending, device, jobs, progress)
        # every run is finished now: the summaries come from the run folders
        summaries, pending = plan_sweep(data, sweep, out, exist_ok=exist_ok)
        assert not pending, "a run trained above has no summary"
        if train_only:
            return f"{sum(len(runs) for runs in summaries.values())} runs trained in {out}; rerun without --train-only for the tables."
        summaries = {name: [with_diagnostics(r, out, data) for r in runs] for name, runs in summaries.items()}
        base_cfg = sweep.base_config()
        cfgs = {name: variant_config(base_cfg, variant, 0, sweep.epochs) for name, variant in sweep.row_settings(base_cfg).items()}
        speed = sweep_speed(out, cfgs)
        text = format_ablation(summaries, sweep.table, base_cfg.name, sweep.seeds, speed)
        (out / f"table{sweep.table}.md").write_text(text + "\n")
        title = f"Table {sweep.table} ({base_cfg.name}, {_iterations(summaries)} iterations, {sweep.seeds} seeds)"
        plot_ablation(summaries, out / f"table{sweep.table}.png", title)
        plot_curves(summaries, out / f"table{sweep.table}_curves.png", title)
        return text


def recipe_data(recipe: str, out: Path) -> Path:
    """The dataset of a sweep run without ``--data``: for the ``cpu`` recipe the demo's 1000 synthetic
    images (seed 0, a fifth for val), made in ``OUT/data`` the first time."""
    if recipe != "cpu":
        raise CsrsegError(f"--data is needed with --recipe {recipe} (only --recipe cpu makes its own data)")
    data = out / "data"
    if not (data / "annotations" / "instances_val.json").is_file():
        from csrseg.data.synth import make_synthetic_dataset

        make_synthetic_dataset(data, 1000, seed=0, val_fraction=0.2)
    return data


def with_diagnostics(summary: dict, out: Path, data: str | Path) -> dict:
    """``summary`` with its run's diagnostics (:func:`csrseg.research.diagnose.run_diagnostics` and the last
    semantic loss), computed once from the run folder and kept in its ``summary.json``."""
    if "diagnostics" in summary:
        return summary
    from csrseg.research.diagnose import run_diagnostics

    run_dir = Path(summary["reused_from"]) if summary.get("reused_from") else out / _slug(summary["variant"]) / f"seed{summary['seed']}"
    if not (run_dir / "last.pt").is_file():
        return summary
    diagnostics = run_diagnostics(run_dir, data)
    trains = [r for r in _log_rows(run_dir) if r.get("type") == "train" and "loss_sem" in r]
    if trains:
        diagnostics["loss_sem"] = float(trains[-1]["loss_sem"])
    # kept in the run's own summary and in this sweep's copy of it (a reused run's row name is this sweep's)
    for folder in {run_dir, out / _slug(summary["variant"]) / f"seed{summary['seed']}"}:
        path = folder / "summary.json"
        if path.is_file():
            path.write_text(json.dumps(dict(_read_json(path), diagnostics=diagnostics), indent=1))
    return dict(summary, diagnostics=diagnostics)


def _log_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "log.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash
    return rows


# (key, heading, format) of the diagnostics table: what each row's masks and classes look like
DIAGNOSTICS = (
    ("class_agnostic_ap", "class-agnostic AP (dedup.)", "{:.1f}"),
    ("best_iou", "best IoU per object", "{:.3f}"),
    ("hit_share", "objects hit", "{:.0%}"),
    ("class_right", "class of top hit right", "{:.0%}"),
    ("top_score", "top score", "{:.2f}"),
    ("probe_neck", "class probe (neck)", "{:.0%}"),
    ("probe_kernel", "class probe (head)", "{:.0%}"),
    ("empty_pool", "matched, pooling nothing", "{:.0%}"),
    ("duplicates", "near-duplicate initial masks", "{:.0%}"),
    ("loss_sem", "loss_sem (last)", "{:.3f}"),
)


def format_diagnostics(summaries: dict[str, list[dict]]) -> str:
    """The diagnostics of every row, means over its seeds ("—" where a run has none)."""
    lines = ["| variant | " + " | ".join(h for _, h, _ in DIAGNOSTICS) + " |", "|" + "---|" * (len(DIAGNOSTICS) + 1)]
    for name, runs in summaries.items():
        cells = []
        for key, _, fmt in DIAGNOSTICS:
            values = [r["diagnostics"][key] for r in runs if key in r.get("diagnostics", {})]
            cells.append(fmt.format(statistics.mean(values)) if values else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _with_curve(summary: dict, run_dir: Path) -> dict:
    """A summary with its AP curve (summaries written before curves were recorded lack one)."""
    return summary if summary.get("curve") else dict(summary, curve=eval_curve(run_dir))


def sweep_speed(out: Path, cfgs: dict[str, Config]) -> dict[str, dict]:
    """Speed of every row, measured side by side in this process once all rows are trained
    (``OUT/speed.json``; measured again only when a row's config changed)."""
    path = out / "speed.json"
    recorded = _read_json(path)
    configs = {name: to_dict(cfg) for name, cfg in cfgs.items()}
    if all(recorded.get(name, {}).get("config") == configs[name] for name in cfgs):
        return recorded
    speed = {name: dict(row, config=configs[name]) for name, row in speed_side_by_side(cfgs).items()}
    path.write_text(json.dumps(speed, indent=1))
    return speed


def _same_run(run_dir: Path, run: dict, exist_ok: bool) -> str:
    """``"finished"`` or ``"unfinished"`` when ``run_dir`` holds ``run`` (the same data and resolved
    config), ``"new"`` when it holds nothing, or nothing the caller may not replace (``exist_ok``);
    a folder holding another run is refused (:class:`~csrseg.outputs.OutputExistsError`)."""
    found = existing_outputs(run_dir, ("summary.json", *TRAIN_OUTPUTS))
    if not found:
        return "new"
    summary_path, run_path = run_dir / "summary.json", run_dir / RUN_FILE
    if summary_path in found:
        recorded = _read_json(summary_path).get("run")
        state = "finished"
    else:
        recorded = _read_json(run_path) if run_path.is_file() else None
        state = "unfinished" if (run_dir / "last.pt").is_file() else "new"
    if _with_defaults(recorded) == run:
        return state
    check_outputs(run_dir, ("summary.json", *TRAIN_OUTPUTS), exist_ok,
                  "it was trained with another config or dataset; pass --exist-ok to train it again here, "
                  "or choose another --out")
    summary_path.unlink(missing_ok=True)
    return "new"


def _with_defaults(recorded: dict | None) -> dict | None:
    """A run recorded by an older csrseg, its config completed with the defaults of fields added
    since (e.g. ``train.schedule``) and read in today's layout, so that a sweep made before is still
    recognised."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("config"), dict):
        return recorded
    try:
        return dict(recorded, config=to_dict(config_from_dict(recorded["config"], "run.json")))
    except (ConfigError, TypeError, ValueError):  # a config this csrseg cannot read is another run's
        return recorded


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_finished_run(out: Path, seed: int, run: dict) -> dict | None:
    """The summary of a finished run with the same data and resolved config as ``run``, in ``out``
    or a sibling sweep folder, with ``reused_from`` set to its folder; ``None`` when there is none."""
    for path in sorted(out.parent.glob(f"*/*/seed{seed}/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _with_defaults(summary.get("run")) == run:
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


def format_ablation(summaries: dict[str, list[dict]], table: int, base: str, seeds: int,
                    speed: dict[str, dict]) -> str:
    head = ["variant", *METRICS, "params (M)", "images/s (CPU)", "neck (ms)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in summaries.items():
        cells = [_mean_std([r["metrics"].get(m, 0.0) for r in runs]) for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {runs[0]['params']:.2f} | "
                     f"{speed[name]['images_per_second']:.2f} | {speed[name]['neck_ms']:.1f} |")
    lines.append("")
    lines.append(f"Base config `{base}`, {_iterations(summaries)} training iterations per run, {seeds} seed(s) each, "
                 "mean ± sample std over seeds. The paper (COCO val, "
                 "R50, 12 epochs): " + "; ".join(f"{k} {v[0]} AP" for k, v in PAPER[table].items()) + ".")
    # the per-seed values, so a reader can tell a seed-driven mean from a consistent shift
    lines.append("")
    lines.append("AP per seed: " + "; ".join(
        f"{name} " + " / ".join(f"{r['metrics'].get('AP', 0.0):.1f}" for r in sorted(runs, key=lambda r: r["seed"]))
        for name, runs in summaries.items()) + ".")
    size = next(iter(speed.values()))["size"]
    lines.append("")
    lines.append(f"Speed: one process, all rows taking turns, batch 1 at {size[1]}×{size[0]}, post-processing included "
                 "(images/s), and the neck alone on the same backbone features (ms); medians over rounds.")
    lines.append("")
    lines.append("Paired differences (same seed, same data order; a paired t-test over seeds, p < 0.05 counts as "
                 "larger than the seed noise):")
    lines.append("")
    lines.append(format_paired([paired(summaries, row, ref) for row, ref in comparisons(list(summaries))]))
    lines.append("")
    lines.append("Has each AP curve flattened? " + flatness(summaries))
    if any(r.get("diagnostics") for runs in summaries.values() for r in runs):
        lines.append("")
        lines.append("What the AP is made of (means over seeds; the last evaluation's results on val, and for K-Net's "
                     "head its kernels on 200 train and 200 val images: `csrseg.evaluation.diagnostics`). The class "
                     "probe is a logistic regression on the features averaged under each object's mask, fitted on "
                     "train objects and scored on val objects:")
        lines.append("")
        lines.append(format_diagnostics(summaries))
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
