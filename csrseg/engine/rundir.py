"""Output folders: never overwrite another run's results by accident.

Every verb that writes results (``train``, ``ablate``, ``demo``, ``predict``, ``export``)
asks :func:`check_outputs` first. A folder that already holds results of another run is
refused in one line naming the files, unless the caller continues that run (``--resume``)
or means to replace it (``--exist-ok``). Without ``--out`` the CLI picks a fresh numbered
folder, so this only fires when the user named an occupied one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from csrseg.errors import CsrsegError

# What a training run leaves that is worth keeping (config.yaml alone is not: it is rewritten
# at every start, and a run that died before its first checkpoint holds nothing else).
TRAIN_OUTPUTS = ("last.pt", "best.pt", "val_results.json", "log.jsonl")


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
