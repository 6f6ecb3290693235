"""Config input fuzzed: any ``--set key=value`` list or YAML config file gives a Config or a
ConfigError of one line naming the key and the problem, never another exception."""

import dataclasses
import os
import string
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csrseg.config import Config, ConfigError, from_dict, load_config, to_dict


def _keys(node, prefix=""):
    """Every dotted key of the config, sections included."""
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        key = prefix + field.name
        yield key
        if dataclasses.is_dataclass(value):
            yield from _keys(value, key + ".")


KEYS = sorted(_keys(Config()))
# what users type, right or wrong: real keys, misspelt ones, empty parts, odd characters
key_text = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map(lambda k: k + "x"),
    st.sampled_from(KEYS).map(lambda k: k.rsplit(".", 1)[0] + "."),
    st.text(alphabet=string.ascii_letters + "._- =\n\x00é", max_size=20),
)
scalar_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=15),
)
yaml_values = st.recursive(
    scalar_values,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                                                         inner, max_size=3)),
    max_leaves=8,
)
# the value as typed: YAML of a generated value, or raw text with YAML's special characters
value_text = st.one_of(
    yaml_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...")),
    st.text(alphabet=string.printable + "éß…", max_size=25),
    st.sampled_from(["1e999", "-1e999", ".nan", ".inf", "1e-3", "[1, 2", "{a: 1", "!!binary aGk=", "!!set {a}",
                     "2026-11-25", "&a [*a]", "!!python/object:os.system {}", "0x1f", "1_000", "~", "'", "\"\\x\""]),
)
overrides = st.lists(st.tuples(key_text, value_text).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=20),
                     max_size=4)


def _check(outcome, items):
    """A Config that survives a round trip through its dict, or a one-line ConfigError naming a key
    (or, for an item without a usable key, the item itself)."""
    cfg, error = outcome
    if error is None:
        assert isinstance(cfg, Config)
        assert from_dict(Config, to_dict(cfg)) == cfg  # what save_config writes loads back the same
        return
    message = str(error)
    assert "\n" not in message, message
    keys = [item.split("=", 1)[0].strip() for item in items]
    named = [part for key in keys for part in [key, *key.split(".")] if part]
    assert any(repr(n)[1:-1] in message for n in named) or any(repr(i) in message for i in items), (items, message)


def _run(func, *args):
    try:
        return func(*args), None
    except ConfigError as exc:
        return None, exc


@settings(max_examples=300, deadline=None)
@given(overrides)
def test_any_set_overrides_give_a_config_or_a_config_error_naming_the_key(items):
    _check(_run(load_config, "demo", items), items)


yaml_configs = st.dictionaries(
    st.one_of(st.sampled_from(["model", "input", "train", "name", "base"]), st.text(max_size=8), st.integers()),
    st.one_of(
        yaml_values,
        st.dictionaries(st.sampled_from([k.split(".", 1)[1] for k in KEYS if "." in k] + ["nope"]), yaml_values,
                        max_size=4),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(yaml_configs.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                 st.text(alphabet=string.printable + "é", max_size=60),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_any_yaml_config_gives_a_config_or_a_config_error_naming_the_file(text):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzzed.yaml")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        cfg, error = _run(load_config, path)
        if error is None:
            _check((cfg, None), [])
        else:
            message = str(error)
            assert "\n" not in message and "fuzzed.yaml" in message, message


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40))
def test_a_config_file_that_is_not_text_is_a_config_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "binary.yaml")
        with open(path, "wb") as handle:
            handle.write(data)
        cfg, error = _run(load_config, path)
        assert error is None or ("binary.yaml" in str(error) and "\n" not in str(error))
