"""Frozen dataclasses to and from plain dicts: YAML files, checkpoints and ``--set key.sub=value``.

Generic over any nested config dataclass. A field typed as a union of config dataclasses that
each carry a ``type`` field (``model.head``: one config per head) is a *variant*: the dict's
``type`` picks the class, and a ``type`` that changes in :func:`merge` starts the field afresh
from that class's defaults.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import yaml

from csrseg.errors import ConfigError


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def variants(hint: Any) -> dict[str, type] | None:
    """``{type name: class}`` when ``hint`` is a union of dataclasses with a ``type`` field, else None."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(hint)
    if not all(dataclasses.is_dataclass(a) and "type" in {f.name for f in dataclasses.fields(a)} for a in args):
        return None
    return {a().type: a for a in args}


def _variant_class(choices: dict[str, type], name: Any, where: str) -> type:
    if not isinstance(name, str) or name not in choices:
        raise ConfigError(f"{where}.type={name!r}: choose {' or '.join(choices)}")
    return choices[name]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    choices = variants(hint)
    if choices is not None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(_variant_class(choices, value.get("type", next(iter(choices))), where), value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {hint}")
    if origin is tuple:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)) \
                or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise ConfigError(f"{where}: {value} is too large for a number") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(map(repr, unknown))}; valid: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def merge(cfg: Any, data: dict[str, Any], where: str = "config") -> Any:
    """Return ``cfg`` with the (nested, partial) values of ``data`` replacing its own."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; valid: {sorted(names)}")
        current = getattr(cfg, key)
        choices = variants(hints[key])
        if choices is not None and isinstance(value, dict) and value.get("type", current.type) != current.type:
            current = _variant_class(choices, value["type"], f"{where}.{key}")()  # another variant: from its defaults
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(cfg, **changes)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["model.neck.reweight=false", "train.lr=2e-4"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({first_line(exc)})") from None
        node = nested
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: the key has an empty part (expected key.sub=value)")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def first_line(exc: Exception) -> str:
    """YAML errors span several lines (a caret under the column); errors here are one line."""
    return " ".join(str(exc).split())[:200]
