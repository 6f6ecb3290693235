"""A run's config from a preset name or a YAML file, then ``key.sub=value`` overrides; saving it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from csrseg.config.fields import first_line, from_dict, merge, parse_overrides, to_dict
from csrseg.config.legacy import upgrade
from csrseg.config.presets import PRESETS, get_preset
from csrseg.config.schema import Config
from csrseg.errors import ConfigError
from csrseg.limits import finite


def load_config(name_or_path: str = "paper", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Named preset or YAML file, then ``key=value`` overrides.

    A YAML file may name a preset to start from with a top-level ``base: NAME`` key;
    otherwise it starts from the defaults.
    """
    if "\x00" in name_or_path:
        raise ConfigError(f"config {name_or_path!r}: a name or path cannot hold a NUL character")
    path = Path(name_or_path)
    norm_given = False
    if name_or_path in PRESETS:
        cfg = get_preset(name_or_path)
    elif path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({first_line(exc)})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read as UTF-8 text ({first_line(exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        base = data.pop("base", None)
        if base is not None and (not isinstance(base, str) or base not in PRESETS):
            raise ConfigError(f"{path}: base: {base!r} is not a preset ({', '.join(PRESETS)})")
        cfg = get_preset(base) if base else Config(name=path.stem)
        data = upgrade(data, cfg.model.head.type)
        cfg = merge(cfg, data, str(path))
        norm_given = _sets_backbone_norm(data)
    else:
        raise ConfigError(f"unknown config {name_or_path!r}: not a preset ({', '.join(PRESETS)}) or a YAML file")
    if overrides:
        cfg, data = _merged(cfg, overrides)
        norm_given = norm_given or _sets_backbone_norm(data)
    if name_or_path in PRESETS:  # a preset's own values are sound: a bad one came from --set
        where = "--set" if overrides else name_or_path
    else:
        where = f"{path} with --set" if overrides else str(path)
    check_values(cfg, where)
    return from_scratch_unfrozen(cfg, keep_norm=norm_given)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...] = (), where: str = "--set") -> Config:
    """``cfg`` with ``key=value`` overrides, through the same door as :func:`load_config`: older keys
    upgraded, values merged and type-checked, then :func:`check_values` (also with no overrides: a
    :class:`Config` built in code gets the same checks), and the from-scratch rule when the overrides
    change the backbone's weights. Every verb and API function that takes overrides comes here."""
    if not overrides:
        check_values(cfg, "config")
        return cfg
    merged, data = _merged(cfg, overrides)
    check_values(merged, where)
    if merged.model.backbone.weights != cfg.model.backbone.weights:
        merged = from_scratch_unfrozen(merged, keep_norm=_sets_backbone_norm(data))
    return merged


def _merged(cfg: Config, overrides: list[str] | tuple[str, ...]) -> tuple[Config, dict[str, Any]]:
    data = upgrade(parse_overrides(overrides), cfg.model.head.type, warn=True)
    return merge(cfg, data, "--set"), data


def config_from_dict(data: dict[str, Any], where: str) -> Config:
    """A whole config as a checkpoint or a run folder stores it (today's layout or an older one)."""
    head = data.get("model", {}).get("head", {}) if isinstance(data.get("model"), dict) else {}
    return from_dict(Config, upgrade(data, head.get("type", "knet") if isinstance(head, dict) else "knet"), where)


def check_values(cfg: Config, where: str) -> None:
    """Raise a one-line :class:`ConfigError` naming ``where`` (file or ``--set``) and the key of the
    first value no run could use: each settings class's ``LIMITS`` (:mod:`csrseg.limits`: a count
    below its minimum, a rate negative, NaN or infinite, a probability above 1, a name not among the
    choices), and NaN or infinity in any number."""
    problem = first_problem(cfg)
    if problem is not None:
        key, why = problem
        raise ConfigError(f"{where}: {key} {why}")


def first_problem(settings: Any, prefix: str = "") -> tuple[str, str] | None:
    """``(dotted key, why)`` of the first field of the settings dataclass ``settings`` (nested ones
    included) outside its class's ``LIMITS``, or ``None``."""
    limits = getattr(type(settings), "LIMITS", {})
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found = first_problem(value, f"{key}.")
            if found:
                return found
            continue
        limit = limits.get(f.name, finite() if isinstance(value, float) else None)
        why = limit.problem(value) if limit is not None else None
        if why:
            return key, why
    return None


def _sets_backbone_norm(data: dict[str, Any]) -> bool:
    model = data.get("model")
    return isinstance(model, dict) and isinstance(model.get("backbone"), dict) and "norm" in model["backbone"]


def from_scratch_unfrozen(cfg: Config, keep_norm: bool = False) -> Config:
    """A backbone without pretrained weights trains whole: nothing frozen (a frozen random stem is
    never right) and BatchNorm trainable, unless ``keep_norm`` (the norm was chosen explicitly)."""
    backbone = cfg.model.backbone
    if backbone.weights not in (None, "", "none", "None"):
        return cfg
    norm = backbone.norm if keep_norm else "bn"
    backbone = dataclasses.replace(backbone, weights=None, frozen_stages=0, norm=norm)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))


def without_pretrained(cfg: Config) -> Config:
    """The same network with no pretrained weights to fetch: for a model whose weights come from
    a checkpoint next, or for sizes and speeds measured on random weights."""
    backbone = dataclasses.replace(cfg.model.backbone, weights=None)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
