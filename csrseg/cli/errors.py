"""Errors as the user reads them: one line, ``csrseg: error: ...``, for what the user can fix."""

from __future__ import annotations

import re


def error_line(exc: Exception) -> str:
    """The one line of an error of ours. Raised in a DataLoader worker, it reaches the main process
    wrapped by torch (``Caught DatasetError in DataLoader worker process 0.`` and the worker's
    traceback, its own message last): the message it carried is what the user needs."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = re.sub(r"^[\w.]+(Error|Exception|Interrupted): ", "", last)
    return " ".join(text.split("\n"))


def os_error_text(exc: OSError) -> str:
    """One line for a refused file operation: ``PATH: reason`` (``A -> B: reason`` for a rename)."""
    if exc.filename is None:
        return str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename2 is None:
        return f"{exc.filename}: a file is in the way where a folder was needed (an --out or OUT that names a file?)"
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
    return f"{where}: {exc.strerror or exc}"


def _size_text(size: float) -> str:
    """Bytes as the largest binary unit that keeps the number at least 1: ``2.5 GiB``, ``20.0 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def out_of_memory_text(exc: BaseException) -> str | None:
    """One line for an allocation the machine refused (CPU or CUDA), or ``None`` for any other error."""
    import re

    message = str(exc).lower()
    wanted = ""
    if not isinstance(exc, MemoryError):
        if "out of memory" not in message and "can't allocate memory" not in message and "not enough memory" not in message:
            return None
        size = re.search(r"allocate (\d+(?:\.\d+)?) ?(bytes|[kmgt]ib)", message)
        if size:
            scale = {"bytes": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}[size.group(2)]
            wanted = f" (one tensor of {_size_text(float(size.group(1)) * scale)} was asked for)"
    return (f"out of memory{wanted}: the model or batch is too large for this machine; lower train.batch_size or "
            "--batch, the input size (input.short_side / input.max_size) or the widths given with --set. Files "
            "already written are kept (a training run that saved a last.pt goes on with --resume)")
