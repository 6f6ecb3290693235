"""Ctrl-C as the end of an endless source: a stream or a watched folder stops after the frame in hand.

Inside :func:`stop_requests`, the first SIGINT (Ctrl-C) or SIGTERM only raises a flag; the loop
reading frames asks it before each frame, ends, and the run's outputs are finished as at any end
(the overlay clip closed and named, ``predictions.json`` complete). The first signal puts the
previous handlers back, so a second Ctrl-C interrupts at once (``KeyboardInterrupt``). Python lets
only the main thread set handlers: from another thread nothing is installed and the flag stays down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_requests() -> Iterator[Callable[[], str | None]]:
    """Yields ``asked()``: the name of the signal that asked to stop (``"SIGINT"``), else ``None``."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handle(signum: int, frame: Any) -> None:
        received.append(signum)
        for sig, handler in previous.items():  # the next one acts at once
            signal.signal(sig, handler)

    try:
        for sig in SIGNALS:
            signal.signal(sig, handle)
        yield lambda: signal.Signals(received[0]).name if received else None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
