"""What ``predict`` reads: files, folders and glob patterns of images and videos."""

from __future__ import annotations

import glob
from pathlib import Path

from csrseg.data.io import IMAGE_SUFFIXES
from csrseg.inference.video import VIDEO_SUFFIXES


def expand_sources(sources: list[str]) -> list[Path]:
    """Files, folders (their images and videos, sorted) and glob patterns -> file paths, in order."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        elif any(ch in source for ch in "*?["):
            paths += sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        else:
            paths.append(path)
    return paths
