import dataclasses
import json
import os

import pytest

from csrseg.research.ablate import CONTROL, comparisons, find_finished_run, table_variants, variant_config
from csrseg.research.ablate_stats import flatness, paired
from csrseg.config import ConfigError, load_config, save_config
from csrseg.config.presets import FUSION_KNET_HEAD
from csrseg.models.heads.knet.config import KNetConfig
from tests.conftest import ablation, tiny_config


def test_variants_switch_the_neck_like_the_tables():
    base = load_config("paper-solov2")
    necks = {n: variant_config(base, v, 0, None).model.neck for n, v in table_variants(2, base).items()}
    assert [(n.reweight, n.upsample) for n in necks.values()] == [(False, "nearest"), (True, "nearest"), (False, "d2s"), (True, "d2s")]
    widths = [variant_config(base, v, 0, None).model.neck.csr_channels for v in table_variants(3, base).values()]
    assert widths == [128, 256, 512, 1024]


@pytest.mark.parametrize("base_name", ["paper", "knet"])
def test_knet_head_table2_starts_from_knet_itself(base_name):
    base = load_config(base_name)
    models = {n: variant_config(base, v, 0, None).model for n, v in table_variants(2, base).items()}
    assert [m.neck.type for m in models.values()] == ["fpn_semantic", "fusion", "fusion", "fusion", "fusion"]
    # the control (the `fpn` preset's neck), then + CSR, + D2S, CSR + D2S
    assert [(m.neck.reweight, m.neck.upsample) for m in list(models.values())[1:]] == [
        (False, "nearest"), (True, "nearest"), (False, "d2s"), (True, "d2s")]
    assert list(models)[1] == CONTROL
    for name, preset in zip(list(models)[1:], ("fpn", "csr", "d2s", "paper")):
        assert models[name].neck == load_config(preset).model.neck  # the rows are the issue's presets
    # every fusion row's head takes the one shared setting; K-Net keeps its own head
    heads = [(m.head.branch_convs, m.head.position) for m in models.values()]
    assert heads == [(0, "none")] + [(FUSION_KNET_HEAD["branch_convs"], FUSION_KNET_HEAD["position"])] * 4
    for preset in ("fpn", "csr", "d2s", "paper", "csr128", "csr1024"):
        head = load_config(preset).model.head
        assert (head.branch_convs, head.position) == (FUSION_KNET_HEAD["branch_convs"], FUSION_KNET_HEAD["position"])
    assert (load_config("knet").model.head.branch_convs, load_config("knet").model.head.position) == (0, "none")
    assert {m.head.type for m in models.values()} == {"knet"}
    assert {variant_config(base, v, 0, None).model.neck.type for v in table_variants(3, base).values()} == {"fusion"}


def test_shorter_schedule_scales_the_milestones():
    cfg = variant_config(load_config("paper"), {}, seed=4, epochs=6)
    assert cfg.train.epochs == 6 and cfg.train.milestones == (4, 6) and cfg.train.seed == 4


def test_sweep_writes_table_and_resumes_without_redoing(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    out = tmp_path / "sweep"
    text = ablation(synth_root, 2, out, base=str(cfg_path), seeds=2, device="cpu", progress=False)
    lines = [l for l in text.split("\n\n")[0].splitlines() if l.startswith("| ") and "±" in l]  # the main table
    assert [l.split(" | ")[0] for l in lines] == ["| FPN baseline", "| + CSR", "| + D2S", "| CSR + D2S"]
    assert (out / "table2.md").read_text().strip() == text.strip() and (out / "table2.png").is_file()
    seed_aps = [json.loads((out / "csr" / f"seed{k}" / "summary.json").read_text())["metrics"]["AP"] for k in (0, 1)]
    assert f"+ CSR {seed_aps[0]:.1f} / {seed_aps[1]:.1f};" in text  # the per-seed line, in seed order
    assert "1 training iterations per run" in text  # max_iters=1: the budget is stated with the table
    assert (out / "table2_curves.png").is_file()
    speed = json.loads((out / "speed.json").read_text())
    assert set(speed) == {"FPN baseline", "+ CSR", "+ D2S", "CSR + D2S"}
    assert all(row["images_per_second"] > 0 and row["neck_ms"] > 0 for row in speed.values())
    # every row against the first, with its per-seed differences in seed order
    d2s_aps = [json.loads((out / "d2s" / f"seed{k}" / "summary.json").read_text())["metrics"]["AP"] for k in (0, 1)]
    base_aps = [json.loads((out / "fpn_baseline" / f"seed{k}" / "summary.json").read_text())["metrics"]["AP"] for k in (0, 1)]
    row = next(l for l in text.splitlines() if l.startswith("| + D2S − FPN baseline |"))
    assert " / ".join(f"{a - b:+.1f}" for a, b in zip(d2s_aps, base_aps)) in row
    kept = out / "csr" / "seed0" / "summary.json"
    redo = out / "csr_d2s" / "seed1" / "summary.json"
    kept_mtime = kept.stat().st_mtime_ns
    redo.unlink()
    ablation(synth_root, 2, out, base=str(cfg_path), seeds=2, device="cpu", progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime and redo.is_file()


def test_unknown_table_is_refused(tmp_path):
    from csrseg.errors import CsrsegError

    with pytest.raises(CsrsegError):
        ablation(tmp_path, 4, tmp_path / "x")


def test_table3_reuses_the_identical_table2_run(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    common = dict(base=str(cfg_path), seeds=1, device="cpu", progress=False, overrides=["model.neck.csr_channels=128"])
    sweeps = tmp_path / "sweeps"
    ablation(synth_root, 2, sweeps / "table2", **common)
    text = ablation(synth_root, 3, sweeps / "table3", **common)
    source = json.loads((sweeps / "table2" / "csr_d2s" / "seed0" / "summary.json").read_text())
    reused = json.loads((sweeps / "table3" / "csr_128" / "seed0" / "summary.json").read_text())
    # CSR 128 on a base with csr_channels=128 is exactly Table II's CSR + D2S: not trained again
    assert reused["reused_from"] == str(sweeps / "table2" / "csr_d2s" / "seed0")
    assert reused["metrics"] == source["metrics"] and reused["variant"] == "CSR 128"
    assert not (sweeps / "table3" / "csr_128" / "seed0" / "last.pt").exists()
    assert (sweeps / "table3" / "csr_256" / "seed0" / "last.pt").is_file()  # a different width is trained
    assert "| CSR 128 |" in text
    # another dataset (or any config difference) is never mistaken for the same run
    other = dict(source["run"], data=str(tmp_path / "elsewhere"))
    assert find_finished_run(sweeps / "table3", 0, other) is None
    assert find_finished_run(sweeps / "table3", 1, source["run"]) is None
    # a run recorded before a config field existed (train.schedule, its default since) is still the same run
    path = tmp_path / "older" / "table2" / "csr_d2s" / "seed0" / "summary.json"
    path.parent.mkdir(parents=True)
    older = dict(source, run=json.loads(json.dumps(source["run"])))
    del older["run"]["config"]["train"]["schedule"]
    path.write_text(json.dumps(older))
    assert find_finished_run(tmp_path / "older" / "table3", 0, source["run"])["reused_from"] == str(path.parent)
    older["run"]["config"]["train"]["lr"] = 0.5  # while a value that differs still makes it another run
    path.write_text(json.dumps(older))
    assert find_finished_run(tmp_path / "older" / "table3", 0, source["run"]) is None


def _runs(aps, curves=None):
    return [dict(seed=k, metrics=dict(AP=ap), curve=(curves or {}).get(k, [])) for k, ap in enumerate(aps)]


def test_paired_differences_take_out_what_the_seed_does_to_both_rows():
    # seeds move both rows together by up to 6 AP; the row is ahead by 1.0-1.2 on every seed
    summaries = {"base": _runs([30.0, 36.0, 33.0]), "row": _runs([31.0, 37.2, 34.1]), "noisy": _runs([33.0, 33.0, 34.0])}
    better = paired(summaries, "row", "base")
    assert better.diffs == pytest.approx((1.0, 1.2, 1.1)) and better.mean == pytest.approx(1.1)
    assert better.p_value < 0.01 and better.verdict.startswith("exceeds the seed noise (better")
    # +3, -3, +1: the mean moves by a third of a point, far inside what the seeds do
    noisy = paired(summaries, "noisy", "base")
    assert noisy.p_value > 0.5 and noisy.verdict == "within the seed noise"
    # only the seeds both rows have are paired
    summaries["short"] = _runs([29.0])
    assert paired(summaries, "short", "base").verdict == "one seed: no noise estimate"


def test_a_curve_counts_as_flat_only_when_its_last_interval_adds_little():
    climbing = {0: [(100, 10.0), (200, 20.0), (300, 26.0)], 1: [(100, 11.0), (200, 21.0), (300, 27.0)]}
    flat = {0: [(100, 10.0), (200, 25.0), (300, 25.2)], 1: [(100, 11.0), (200, 26.0), (300, 26.2)]}
    text = flatness({"a": _runs([26.0, 27.0], climbing), "b": _runs([25.2, 26.2], flat)})
    assert "a: still climbing (last interval +6.0 AP" in text and "b: flat (last interval +0.2 AP" in text


def test_comparisons_include_the_control_when_the_table_has_one():
    names = list(table_variants(2, load_config("paper")))
    pairs = comparisons(names)
    assert ("CSR + D2S", "FPN baseline") in pairs and ("CSR + D2S", CONTROL) in pairs
    assert (CONTROL, "FPN baseline") in pairs and (CONTROL, CONTROL) not in pairs
    assert comparisons(["a", "b"]) == [("b", "a")]


def test_knet_head_sweep_trains_every_table2_row_including_knet_itself_and_the_control(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny_knet.yaml"
    cfg = tiny_config(epochs=1, max_iters=1, batch_size=4)
    knet = KNetConfig(num_proposals=10, ffn_channels=32, num_groups=8, num_heads=4)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=knet))
    save_config(cfg, cfg_path)
    out = tmp_path / "sweep"
    text = ablation(synth_root, 2, out, base=str(cfg_path), seeds=1, device="cpu", progress=False)
    table = text.split("\n\n")[0]
    assert [l.split(" | ")[0] for l in table.splitlines()[2:]] == ["| FPN baseline", f"| {CONTROL}", "| + CSR", "| + D2S", "| CSR + D2S"]
    for row in ("fpn_baseline", "fusion_no_csr_d2s_control", "csr_d2s"):
        run = json.loads((out / row / "seed0" / "run.json").read_text())
        assert run["config"]["model"]["head"]["type"] == "knet"
    assert json.loads((out / "fpn_baseline" / "seed0" / "run.json").read_text())["config"]["model"]["neck"]["type"] == "fpn_semantic"
    assert "one seed: no noise estimate" in text  # one seed: the table says there is nothing to test against
    # the diagnostics of every row, kept in its summary: the K-Net head's kernel statistics among them
    diag = text.split("What the AP is made of")[1]
    rows = [l for l in diag.splitlines() if l.startswith("| ") and not l.startswith("| variant")]
    assert len(rows) == 5 and all("—" not in l.split(" | ", 1)[1] for l in rows), rows
    kept = json.loads((out / "csr_d2s" / "seed0" / "summary.json").read_text())["diagnostics"]
    assert {"class_agnostic_ap", "hit_share", "probe_neck", "probe_kernel", "empty_pool", "duplicates", "loss_sem"} <= set(kept)


def test_parallel_jobs_train_the_same_runs_as_one_at_a_time(synth_root, tmp_path):
    """--jobs 2 trains each (row, seed) in a child process: same seeds, same data order, so the same
    weights and metrics as training them one after another; --train-only writes no table."""
    import torch

    from csrseg.engine.checkpoint import load_checkpoint

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=2, batch_size=4), cfg_path)
    common = dict(base=str(cfg_path), seeds=1, device="cpu", progress=False, overrides=["train.workers=0"])
    text = ablation(synth_root, 2, tmp_path / "par" / "table2", jobs=2, train_only=True, **common)
    assert "4 runs trained" in text and not (tmp_path / "par" / "table2" / "table2.md").exists()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each of the 2 children had: same sums
    try:
        ablation(synth_root, 2, tmp_path / "seq" / "table2", jobs=1, train_only=True, **common)
    finally:
        torch.set_num_threads(threads)
    for row in ("fpn_baseline", "csr", "d2s", "csr_d2s"):
        par = json.loads((tmp_path / "par" / "table2" / row / "seed0" / "summary.json").read_text())
        seq = json.loads((tmp_path / "seq" / "table2" / row / "seed0" / "summary.json").read_text())
        assert par["iterations"] == seq["iterations"] == 2
        assert par["metrics"] == pytest.approx(seq["metrics"], abs=1e-6)
        weights = [load_checkpoint(tmp_path / kind / "table2" / row / "seed0" / "last.pt")["model"] for kind in ("par", "seq")]
        init = load_checkpoint(tmp_path / "par" / "table2" / "fpn_baseline" / "seed0" / "last.pt")["model"]
        assert all(torch.allclose(weights[0][k].float(), weights[1][k].float(), atol=1e-6) for k in weights[1])
        if row != "fpn_baseline":  # the rows differ in their necks: each child trained its own row
            assert any(k not in init or init[k].shape != v.shape or not torch.equal(init[k], v)
                       for k, v in weights[0].items())
        assert (tmp_path / "par" / "table2" / row / "seed0" / "train.log").is_file()


def test_a_failed_parallel_run_is_named_and_the_others_kept(synth_root, tmp_path):
    from csrseg.errors import CsrsegError

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    out = tmp_path / "sweep"
    # the + D2S row's seed-0 folder holds a file where a run folder's log belongs: that run fails
    (out / "d2s" / "seed0" / "train.log").mkdir(parents=True)
    with pytest.raises(CsrsegError, match=r"1 of 4 runs failed: \+ D2S seed 0 .*d2s/seed0/train\.log"):
        ablation(synth_root, 2, out, base=str(cfg_path), seeds=1, device="cpu", progress=False, jobs=2)
    assert all((out / row / "seed0" / "summary.json").is_file() for row in ("fpn_baseline", "csr", "csr_d2s"))


def test_rows_limit_the_sweep_to_the_named_rows(synth_root, tmp_path):
    from csrseg.errors import CsrsegError

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    out = tmp_path / "sweep"
    text = ablation(synth_root, 2, out, base=str(cfg_path), seeds=1, device="cpu", progress=False,
                        rows=["fpn_baseline", "csr_d2s"])
    assert [l.split(" | ")[0] for l in text.splitlines() if l.startswith("| ") and "|---" not in l][:3] == [
        "| variant", "| FPN baseline", "| CSR + D2S"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["csr_d2s", "fpn_baseline"]
    with pytest.raises(CsrsegError, match="--rows csr_256: Table 2 .* has the rows fpn_baseline, csr, d2s, csr_d2s"):
        ablation(synth_root, 2, out, base=str(cfg_path), seeds=1, device="cpu", rows=["csr_256"])


def test_a_missing_dataset_is_named_before_any_run_folder_is_written(tmp_path):
    from csrseg.errors import CsrsegError

    with pytest.raises(CsrsegError, match="nope: dataset folder not found"):
        ablation(tmp_path / "nope", 2, tmp_path / "sweep", base="demo")
    assert not (tmp_path / "sweep").exists()


def test_cpu_recipe_is_the_network_and_schedule_the_issue_measured():
    from csrseg.config.presets import RECIPES

    # the CPU A/B of the paper's network as first measured (before the fusion rows' head settings): the demo
    # preset with K-Net's head, 64 wide, 128 px
    cpu = load_config("paper", [*RECIPES["cpu"], "model.head.branch_convs=0", "model.head.position=none"])
    measured = load_config("demo", ["model.head.type=knet", "model.head.loss.mask_focal_alpha=0.25",
                                    "model.head.postprocess.mask_thr=0.4", "model.backbone.depth=18",
                                    "model.neck.channels=64", "model.neck.csr_channels=64", "model.head.ffn_channels=256",
                                    "input.short_side=128", "input.max_size=128", "train.workers=0"])
    assert cpu.model == dataclasses.replace(measured.model, num_classes=cpu.model.num_classes)
    assert cpu.input == measured.input
    assert (cpu.train.epochs, cpu.train.milestones, cpu.train.eval_interval, cpu.train.precision) == (12, (8, 11), 4, "fp32")
    assert dataclasses.replace(cpu.train, epochs=18, milestones=(12, 16), eval_interval=3, precision="auto") == measured.train


def test_the_cpu_recipe_gives_the_solov2_rows_the_same_network_scale_and_schedule():
    from csrseg.config.presets import RECIPES, recipe_overrides
    from csrseg.research.ablate import Sweep

    solo = load_config("paper-solov2", recipe_overrides("cpu", "solov2"))
    knet = load_config("paper", RECIPES["cpu"])
    assert solo.model.head.type == "solov2" and (solo.model.head.feat_channels, solo.model.head.kernel_dim) == (64, 64)
    assert (solo.model.backbone, solo.model.neck, solo.input, solo.train) == (knet.model.backbone, knet.model.neck,
                                                                               knet.input, knet.train)
    assert Sweep(2, base="paper-solov2", recipe="cpu").base_config() == solo  # the sweep picks the head's settings
    assert recipe_overrides("cpu", "knet") == RECIPES["cpu"] and recipe_overrides("paper", "solov2") == ()
    with pytest.raises(ConfigError, match="--recipe cpu sizes the knet and solov2 heads, not mystery"):
        recipe_overrides("cpu", "mystery")


def test_recipe_choices_of_the_cli_are_the_recipes():
    from csrseg.cli.parser import build_parser
    from csrseg.config.presets import RECIPES

    parser = build_parser()
    ablate = parser._subparsers._group_actions[0].choices["ablate"]
    recipe = next(a for a in ablate._actions if a.dest == "recipe")
    assert tuple(recipe.choices) == tuple(RECIPES)


def test_only_the_cpu_recipe_makes_its_own_data(tmp_path, monkeypatch):
    from csrseg.errors import CsrsegError
    from csrseg.research import ablate

    with pytest.raises(CsrsegError, match="--data is needed with --recipe paper"):
        ablation(None, 2, tmp_path / "sweep")
    made = []

    def fake(out, num_images, seed, val_fraction):
        made.append((out, num_images, seed, val_fraction))
        (out / "annotations").mkdir(parents=True)
        (out / "annotations" / "instances_val.json").write_text("{}")

    monkeypatch.setattr("csrseg.data.synth.make_synthetic_dataset", fake)
    assert ablate.recipe_data("cpu", tmp_path / "s") == tmp_path / "s" / "data"
    assert ablate.recipe_data("cpu", tmp_path / "s") == tmp_path / "s" / "data"  # made once, then found
    assert made == [(tmp_path / "s" / "data", 1000, 0, 0.2)]


def _start_sweep(cfg_path, data, out):
    """``csrseg ablate --jobs 2`` on Table 2 in a process of its own (signals go to it alone)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "csrseg.cli", "ablate", "--table", "2", "--config", str(cfg_path), "--data", str(data),
           "--out", str(out), "--device", "cpu", "--jobs", "2", "--seeds", "1", "--set", "train.workers=0"]
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs_training(out, rows=("fpn_baseline", "csr")):
    from tests.conftest import train_rows

    return all(train_rows(out / row / "seed0") >= 1 for row in rows)


def _long_tiny_config(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    # far more steps than the test waits for: the runs are in progress when the signal comes
    save_config(tiny_config(epochs=1000, max_iters=100000, batch_size=2, eval_interval=1000), cfg_path)
    return cfg_path


@pytest.mark.slow
def test_sigterm_stops_a_parallel_sweep_with_every_run_in_progress_checkpointed(synth_root, tmp_path):
    """`timeout` and `kill` signal the sweep alone: it asks each child once to stop, each writes last.pt
    after its step, no new run starts, and the sweep exits 143 saying what to rerun."""
    import signal

    from csrseg.engine.checkpoint import load_checkpoint
    from tests.conftest import train_rows, wait_for

    out = tmp_path / "sweep"
    proc = _start_sweep(_long_tiny_config(tmp_path), synth_root, out)
    assert wait_for(lambda: _runs_training(out), proc), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and "the sweep stopped; 2 runs in progress stopped" in err, err[-3000:]
    assert "2 runs not started" in err and "Rerun the same command" in err
    assert "stopping the 2 runs in progress" in stdout
    for row in ("fpn_baseline", "csr"):
        run = out / row / "seed0"
        stopped = load_checkpoint(run / "last.pt")
        # a row every 10 steps (the default log interval): no step was begun after the one that logged last
        assert not stopped["finished"] and stopped["iteration"] // 10 == train_rows(run) >= 1
        assert "stopped: SIGTERM: training stopped after iteration" in (run / "train.log").read_text()
    assert not (out / "d2s").exists() and not (out / "csr_d2s").exists()


@pytest.mark.slow
def test_children_of_a_killed_sweep_stop_on_their_own(synth_root, tmp_path):
    """A sweep killed outright (SIGKILL, OOM killer) cannot ask: each child sees its parent gone and
    stops as on SIGTERM, with last.pt written, instead of training on unwatched."""
    import signal
    import time

    from csrseg.engine.checkpoint import load_checkpoint
    from tests.conftest import wait_for

    out = tmp_path / "sweep"
    proc = _start_sweep(_long_tiny_config(tmp_path), synth_root, out)
    assert wait_for(lambda: _runs_training(out), proc), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    logs = [out / row / "seed0" / "train.log" for row in ("fpn_baseline", "csr")]
    deadline = time.monotonic() + 120
    while not all("stopped: SIGTERM" in log.read_text() for log in logs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for log in logs:
        assert "stopped: SIGTERM: training stopped after iteration" in log.read_text(), log.read_text()[-3000:]
        assert not load_checkpoint(log.parent / "last.pt")["finished"]
