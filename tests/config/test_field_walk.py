"""Every setting is checked at the one door: a walk over every field of every settings dataclass (each
head's own included) gives each a value of the wrong type and one outside its range, through
``csrseg train --set``, ``train(..., overrides=...)`` and a resumed run. Each is refused in one line
naming the key, before anything is written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from csrseg import train
from csrseg.cli import main
from csrseg.config import Config
from csrseg.config.fields import variants
from csrseg.errors import ConfigError
from csrseg.limits import Limit
from tests.conftest import tiny_config


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str  # dotted, as --set takes it
    owner: type  # the dataclass the field belongs to
    name: str
    hint: Any
    head: str | None  # the head variant it belongs to, or None


def settings(cls: type = Config, prefix: str = "", head: str | None = None) -> list[Setting]:
    """Every leaf field under ``cls``, each head variant's fields once per variant."""
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, key = hints[f.name], f"{prefix}{f.name}"
        choices = variants(hint)
        if dataclasses.is_dataclass(hint):
            found += settings(hint, f"{key}.", head)
        elif choices:
            for name, variant in choices.items():
                found += [s for s in settings(variant, f"{key}.", name) if s.key != f"{key}.type"]
        else:
            found.append(Setting(key, cls, f.name, hint, head))
    return found


SETTINGS = settings()


def _limit(setting: Setting) -> Limit | None:
    return getattr(setting.owner, "LIMITS", {}).get(setting.name)


def _length(hint: Any) -> int | None:
    """How many values a fixed-length tuple hint takes (None: any number)."""
    args = typing.get_args(hint)
    return None if len(args) == 2 and args[1] is Ellipsis else len(args)


def wrong_type(setting: Setting) -> Any:
    hint = setting.hint
    if hint is bool:
        return "maybe"
    if hint in (int, float):
        return "many"
    if typing.get_origin(hint) is tuple:
        return {"not": "a list"}
    return [1, 2]  # str, str | None


def out_of_range(setting: Setting) -> Any:
    """A value the type allows and the field's limit refuses."""
    limit = _limit(setting)
    assert limit is not None, setting.key
    if limit.choices is not None:
        bad: Any = 7 if all(isinstance(c, int) for c in limit.choices) else "no-such-choice"
    elif limit.low is not None:
        bad = limit.low if limit.low_open else limit.low - 1
    elif limit.high is not None:
        bad = limit.high if limit.high_open else limit.high + 1
    else:
        bad = float("nan")
    if typing.get_origin(setting.hint) is not tuple:
        return bad
    inner = typing.get_args(setting.hint)[0]
    if typing.get_origin(inner) is tuple:  # a tuple of pairs
        return [[bad] * _length(inner)]
    return [bad] * (_length(setting.hint) or 1)


def _yaml(value: Any) -> str:
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, list) and any(isinstance(v, float) and v != v for v in value):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return json.dumps(value)  # JSON is YAML


# a setting let through would start a run: make it a short one, so that the test fails in seconds
# (the bad value comes last and wins where it sets one of these)
SHORT = ["train.max_iters=1", "train.epochs=1", "train.workers=0", "model.backbone.weights=none"]


def overrides(setting: Setting, value: Any) -> list[str]:
    head = [f"model.head.type={setting.head}"] if setting.head else []
    return [*SHORT, *head, f"{setting.key}={_yaml(value)}"]


def cases() -> list[tuple[Setting, str, Any]]:
    found = []
    for s in SETTINGS:
        found.append((s, "type", wrong_type(s)))
        if _limit(s) is not None:
            found.append((s, "range", out_of_range(s)))
    return found


def test_every_setting_has_a_limit_or_says_why_it_is_free():
    unchecked = [s.key for s in SETTINGS if s.hint is not bool and _limit(s) is None
                 and s.name not in getattr(s.owner, "FREE", ())]
    assert not unchecked, f"settings without LIMITS or FREE: {unchecked}"
    stale = [f"{cls.__name__}.{name}" for cls in {s.owner for s in SETTINGS}
             for name in (*getattr(cls, "LIMITS", {}), *getattr(cls, "FREE", ()))
             if name not in {f.name for f in dataclasses.fields(cls)}]
    assert not stale, f"limits naming no field: {stale}"
    assert len(SETTINGS) > 90  # the walk reached every head


def test_every_default_and_preset_is_inside_its_limits():
    from csrseg.config import load_config
    from csrseg.config.presets import PRESETS

    for name in PRESETS:
        load_config(name)  # raises on a value outside its limit


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_csrseg_train_refuses_each_bad_setting_in_one_line_before_writing(tmp_path, synth_root, capsys):
    out = tmp_path / "never"
    wrong = []
    for setting, kind, value in cases():
        code = main(["train", "--config", "demo", "--data", str(synth_root), "--out", str(out),
                     "--set", *overrides(setting, value)])
        err = capsys.readouterr().err.strip()
        if code != 2 or not err.startswith("csrseg: error:") or "\n" in err or setting.key not in err:
            wrong.append(f"{setting.key} ({kind}, {value!r}): exit {code}, {err[:200]!r}")
        if out.exists():
            wrong.append(f"{setting.key} ({kind}): {out} was written")
        if len(wrong) >= 3:
            break
    assert not wrong, "\n".join(wrong)


def _api_refusals(start, chosen: list[tuple[Setting, str, Any]], out: Path | None = None) -> list[str]:
    """What went wrong when ``start(overrides)`` (a ``train`` call) is given each bad setting of ``chosen``:
    accepted, refused in more than one line or without the key, or ``out`` written. Stops at three."""
    wrong = []
    for setting, kind, value in chosen:
        try:
            start(overrides(setting, value))
            wrong.append(f"{setting.key} ({kind}, {value!r}): accepted")
        except ConfigError as exc:
            if "\n" in str(exc) or setting.key not in str(exc):
                wrong.append(f"{setting.key} ({kind}): {str(exc)[:200]!r}")
        if out is not None and out.exists():
            wrong.append(f"{setting.key} ({kind}): {out} was written")
        if len(wrong) >= 3:
            break
    return wrong


def test_the_api_refuses_each_bad_setting_in_one_line_before_writing(tmp_path, synth_root):
    out = tmp_path / "never"
    wrong = _api_refusals(lambda more: train(synth_root, config="demo", out=out, overrides=more, progress=False),
                          cases(), out)
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_a_resumed_run_refuses_each_bad_setting_and_keeps_its_files(tmp_path, synth_root):
    run = tmp_path / "run"
    train(synth_root, config=tiny_config(max_iters=1, batch_size=4, epochs=1), out=run, device="cpu",
          progress=False, val_split=None)
    before = _snapshot(run)
    # a resumed run keeps its head: another one's keys are refused as unknown
    own = [case for case in cases() if case[0].head in (None, "solov2")]
    wrong = _api_refusals(lambda more: train(resume=run, overrides=more, progress=False), own)
    assert not wrong, "\n".join(wrong)
    assert _snapshot(run) == before
