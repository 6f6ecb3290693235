"""Output folders: never overwrite another run's results by accident, never share one between two runs.

Every verb that writes results (``train``, ``ablate``, ``demo``, ``predict``, ``export``)
asks :func:`check_outputs` first. A folder that already holds results of another run is
refused in one line naming the files, unless the caller continues that run (``--resume``)
or means to replace it (``--exist-ok``). Without ``--out`` the CLI picks a fresh numbered
folder, so this only fires when the user named an occupied one. While a verb writes, it owns its
output through a lock (:func:`output_lock`): two runs started into one folder a moment apart (a
double click, a re-run script) cannot both pass that check and interleave their files.

On the ground floor, beside :mod:`csrseg.errors`: the trainer, the user verbs and the research tools
all write outputs, so the policy is not any one stage's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from csrseg.errors import CsrsegError

logger = logging.getLogger("csrseg")

# What a training run leaves that is worth keeping (config.yaml alone is not: it is rewritten
# at every start, and a run that died before its first checkpoint holds nothing else).
TRAIN_OUTPUTS = ("last.pt", "best.pt", "val_results.json", "log.jsonl")
# Where ``train --exist-ok`` keeps the run it replaces until the new one has finished.
REPLACED_DIR = "replaced"


def default_run_dir(verb: str, name: str) -> Path:
    """Where a verb writes without ``--out``: a fresh ``runs/<verb>/<name>[N]`` under the current folder."""
    return next_run_dir(Path("runs") / verb / name)


def next_run_dir(base: Path) -> Path:
    """``base``, or ``base2``, ``base3`` ... if it already exists: the fresh folder a verb without
    ``--out`` writes to."""
    if not base.exists():
        return base
    i = 2
    while base.with_name(f"{base.name}{i}").exists():
        i += 1
    return base.with_name(f"{base.name}{i}")


class OutputExistsError(CsrsegError, FileExistsError):
    """The output folder or file already holds results of another run."""


def existing_outputs(folder: str | Path, names: tuple[str, ...] | list[str]) -> list[Path]:
    """The paths ``folder/name`` that exist and hold something (empty files and folders do not count)."""
    found = []
    for name in names:
        path = Path(folder) / name
        if path.is_file() and path.stat().st_size > 0:
            found.append(path)
        elif path.is_dir() and any(path.iterdir()):
            found.append(path)
    return found


def check_outputs(folder: str | Path, names: tuple[str, ...] | list[str], exist_ok: bool = False,
                  how: str = "pass --exist-ok to replace them or choose another --out") -> list[Path]:
    """Raise :class:`OutputExistsError` if ``folder`` holds any of ``names``, unless ``exist_ok``.

    Returns the outputs found (those ``exist_ok`` lets the caller replace). ``how`` ends the
    message: what the user can do instead.
    """
    found = existing_outputs(folder, names)
    if found and not exist_ok:
        listed = ", ".join(str(p.relative_to(folder)) for p in found)
        raise OutputExistsError(f"{folder}: already holds {listed} of another run; {how}")
    return found


def set_aside_outputs(paths: list[Path], folder: Path) -> Path | None:
    """Move the files of a run being replaced (``--exist-ok``) into ``folder`` (an older one there is
    deleted), so none of them is mistaken for the new run's, yet none is lost if the new run fails
    before it has written its own. The caller deletes ``folder`` once the new run has finished.
    Returns ``folder``, or ``None`` when there was nothing to move."""
    if not paths:
        return None
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in paths:
        os.replace(path, folder / path.name)
    return folder


def check_output_file(path: str | Path, exist_ok: bool = False, suffixes: tuple[str, ...] = (),
                      what: str = "output") -> Path:
    """Refuse, before any work is done, a single output file (``--out`` of eval or benchmark, export's
    OUT) that could not be written or would replace something unasked: a name without one of
    ``suffixes`` (``what`` names the format), a folder, an existing file without ``exist_ok``, or a
    folder that is missing and cannot be made or is read-only. Returns the path."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise CsrsegError(f"{path}: the {what} file's name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise CsrsegError(f"{path}: a folder; give a file name, e.g. {path / ('out' + (suffixes or ('.txt',))[0])}")
    if path.exists() and not exist_ok:
        raise OutputExistsError(f"{path}: already exists; pass --exist-ok to replace it or choose another name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folders still to make: the nearest one that is
        folder = folder.parent
    if not folder.is_dir():
        raise CsrsegError(f"{path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CsrsegError(f"{path}: {folder} is not writable")
    return path


class OutputLockedError(CsrsegError, FileExistsError):
    """Another run, still going, writes into the same output."""


LOCK_NAME = ".csrseg.lock"


def lock_path(output: Path, folder: bool = True) -> Path:
    """The lock of an output: ``FOLDER/.csrseg.lock`` for a folder, ``.NAME.lock`` beside a file."""
    output = Path(output)
    return output / LOCK_NAME if folder else output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path, what: str, folder: bool = True) -> Iterator[Path]:
    """Own ``output`` (a run folder, or one output file) while the block runs: its lock is made with an
    atomic create holding this process's pid and host. A second run into the same output is refused
    in one line naming the running pid, unless that process is gone (same host): then the stale lock
    is reported and taken. ``what`` names the verb in the lock and in the message; ``folder``: the
    output is a folder (else one file). The lock is removed when the block ends, however it ends."""
    path = lock_path(Path(output), folder)
    made = _missing_folders(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"), what=what)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_or_clear(path, Path(output), mine)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(mine, handle)
        break
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == mine["pid"]:
                path.unlink()
        for folder in made:  # the folders the lock made, if nothing else came into them: as they were
            with contextlib.suppress(OSError):
                folder.rmdir()


def _refuse_or_clear(path: Path, output: Path, mine: dict) -> None:
    """An existing lock: refuse if its process runs (or may run: another host); remove it if gone."""
    try:
        held = json.loads(path.read_text())
        pid, host = int(held["pid"]), str(held["host"])
    except (OSError, ValueError, KeyError, TypeError):
        held, pid, host = {}, -1, mine["host"]  # unreadable: a writer cut short between create and write
        if time.time() - _mtime(path) < 5:  # give a writer that is just creating it a moment
            time.sleep(0.2)
            return
    if host != mine["host"]:
        raise OutputLockedError(f"{output}: in use by {held.get('what', 'csrseg')} (pid {pid} on {host}, since "
                                f"{held.get('started', '?')}); if that run has ended, delete {path}")
    if pid > 0 and _running(pid):
        raise OutputLockedError(f"{output}: in use by {held.get('what', 'csrseg')} (pid {pid}, since "
                                f"{held.get('started', '?')}); wait for it or choose another --out")
    logger.warning("%s: the lock of %s (pid %s), which is no longer running, is taken over", output,
                   held.get("what", "an earlier run"), pid if pid > 0 else "unknown")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
