"""Preemption: SIGTERM/SIGINT stop training after the current step with last.pt written;
resuming reaches the weights of an uninterrupted run; a second signal acts at once."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from csrseg.config import save_config
from csrseg.engine import preempt
from csrseg.engine.checkpoint import load_checkpoint
from csrseg.api import train
from benchmarks.loopback import free_port
from tests.conftest import tiny_config
from tests.conftest import train_rows, wait_for


def _handled(condition, seconds: float = 2.0) -> bool:
    """Poll ``condition``. A signal sent with os.kill may land on another thread of this process
    (earlier tests leave thread pools behind); Python then runs its handler in the main thread at
    a later check, not inside os.kill."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_first_signal_only_asks_to_stop_and_brings_back_the_old_handlers():
    before = {sig: signal.getsignal(sig) for sig in preempt.SIGNALS}

    @preempt.preemptible
    def work():
        assert preempt.stop_requested() == 0
        os.kill(os.getpid(), signal.SIGTERM)  # would kill the test process without the handler
        assert _handled(lambda: preempt.stop_requested() == signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]  # a second SIGTERM kills
        return "done"

    assert work() == "done"
    assert {sig: signal.getsignal(sig) for sig in preempt.SIGNALS} == before
    assert preempt.stop_requested() == 0


def test_second_ctrl_c_interrupts_at_once_and_handlers_are_restored_after_an_error(monkeypatch):
    # Python's own Ctrl-C handler as the one to come back: some earlier test in the full suite leaves
    # another SIGINT handler installed (seen in CI), and then a second Ctrl-C could not raise here
    monkeypatch.setattr(signal, "_csrseg_prev", signal.signal(signal.SIGINT, signal.default_int_handler), raising=False)
    before = {sig: signal.getsignal(sig) for sig in preempt.SIGNALS}

    @preempt.preemptible
    def work():
        os.kill(os.getpid(), signal.SIGINT)
        assert _handled(lambda: preempt.stop_requested() == signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the default handler is back: KeyboardInterrupt now
        _handled(lambda: False)  # the KeyboardInterrupt comes in here
        raise AssertionError("a second Ctrl-C did not interrupt")

    with pytest.raises(KeyboardInterrupt):
        work()
    assert {sig: signal.getsignal(sig) for sig in preempt.SIGNALS} == before
    signal.signal(signal.SIGINT, signal._csrseg_prev)  # what the suite had before this test


def test_handlers_are_left_alone_outside_the_main_thread():
    seen = {}

    @preempt.preemptible
    def work():
        seen["handler"] = signal.getsignal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["handler"] is before


def _agree(rank, port):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        assert preempt.stop_requested() == 0  # nobody signalled: nobody stops
        preempt._received = signal.SIGTERM if rank == 1 else 0  # only rank 1 was signalled
        agreed = preempt.stop_requested()
        assert agreed == signal.SIGTERM, f"rank {rank} would go on ({agreed})"  # raised in mp.spawn's parent
    finally:
        dist.destroy_process_group()


def test_ranks_agree_to_stop_when_only_one_was_signalled():
    import torch.multiprocessing as mp

    mp.spawn(_agree, args=(free_port(),), nprocs=2, join=True)


def _start(args, root, env_extra=None):
    cmd = [sys.executable, "-m", "csrseg.cli", "train", "--data", str(root), "--device", "cpu", "--log-interval", "1",
           *args]
    env = dict(os.environ, PYTHONPATH=os.getcwd(), **(env_extra or {}))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.numerics
def test_sigterm_writes_last_at_that_iteration_and_resume_matches_an_uninterrupted_run(synth_root, tmp_path):
    cfg = tiny_config(epochs=1, batch_size=2, warmup_iters=2, lr=1e-3)  # 6 iterations
    cfg_path = tmp_path / "tiny.yaml"
    save_config(cfg, cfg_path)
    run = tmp_path / "run"

    # no --checkpoint-interval: the only mid-epoch last.pt is the one written on the signal
    proc = _start(["--config", str(cfg_path), "--out", str(run), "--no-val"], synth_root)
    assert wait_for(lambda: train_rows(run) >= 2, proc), proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and f"csrseg train --resume {run}" in err
    stopped = load_checkpoint(run / "last.pt")
    assert not stopped["finished"] and 2 <= stopped["iteration"] < 6
    assert train_rows(run) == stopped["iteration"]  # the step in progress was finished, no later one begun
    assert f"after iteration {stopped['iteration']}" in err

    proc = _start(["--resume", str(run), "--no-val"], synth_root)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["finished"] and resumed["iteration"] == 6

    train(synth_root, config=cfg, out=tmp_path / "straight", device="cpu", progress=False, val_split=None)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    for key, value in straight.items():
        torch.testing.assert_close(resumed["model"][key].float(), value.float(), atol=1e-5, rtol=1e-4, msg=key)


class _Breaks(torch.utils.data.Dataset):
    """Items 0 and 1, then an error: a loop over it raises while its workers still run."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if index >= 2:
            raise ValueError(f"item {index} is unreadable")
        return index


def _raise_inside_the_block() -> None:
    """A loop over a two-worker loader (workers as the trainer starts them) that raises at item 2."""
    loader = torch.utils.data.DataLoader(_Breaks(), batch_size=1, num_workers=2, worker_init_fn=preempt.ignore_in_worker)
    with preempt.worker_batches(loader) as batches:
        for _ in batches:
            pass


def test_workers_end_with_the_block_when_the_loop_raises():
    """Workers ignore SIGTERM (ignore_in_worker), so nothing at exit would end them: the block must."""
    import multiprocessing

    with pytest.raises(ValueError, match="unreadable") as raised:
        _raise_inside_the_block()
    assert raised.value.__traceback__ is not None  # the traceback, and the loop's frames, are still held
    assert multiprocessing.active_children() == []


_EXITS = """
from tests.engine.test_preempt import _raise_inside_the_block

try:
    _raise_inside_the_block()
except ValueError as exc:
    kept = exc  # held to the end, as a test runner or a logger may hold it
"""


def test_a_process_whose_loader_raised_exits():
    """Without the block, multiprocessing's exit hook sends the ignored SIGTERM and waits for ever."""
    done = subprocess.run([sys.executable, "-c", _EXITS], env=dict(os.environ, PYTHONPATH=os.getcwd()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
