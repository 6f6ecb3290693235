"""W&B and MLflow loggers, offline: they get the rows of log.jsonl, and bad names are one line before the run."""

import importlib.machinery
import importlib.util
import json
import struct
import sys
import types

import pytest

from csrseg.api import train
from csrseg.cli import main
from csrseg.engine.loggers import parse_loggers
from csrseg.engine.plots import read_log
from csrseg.engine.row_logger import scalars
from csrseg.errors import CsrsegError
from tests.conftest import one_line_error, tiny_config

needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason="wandb is not installed (pip install 'csrseg[wandb]')")
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow is not installed (pip install 'csrseg[mlflow]')")


def _logged(run_dir):
    """The (step, tag) -> value the loggers should have got: every numeric value of log.jsonl's rows."""
    expected = {}
    for row in read_log(run_dir / "log.jsonl"):
        found = scalars(row)
        if found:
            expected |= {(found[0], tag): value for tag, value in found[1].items()}
    return expected


def test_an_unknown_logger_is_one_line_before_the_run_starts(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(synth_root), "--out", str(run), "--logger", "tensorboard,neptune"]) == 2
    one_line_error(capsys, "--logger neptune", "unknown", "wandb", "mlflow")
    assert not run.exists()


@pytest.mark.parametrize("name", ["wandb", "mlflow", "tensorboard"])
def test_a_logger_without_its_package_names_the_extra(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # find_spec then finds nothing: as if not installed
    with pytest.raises(CsrsegError, match=rf"needs the {name} package: pip install 'csrseg\[{name}\]'"):
        parse_loggers(name)


def test_names_are_read_comma_separated_and_once(monkeypatch):
    installed = types.ModuleType("tensorboard")
    installed.__spec__ = importlib.machinery.ModuleSpec("tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", installed)  # whether or not it is, here
    assert parse_loggers(" TensorBoard ,tensorboard,") == ("tensorboard",)
    assert parse_loggers(None) == () and parse_loggers([]) == ()


@needs_mlflow
def test_mlflow_gets_every_row_and_a_resumed_run_goes_on_in_the_same_mlflow_run(synth_root, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3 refuses a plain folder store unless told to allow it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    run_dir = tmp_path / "run"
    train(synth_root, config=tiny_config(max_iters=1), out=run_dir, device="cpu", progress=False, log_interval=1,
          loggers="mlflow")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "run" and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    assert json.loads((run_dir / "loggers.json").read_text()) == {"mlflow": run_id}
    assert runs[0].data.params["train.max_iters"] == "1"

    train(resume=run_dir, overrides=["train.max_iters=2"], device="cpu", progress=False, log_interval=1,
          loggers="mlflow")
    assert len(client.search_runs([runs[0].info.experiment_id])) == 1  # the same run, not a second one
    expected = _logged(run_dir)
    assert {step for step, tag in expected if tag == "train/loss"} == {1, 2}
    assert any(tag == "eval/AP" for _, tag in expected)
    for tag in {tag for _, tag in expected}:
        history = {m.step: m.value for m in client.get_metric_history(run_id, tag)}
        assert history == pytest.approx({s: v for (s, t), v in expected.items() if t == tag}), tag


def _wandb_records(path):
    """The protobuf records of a .wandb file: a 7-byte file header, then LevelDB-log blocks of 32 KiB whose
    records (crc32c 4, length 2, type 1: full/first/middle/last) carry one serialized Record each."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in the block for a header: padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # full or last: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@needs_wandb
def test_wandb_offline_run_holds_every_row(synth_root, tmp_path, monkeypatch):
    for var, where in (("WANDB_DIR", "wandb_dir"), ("WANDB_CONFIG_DIR", "wandb_config"),
                       ("WANDB_CACHE_DIR", "wandb_cache"), ("WANDB_DATA_DIR", "wandb_data")):
        (tmp_path / where).mkdir()
        monkeypatch.setenv(var, str(tmp_path / where))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    train(synth_root, config=tiny_config(max_iters=1), out=run_dir, device="cpu", progress=False, log_interval=1,
          loggers=["wandb"])
    run_id = json.loads((run_dir / "loggers.json").read_text())["wandb"]
    files = list((tmp_path / "wandb_dir").glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1, list((tmp_path / "wandb_dir").rglob("*"))
    got = {}
    for record in _wandb_records(files[0]):
        if record.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            got |= {(items["iter"], tag): value for tag, value in items.items() if "/" in tag}
    expected = _logged(run_dir)
    assert any(tag == "eval/AP" for _, tag in expected) and (1, "train/loss") in expected
    assert got == pytest.approx(expected)


@needs_mlflow
def test_a_run_that_fails_ends_its_mlflow_run_as_failed(synth_root, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from csrseg.engine.trainer import Hook

    class Crash(Hook):
        def after_step(self, trainer) -> None:
            raise RuntimeError("the machine caught fire")

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    with pytest.raises(RuntimeError, match="caught fire"):
        train(synth_root, config=tiny_config(max_iters=2), out=tmp_path / "run", device="cpu", progress=False,
              log_interval=1, loggers="mlflow", hooks=[Crash()])
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED"  # not left RUNNING for ever
