"""Configs written before the heads owned their settings, read as today's.

Until then ``model.loss`` and ``model.postprocess`` were shared by both heads, K-Net's settings sat
under ``model.head.knet`` and the SOLOv2 head's flat in ``model.head``; ``train.amp`` was a switch
where ``train.precision`` now names the precision. Checkpoints and run folders of then still load,
and ``--set`` keys of then still mean what they meant: a key that had no effect on the head the
config has (the SOLOv2 thresholds on a K-Net head, say) is dropped, as good as before, and named
in a warning when it came from ``--set``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from csrseg.models.heads import HEADS

logger = logging.getLogger("csrseg")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def is_legacy(data: dict[str, Any]) -> bool:
    """Whether a (whole or partial) config dict uses any key of the old layout."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    head = model.get("head") if isinstance(model.get("head"), dict) else {}
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    return "loss" in model or "postprocess" in model or "knet" in head or "amp" in train


def upgrade(data: dict[str, Any], head_type: str, warn: bool = False) -> dict[str, Any]:
    """``data`` (a config dict or ``--set`` overrides, old layout or new) in today's layout, for a
    config whose head is ``head_type`` (the dict's own ``model.head.type`` wins). ``warn``: name the
    old keys that are dropped because they never acted on this head."""
    if not is_legacy(data):
        return data
    data = {**data}
    if isinstance(data.get("train"), dict) and "amp" in data["train"]:
        train = {**data["train"]}
        amp = train.pop("amp")
        train.setdefault("precision", "auto" if amp in (True, "true", "True", "yes", "on") else "fp32")
        data["train"] = train
    if not isinstance(data.get("model"), dict):
        return data
    model = {**data["model"]}
    head = {**model.get("head", {})} if isinstance(model.get("head"), dict) else {}
    if "type" not in head and "num_grids" in head and "knet" not in head:
        head["type"] = "solov2"  # written before heads had a type: every head was SOLOv2's
    kind = head.get("type", head_type)
    kind = kind if isinstance(kind, str) else head_type  # a type of the wrong kind is refused later, in one line
    dropped: list[str] = []
    knet = head.pop("knet", None)
    if kind == "knet":
        solov2_only = _field_names(HEADS["solov2"].config) - _field_names(HEADS["knet"].config)
        dropped += [f"model.head.{k}" for k in head if k in solov2_only]
        head = {k: v for k, v in head.items() if k not in solov2_only}
        head.update(knet or {})
    elif knet is not None:
        dropped += [f"model.head.knet.{k}" for k in knet]
    for section in ("loss", "postprocess"):
        if section in model:
            values = model.pop(section)
            if section == "postprocess":
                own = _field_names(type(HEADS[kind].config().postprocess)) if kind in HEADS else set(values)
                dropped += [f"model.postprocess.{k}" for k in values if k not in own]
                values = {k: v for k, v in values.items() if k in own}
            head[section] = {**values, **head.get(section, {})}
    if head:
        model["head"] = head
    data["model"] = model
    if warn and dropped:
        logger.warning("warning: %s: never read by the %s head, ignored", ", ".join(dropped), kind)
    return data
