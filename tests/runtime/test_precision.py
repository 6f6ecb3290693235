"""One precision setting for train, predict, eval and benchmark; ``auto`` decided by measuring."""

import json

import pytest
import torch

from csrseg.config import ConfigError, load_config
from csrseg.runtime import precision as prec
from csrseg.runtime.precision import ProbeCache, probe_times, resolve


def test_a_named_precision_is_taken_as_asked_on_any_device():
    for name in ("fp32", "bf16", "fp16"):
        assert resolve(name, "cpu").name == name and resolve(name, "cpu").reason == "as asked"
    assert resolve("bf16", "cpu").dtype == torch.bfloat16 and not resolve("fp16", "cpu").loss_scaling("cpu")
    assert resolve("fp16", "cuda").loss_scaling("cuda") and not resolve("bf16", "cuda").loss_scaling("cuda")
    with pytest.raises(ConfigError, match="precision='tf32': choose one of auto, fp32, bf16, fp16"):
        resolve("tf32", "cpu")
    with pytest.raises(ConfigError, match="train.precision must be one of auto, fp32, bf16, fp16, got 'half'"):
        load_config("demo", ["train.precision=half"])


@pytest.mark.parametrize("times,expected", [
    ({"fp32": 1.08, "bf16": 0.52}, "bf16"),  # AMX tiles: bf16 about twice as fast
    ({"fp32": 1.02, "bf16": 1.43}, "fp32"),  # AVX512-BF16 without AMX: bf16 slower
    ({"fp32": 2.5, "bf16": 12.0}, "fp32"),  # no native bf16: emulated
    ({"fp32": 1.0, "bf16": 1.0}, "fp32"),  # a tie: the exact one
])
def test_auto_on_a_cpu_takes_the_faster_measured_precision_and_says_both_times(times, expected, monkeypatch):
    monkeypatch.delenv(prec.AUTO_ENV, raising=False)
    chosen = resolve("auto", "cpu", probe=lambda: times)
    assert chosen.name == expected and dict(chosen.times) == times
    for name, seconds in times.items():
        assert f"{name} {seconds:.3g} s" in chosen.describe()
    assert resolve("auto", "cpu").name == "fp32"  # nothing measured: nothing assumed


def test_the_environment_can_answer_for_the_probe(monkeypatch):
    monkeypatch.setenv(prec.AUTO_ENV, "bf16")
    told = resolve("auto", "cpu", probe=lambda: {"fp32": 1.0, "bf16": 9.0})
    assert told.name == "bf16" and "CSRSEG_AUTO_PRECISION=bf16" in told.reason
    assert resolve("fp32", "cpu").name == "fp32"  # a precision asked for stays as asked
    monkeypatch.setenv(prec.AUTO_ENV, "fp8")
    with pytest.raises(ConfigError, match="CSRSEG_AUTO_PRECISION='fp8': choose fp32 or bf16"):
        resolve("auto", "cpu")


def test_auto_on_cuda_is_bf16_where_the_gpu_computes_it_else_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve("auto", "cuda").name == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    fp16 = resolve("auto", "cuda")
    assert fp16.name == "fp16" and fp16.loss_scaling("cuda")


def test_the_probe_times_each_precision_in_turns_within_its_budget_and_keeps_the_fastest():
    calls = []
    durations = {"fp32": iter([9.0, 1.0, 1.5]), "bf16": iter([7.0, 0.5, 0.75])}  # a burst of load, then steady
    now = [0.0]
    untimed = [4]  # the two warm-up rounds

    def step(name):
        calls.append(name)
        if untimed[0]:
            untimed[0] -= 1
        else:
            now[0] += next(durations[name])

    times = probe_times(step, ("fp32", "bf16"), budget=3.0, clock=lambda: now[0])
    # two warm-up rounds, then turns until the budget (9 + 7 spent in the first round) stops it
    assert calls == ["fp32", "bf16"] * 3 and times == {"fp32": 9.0, "bf16": 7.0}
    calls.clear()
    durations = {"fp32": iter([2.0, 1.0, 1.5]), "bf16": iter([1.0, 0.5, 0.75])}
    times = probe_times(step, ("fp32", "bf16"), budget=100.0, clock=lambda: now[0], warmup=0)
    assert calls == ["fp32", "bf16"] * 3  # at most three timed steps each
    assert times == {"fp32": 1.0, "bf16": 0.5}  # the fastest of each: what a step costs without other load


def test_probe_results_are_cached_per_machine_and_model(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "busy", lambda: False)
    cache = ProbeCache(tmp_path)
    measured = []

    def measure():
        measured.append(1)
        return {"fp32": 1.0, "bf16": 0.5}

    assert cache.times("demo model", measure) == {"fp32": 1.0, "bf16": 0.5}
    assert cache.times("demo model", measure) == {"fp32": 1.0, "bf16": 0.5} and len(measured) == 1
    cache.times("another model", measure)
    assert len(measured) == 2
    monkeypatch.setattr(prec, "machine_key", lambda: "another CPU")  # another machine or torch: measured again
    cache.times("demo model", measure)
    assert len(measured) == 3 and len(json.loads((tmp_path / "precision.json").read_text())) == 3
    monkeypatch.setattr(prec, "busy", lambda: True)  # other work competed while measuring: not kept
    cache.times("a third model", measure)
    cache.times("a third model", measure)
    assert len(measured) == 5 and len(json.loads((tmp_path / "precision.json").read_text())) == 3


def test_a_run_on_a_cpu_with_auto_decides_by_its_own_probe(synth_root, tmp_path, monkeypatch, caplog):
    """The trainer asks the probe with its own model (here made to say bf16 is faster), records the
    decision and the times in log.jsonl and keeps it on resume."""
    import logging

    from csrseg.api import train
    from csrseg.engine import setup
    from csrseg.engine.checkpoint import load_checkpoint
    from csrseg.engine.plots import read_log
    from tests.conftest import tiny_config

    monkeypatch.setenv("CSRSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CSRSEG_AUTO_PRECISION", raising=False)  # measured here, not told
    seen = []

    def fake_probe(step, names=("fp32", "bf16"), **kwargs):
        step("bf16")  # the run's own model can take a step in each precision
        step("fp32")
        seen.append(names)
        return {"fp32": 2.0, "bf16": 1.0}

    monkeypatch.setattr(setup, "probe_times", fake_probe)
    with caplog.at_level(logging.INFO, logger="csrseg"):
        train(synth_root, config=tiny_config(max_iters=2, batch_size=4, precision="auto"), out=tmp_path / "run", device="cpu",
              progress=False, val_split=None)
    assert seen == [("fp32", "bf16")]
    assert "precision: bf16 autocast (auto: measured here, bf16 1 s, fp32 2 s per step)" in caplog.text
    run_row = read_log(tmp_path / "run" / "log.jsonl")[0]
    assert run_row["type"] == "run" and run_row["precision"] == "bf16" and run_row["fp32"] == 2.0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["precision"] == "bf16"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="csrseg"):
        train(out=tmp_path / "run", resume=True, overrides=["train.max_iters=3"], device="cpu", progress=False,
              val_split=None)
    assert seen == [("fp32", "bf16")]  # not measured again: the resumed run keeps its precision
    assert "precision: bf16 autocast (auto: as the run started (bf16))" in caplog.text


def _auto_predictor(monkeypatch, cache, bf16_native=True):
    """A tiny model's predictor with ``--precision auto`` on the CPU (the probe's cache the test's own)."""
    import csrseg.inference.predictor as module
    from csrseg.inference.predictor import Predictor
    from csrseg.models import build_model
    from tests.conftest import tiny_config

    monkeypatch.delenv(prec.AUTO_ENV, raising=False)
    monkeypatch.setattr(module, "native_bf16", lambda: bf16_native)
    monkeypatch.setattr(module, "ProbeCache", lambda: ProbeCache(folder=cache))
    cfg = tiny_config()
    model = build_model(cfg).to(memory_format=torch.channels_last)
    return module, Predictor.for_model(model, cfg, ["a", "b", "c", "d"], [1, 2, 3, 4], "cpu", precision="auto")


@pytest.mark.parametrize("times,expected", [({"fp32": 2.0, "bf16": 1.0}, "bf16"), ({"fp32": 1.0, "bf16": 3.0}, "fp32")])
def test_predict_auto_times_the_first_batch_itself_and_takes_the_faster(times, expected, monkeypatch, caplog, tmp_path):
    module, predictor = _auto_predictor(monkeypatch, tmp_path)
    assert predictor.precision is None  # nothing decided before a batch is seen
    seen = []
    postprocess = predictor.model.postprocess

    def counted(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return postprocess(*args, **kwargs)

    monkeypatch.setattr(predictor.model, "postprocess", counted)

    def probe(step, budget, warmup):  # the probe's own clock replaced by the given times
        for name in times:
            step(name)
        return times

    monkeypatch.setattr(module, "probe_times", probe)
    image = torch.randint(0, 255, (90, 120, 3), dtype=torch.uint8).numpy()
    with caplog.at_level("INFO"):
        predictor.predict(image)
    assert predictor.precision.name == expected and dict(predictor.precision.times) == times
    assert "--precision auto at 128x96" in caplog.text and f"bf16 {times['bf16']:.3g} s" in caplog.text
    # what was timed is run_batch's path: post-processing included, twice (once per candidate), and
    # the batch itself ran once more after the decision
    assert len(seen) == 3


def test_predict_auto_is_cached_per_batch_shape(monkeypatch, tmp_path):
    module, predictor = _auto_predictor(monkeypatch, tmp_path)
    monkeypatch.setattr(prec, "busy", lambda: False)  # times taken on a loaded machine are not kept
    calls = []
    monkeypatch.setattr(module, "probe_times", lambda step, budget, warmup: calls.append(1) or {"fp32": 1.0, "bf16": 2.0})
    small = torch.randint(0, 255, (90, 120, 3), dtype=torch.uint8).numpy()
    predictor.predict(small)
    _, again = _auto_predictor(monkeypatch, tmp_path)
    again.predict(small)  # the same shape on the same machine: the cached times
    _, other = _auto_predictor(monkeypatch, tmp_path)
    other.predict(torch.randint(0, 255, (60, 60, 3), dtype=torch.uint8).numpy())  # another size: measured
    assert len(calls) == 2 and other.precision.name == "fp32"


def test_predict_auto_without_native_bf16_is_fp32_untimed(monkeypatch, tmp_path):
    module, predictor = _auto_predictor(monkeypatch, tmp_path, bf16_native=False)
    monkeypatch.setattr(module, "probe_times", lambda *a, **k: pytest.fail("timed bf16 on a CPU that emulates it"))
    predictor.predict(torch.randint(0, 255, (90, 120, 3), dtype=torch.uint8).numpy())
    assert predictor.precision.name == "fp32" and "does not compute bf16" in predictor.precision.reason
