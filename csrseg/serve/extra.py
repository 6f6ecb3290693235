"""Whether the ``serve`` extra is installed: a one-line error saying how to install it, before any of
its modules is imported."""

from __future__ import annotations

import importlib.util

from csrseg.errors import CsrsegError

# import name -> the distribution the extra installs
PACKAGES = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def require_serve_extra() -> None:
    """A :class:`CsrsegError` naming ``pip install 'csrseg[serve]'`` unless the web stack is importable."""
    missing = [dist for module, dist in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise CsrsegError(f"csrseg serve needs {', '.join(missing)}: pip install 'csrseg[serve]'")
