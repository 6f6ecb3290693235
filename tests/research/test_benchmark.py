import torch

from csrseg.research.benchmark import Row, PeakMemory, format_rows, median_time


def test_table_ratios_are_to_the_reference_of_the_same_size():
    rows = [
        Row("ref", (800, 1333), 2.0, 44.0, 270.0, 100.0),
        Row("ours", (800, 1333), 1.0, 33.0, 300.0, 80.0),
        Row("ours", (640, 640), 0.5, 33.0, 120.0, 50.0),
    ]
    table = format_rows(rows, "ref", peaks=dict(fp32=600.0, int8=2400.0), device_name="test cpu")
    lines = [l for l in table.splitlines() if l.startswith("| ours")]
    assert "| 1333×800 | 1.000 | 2.00 |" in lines[0]
    assert "| 640×640 | 2.000 | - |" in lines[1]  # no reference at that size
    assert lines[0].endswith("| 50% of fp32 |")  # 300 GFLOPs x 1 image/s / 600 GFLOP/s


def test_median_time_ignores_warmup_and_takes_the_median():
    calls = []
    durations = iter([0.05, 0.0, 0.02, 0.0, 0.01])

    def fn():
        import time

        calls.append(1)
        time.sleep(next(durations))

    t = median_time(fn, runs=3, warmup=2, device=torch.device("cpu"))
    assert len(calls) == 5 and 0.008 < t < 0.018


def test_peak_memory_sees_a_large_temporary_allocation():
    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(64 * 2**20)  # 256 MB, touched
        del block
    assert 200 < mem.mb < 400


def test_necks_alone_are_timed_for_knet_and_paper():
    from csrseg.research.benchmark import benchmark_necks

    times = benchmark_necks(("knet", "paper"), (64, 96), torch.device("cpu"), runs=1, warmup=0)
    assert set(times) == {"knet", "paper"} and all(t > 0 for t in times.values())


def test_table_has_an_ap_column_when_a_row_has_an_ap_or_a_note():
    rows = [
        Row("ref", (800, 1333), 2.0, 44.0, 270.0, 100.0),
        Row("int8", (800, 1333), 0.5, 33.0, 300.0, 80.0, note="random weights: speed only", precision="int8"),
        Row("ckpt int8", (800, 1333), 0.5, 33.0, float("nan"), 80.0, ap=31.25),
    ]
    lines = format_rows(rows, "ref", peaks=dict(fp32=600.0, int8=2400.0), device_name="test cpu").splitlines()
    assert lines[2].endswith("| mask AP |")
    assert lines[4].startswith("| ref |") and lines[4].endswith("| - |")
    assert lines[5].endswith("| random weights: speed only |") and "| 4.00 |" in lines[5]
    assert "| 25% of int8 |" in lines[5]  # its own precision's peak: 300 GOPs x 2 images/s / 2400 GOP/s
    assert lines[6].endswith("| - | 31.2 |")  # no FLOPs counted for a checkpoint row: no share either


def test_benchmark_weights_without_data_is_a_one_line_error(capsys):
    from csrseg.cli import main

    assert main(["benchmark", "--weights", "w.pt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--weights and --data go together" in err


def test_interleaved_times_take_turns_and_skip_the_warmup_rounds():
    import torch

    from csrseg.research.benchmark import interleaved_times

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = interleaved_times(fns, rounds=3, device=torch.device("cpu"), warmup_rounds=2)
    assert calls == ["a", "b"] * 5  # turns within every round, warm-up rounds included
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3}


def test_entries_warm_up_one_at_a_time_then_take_turns():
    import torch

    from csrseg.research.benchmark import Entry, time_entries

    calls = []
    cpu = torch.device("cpu")
    entries = [Entry(name, (lambda name=name: calls.append(name)), 1.5, 10.0, cpu, ap=ap, note=note)
               for name, ap, note in (("a", 30.0, ""), ("b", None, "speed only"))]
    rows = time_entries(entries, (8, 12), runs=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-ups (peak memory), then 3 rounds of turns
    assert [(r.name, r.size, r.params, r.gflops, r.ap, r.note) for r in rows] == [
        ("a", (8, 12), 1.5, 10.0, 30.0, ""), ("b", (8, 12), 1.5, 10.0, None, "speed only")]
    assert all(r.seconds >= 0 and r.peak_mb >= 0 for r in rows)


def test_entries_with_one_name_are_refused():
    import pytest
    import torch

    from csrseg.research.benchmark import Entry, time_entries

    cpu = torch.device("cpu")
    with pytest.raises(AssertionError, match="share a name"):
        time_entries([Entry("a", lambda: None, 1, 1, cpu), Entry("a", lambda: None, 1, 1, cpu)], (8, 8), 1, 0)


def test_benchmark_table_has_every_model_against_mask_rcnn():
    from csrseg.research.benchmark import MASK_RCNN, run_benchmark

    text = run_benchmark([(64, 96)], runs=2, warmup=1, fast_paths=False)
    rows = {l.split(" | ")[0][2:]: l.split(" | ") for l in text.splitlines() if l.startswith("| ") and "96×64" in l}
    assert list(rows) == [MASK_RCNN, "knet (K-Net, Table II row 1)", "paper (CSR + D2S)"]
    assert rows[MASK_RCNN][3] == "1.00"  # the reference against itself
    ours = rows["paper (CSR + D2S)"]
    # × Mask R-CNN = the fps ratio, up to the rounding of the three printed figures (fps to 3 decimals,
    # the ratio to 2): a slow machine's 0.281 img/s alone moves the ratio by 0.2%
    fps, reference = float(ours[2]), float(rows[MASK_RCNN][2])
    ratio = fps / reference
    assert abs(float(ours[3]) - ratio) <= 0.005 + ratio * (0.0005 / fps + 0.0005 / reference) + 1e-9
    assert "median of 2 rounds in which the entries of one input size took turns" in text
    assert "Neck alone at 96×64" in text


def test_no_bf16_peak_is_timed_where_bf16_is_emulated(monkeypatch):
    import csrseg.research.benchmark as bench

    timed = []
    monkeypatch.setattr(bench, "matmul_gflops", lambda device, precision="fp32": timed.append(precision) or 1.0)
    monkeypatch.setattr(bench, "native_bf16", lambda: False)
    assert set(bench.matmul_peaks(torch.device("cpu"))) == {"fp32", "int8"} and "bf16" not in timed
    monkeypatch.setattr(bench, "native_bf16", lambda: True)
    assert set(bench.matmul_peaks(torch.device("cpu"))) == {"fp32", "bf16", "int8"}
