"""Checkpoints: atomic writes, safe loads, partial loading for fine-tuning.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: a file from elsewhere cannot run code. Model
weights alone can also be written and read as safetensors.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from csrseg.config import Config, ConfigError, config_from_dict, without_pretrained
from csrseg.errors import CsrsegError
from csrseg.models import build_model


class CheckpointError(CsrsegError, RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint that could not be written (disk full, quota, I/O error); the previous file is intact."""


def state_nbytes(obj: Any) -> int:
    """Bytes of all tensors in a nested dict/list ``obj``: the size of its checkpoint, give or take the pickle."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v) for v in obj)
    return 0


class _RecordingWriter:
    """File wrapper that remembers the OSError of a failed write: ``torch.save`` turns it into a
    ``RuntimeError`` ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.error, self.written = handle, None, 0

    def write(self, data: Any) -> int:
        try:
            count = self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.written += count
        return count

    def flush(self) -> None:
        self.handle.flush()


# Room left beyond the estimate: the pickle, zip headers and the file system's own blocks.
_MARGIN = 1 << 20


def atomic_save(obj: Any, path: str | Path, if_failed: str = "") -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one.
    The free space is checked first against the size of the previous ``path`` (or the bytes of
    the tensors in ``obj``); too little space, or an OSError while writing, raises
    :class:`CheckpointWriteError` naming the path, the bytes needed and free, and ``if_failed``
    (what is still good and how to go on), with the old file untouched and no temporary left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = max(path.stat().st_size if path.is_file() else 0, state_nbytes(obj)) + _MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointWriteError(_write_failure(path, "not enough disk space", needed, free, if_failed))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    writer = None
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = _RecordingWriter(handle)
            torch.save(obj, writer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = writer.error if writer is not None and writer.error is not None else exc
        if isinstance(cause, OSError):
            reason = cause.strerror or type(cause).__name__
            free = shutil.disk_usage(path.parent).free
            raise CheckpointWriteError(_write_failure(path, reason, needed, free, if_failed)) from None
        raise
    return path


def _write_failure(path: Path, reason: str, needed: int, free: int, if_failed: str) -> str:
    mb = 1 << 20
    return (f"{path}: could not write the checkpoint ({reason}): needs about {needed} bytes ({needed / mb:.1f} MB), "
            f"{free} bytes ({free / mb:.1f} MB) free in {path.parent}" + (f"; {if_failed}" if if_failed else ""))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (``.pt``, weights-only) or model weights (``.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        hint = next((f"; did you mean {path / n}?" for n in ("best.pt", "last.pt") if (path / n).is_file()), "")
        raise CheckpointError(f"{path}: a folder, not a checkpoint{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path}: an ONNX model, not a checkpoint; run it with --onnx")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                state = {k: handle.get_tensor(k) for k in handle.keys()}
            ckpt: dict[str, Any] = dict(model=state)
            if "csrseg" in meta:
                import json

                ckpt.update(json.loads(meta["csrseg"]))
            return ckpt
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and zip errors share no base class
        detail = (str(exc).splitlines() or [""])[0][:200]
        if "weights_only" in detail or "Weights only load failed" in detail:
            # torch's advice here (weights_only=False) would run code from the file: never give it
            detail = "holds objects other than tensors and plain values, or is not a torch file"
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a csrseg checkpoint (no 'model' entry)")
    return ckpt


def save_safetensors(model_state: dict[str, Tensor], meta: dict[str, Any], path: str | Path) -> Path:
    """Model weights as safetensors; ``meta`` (config, classes) stored as JSON metadata."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp), metadata=dict(csrseg=json.dumps(meta)))
    os.replace(tmp, path)
    return path


def config_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Config:
    if "config" not in ckpt:
        raise CheckpointError(f"{path}: holds no config, so the network it fits is unknown (not written by csrseg "
                              "train or csrseg export?)")
    try:
        return config_from_dict(ckpt["config"], f"{path}:config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def load_model_state(model: nn.Module, state: dict[str, Tensor], strict: bool = True, source: str = "checkpoint") -> list[str]:
    """Load ``state`` into ``model``.

    ``strict``: every key and shape must match, else :class:`CheckpointError` naming
    the differing keys. Not strict: tensors whose name and shape match are loaded,
    the rest of the model keeps its initialisation (e.g. a class head for a dataset
    with other classes); returns the names of the parameters that were not loaded.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if strict and (missing or unexpected or mismatched):
        lines = []
        for k in mismatched[:5]:
            lines.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        if missing:
            lines.append(f"missing from checkpoint: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            lines.append(f"not in model: {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
        raise CheckpointError(
            f"{source}: does not fit this model ({len(mismatched)} shape mismatches, {len(missing)} missing, "
            f"{len(unexpected)} unexpected): " + "; ".join(lines) + ". Use strict=false to load what fits."
        )
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(loadable, strict=False)
    return sorted(set(own) - set(loadable))


@dataclass
class TrainedModel:
    """A model as a checkpoint holds it: its network (eval mode, on the device asked), config, class
    names, the dataset's category ids, and the val metrics recorded with the weights."""

    model: nn.Module
    cfg: Config
    class_names: list[str]
    cat_ids: list[int]
    metrics: dict[str, float]


def trained_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint hands out as its model: the moving average where the run kept one
    (``last.pt``'s ``ema``, ``train.ema``), else ``model``. A resume reads ``model``, the raw weights."""
    return ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]


def load_trained_model(weights: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """The network of a csrseg checkpoint (``.pt``) or ``.safetensors``, every weight from the file, as
    it was trained (nothing folded or converted): what export and inference start from."""
    ckpt = load_checkpoint(weights)
    cfg = config_from_checkpoint(ckpt, weights)
    class_names = list(ckpt.get("classes") or [str(i) for i in range(cfg.model.num_classes)])
    cat_ids = list(ckpt.get("cat_ids") or range(1, cfg.model.num_classes + 1))
    model = build_model(without_pretrained(cfg))  # every weight comes from the checkpoint
    load_model_state(model, trained_weights(ckpt), strict=True, source=str(weights))
    return TrainedModel(model.to(device).eval(), cfg, class_names, cat_ids, dict(ckpt.get("metrics") or {}))
