"""Which device a verb runs on when the user does not say: the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | None) -> str:
    """``None`` or ``"auto"``: ``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``; anything else as given."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
