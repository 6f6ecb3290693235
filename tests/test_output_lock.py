"""A run folder has one owner: two runs started into one folder a moment apart do not share it."""

import json
import os
import subprocess
import sys
import time

import pytest

from csrseg.outputs import LOCK_NAME, OutputLockedError, lock_path, output_lock
from tests.conftest import one_line_error, tiny_config, train_rows, wait_for


def test_a_second_run_into_a_running_runs_folder_is_refused_naming_its_pid(synth_root, tmp_path, capsys):
    """Two real processes: the first trains, the second (a double click) is refused in one line, and
    the first finishes with the folder to itself."""
    from csrseg.cli import main
    from csrseg.config import save_config

    cfg_path = tmp_path / "tiny.yaml"
    save_config(tiny_config(epochs=1, batch_size=2, max_iters=6), cfg_path)
    run = tmp_path / "run"
    argv = ["train", "--config", str(cfg_path), "--data", str(synth_root), "--out", str(run), "--device", "cpu",
            "--no-val", "--log-interval", "1"]
    first = subprocess.Popen([sys.executable, "-m", "csrseg.cli", *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert wait_for(lambda: (run / LOCK_NAME).is_file(), first, timeout=120)
        assert main(argv) == 2
        one_line_error(capsys, str(run), "in use by csrseg train", f"pid {first.pid}")
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert train_rows(run) == 6 and not (run / LOCK_NAME).exists()  # one run's rows, and the lock gone with it


def test_a_stale_lock_is_reported_and_taken(tmp_path, caplog):
    import logging

    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    lock_path(folder).write_text(json.dumps(dict(pid=dead.pid, host=os.uname().nodename, started="then", what="csrseg train")))
    with caplog.at_level(logging.WARNING, logger="csrseg"), output_lock(folder, "csrseg predict") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"the lock of csrseg train (pid {dead.pid}), which is no longer running, is taken over" in caplog.text
    assert not lock_path(folder).exists()


def test_a_lock_held_by_another_host_is_refused_with_how_to_clear_it(tmp_path):
    out = tmp_path / "model.onnx"
    lock_path(out, folder=False).write_text(json.dumps(dict(pid=1, host="elsewhere", started="now", what="csrseg export")))
    with pytest.raises(OutputLockedError, match=r"in use by csrseg export \(pid 1 on elsewhere.*delete .*\.model\.onnx\.lock"):
        with output_lock(out, "csrseg export", folder=False):
            pass


def test_the_lock_goes_when_the_work_fails(tmp_path):
    with pytest.raises(RuntimeError), output_lock(tmp_path / "run", "csrseg train"):
        raise RuntimeError("disk went away")
    assert not lock_path(tmp_path / "run").exists()
    started = time.time()
    with output_lock(tmp_path / "run", "csrseg train"):  # free again at once
        pass
    assert time.time() - started < 1
