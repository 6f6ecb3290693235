"""Preemption: SIGTERM (SLURM, Kubernetes, spot instances) and SIGINT (Ctrl-C) stop training cleanly.

:func:`preemptible` wraps the training function: while it runs, the first SIGTERM or SIGINT
only sets a flag, and the trainer, after the step in progress, asks :func:`stop_requested`,
writes ``last.pt`` at that iteration and raises :class:`TrainingInterrupted` (the CLI exits
with 128 + the signal number: 143 for SIGTERM, 130 for SIGINT, as shells report a process
killed by that signal). The first signal puts the previous handler back, so a second Ctrl-C
stops at once (``KeyboardInterrupt``) and a second SIGTERM kills. Handlers are installed only
from the main thread (Python allows no other) and always restored afterwards.

Under ``torchrun`` each rank may get the signal at a different step, or only one rank may get
it: :func:`stop_requested` takes the maximum of the flag over all ranks every step, so every
rank stops after the same step and rank 0 writes the checkpoint.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from csrseg.errors import CsrsegError

if TYPE_CHECKING:
    import torch

SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The signal received (0: none). Module state, because signal handlers are process state too.
_received = 0

F = TypeVar("F", bound=Callable[..., Any])


class TrainingInterrupted(CsrsegError):
    """Training stopped by SIGTERM/SIGINT after writing ``last.pt``; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def _handle(signum: int, frame: Any, previous: dict[int, Any]) -> None:
    global _received
    _received = _received or signum
    # a second signal of either kind acts at once: the handlers that were there before come back
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def preemptible(func: F) -> F:
    """Run ``func`` with SIGTERM/SIGINT turned into a stop request (see the module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _received
        if threading.current_thread() is not threading.main_thread():
            return func(*args, **kwargs)
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        _received = 0
        handler = functools.partial(_handle, previous=previous)
        try:
            for sig in SIGNALS:
                signal.signal(sig, handler)
            return func(*args, **kwargs)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            _received = 0

    return wrapper  # type: ignore[return-value]


def stop_requested(device: "torch.device | None" = None) -> int:
    """The signal that asked training to stop (0: none), agreed over all ranks under DDP.

    Every rank must call this at the same points (once per step): it is a collective.
    """
    import torch  # here, not at the top: the CLI imports this module and must start fast
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return _received
    flag = torch.tensor([_received], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def ignore_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader workers: Ctrl-C and SIGTERM reach the whole process group,
    and a worker that dies of them makes the loader raise before the main process can save.
    Workers still exit with the main process (PyTorch watches the parent)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def worker_batches(loader: Iterable) -> Iterator[Iterator]:
    """``loader``'s iterator, for a ``with`` block; its worker processes end with the block, when an
    exception cuts the loop short too.

    Workers that run :func:`ignore_in_worker` do not end on SIGTERM, and at interpreter exit
    ``multiprocessing`` ends daemon children with SIGTERM and then waits for them: a worker left running
    by a loop that raised (its iterator kept alive by the traceback) would make the process hang at exit.
    """
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        # the call torch's own ``__del__`` makes; an iterator without workers has none
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
