import json

import pytest

from csrseg.ablate import VARIANTS, find_finished_run, run_ablation, table_variants, variant_config
from csrseg.config import load_config, save_config
from tests.conftest import tiny_config


def test_variants_switch_the_neck_like_the_tables():
    base = load_config("paper-solov2")
    necks = {n: variant_config(base, v, 0, None).model.neck for n, v in table_variants(2, base).items()}
    assert [(n.reweight, n.upsample) for n in necks.values()] == [(False, "nearest"), (True, "nearest"), (False, "d2s"), (True, "d2s")]
    widths = [variant_config(base, v, 0, None).model.neck.csr_channels for v in VARIANTS[3].values()]
    assert widths == [128, 256, 512, 1024]


@pytest.mark.parametrize("base_name", ["paper", "knet"])
def test_knet_head_table2_starts_from_knet_itself(base_name):
    base = load_config(base_name)
    models = {n: variant_config(base, v, 0, None).model for n, v in table_variants(2, base).items()}
    assert [m.neck.type for m in models.values()] == ["fpn_semantic", "fusion", "fusion", "fusion"]
    assert [(m.neck.reweight, m.neck.upsample) for m in list(models.values())[1:]] == [(True, "nearest"), (False, "d2s"), (True, "d2s")]
    assert {m.head.type for m in models.values()} == {"knet"}
    assert {variant_config(base, v, 0, None).model.neck.type for v in table_variants(3, base).values()} == {"fusion"}


def test_shorter_schedule_scales_the_milestones():
    cfg = variant_config(load_config("paper"), [], seed=4, epochs=6)
    assert cfg.train.epochs == 6 and cfg.train.milestones == (4, 6) and cfg.train.seed == 4


def test_sweep_writes_table_and_resumes_without_redoing(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    out = tmp_path / "sweep"
    text = run_ablation(synth_root, 2, out, base=str(cfg_path), seeds=2, device="cpu", progress=False)
    lines = [l for l in text.splitlines() if l.startswith("| ") and "±" in l]
    assert [l.split(" | ")[0] for l in lines] == ["| FPN baseline", "| + CSR", "| + D2S", "| CSR + D2S"]
    assert (out / "table2.md").read_text().strip() == text.strip() and (out / "table2.png").is_file()
    seed_aps = [json.loads((out / "csr" / f"seed{k}" / "summary.json").read_text())["metrics"]["AP"] for k in (0, 1)]
    assert f"+ CSR {seed_aps[0]:.1f} / {seed_aps[1]:.1f};" in text  # the per-seed line, in seed order
    assert "1 training iterations per run" in text  # max_iters=1: the budget is stated with the table
    kept = out / "csr" / "seed0" / "summary.json"
    redo = out / "csr_d2s" / "seed1" / "summary.json"
    kept_mtime = kept.stat().st_mtime_ns
    redo.unlink()
    run_ablation(synth_root, 2, out, base=str(cfg_path), seeds=2, device="cpu", progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime and redo.is_file()


def test_unknown_table_is_refused(tmp_path):
    from csrseg.errors import CsrsegError

    with pytest.raises(CsrsegError):
        run_ablation(tmp_path, 4, tmp_path / "x")


def test_table3_reuses_the_identical_table2_run(synth_root, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, max_iters=1, batch_size=4), cfg_path)
    common = dict(base=str(cfg_path), seeds=1, device="cpu", progress=False, overrides=["model.neck.csr_channels=128"])
    sweeps = tmp_path / "sweeps"
    run_ablation(synth_root, 2, sweeps / "table2", **common)
    text = run_ablation(synth_root, 3, sweeps / "table3", **common)
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
