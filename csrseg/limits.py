"""The values a setting may take, declared beside it.

Each settings dataclass (the model's parts, the input pipeline, the training recipe) names its
fields' ranges in a ``LIMITS`` class variable, ``{field: Limit}``; the config loader checks a whole
config against them at its one door (:func:`csrseg.config.load.check_values`) before anything is
built or written. A field that takes anything its type allows (a name, a seed, a path) is listed in
the class's ``FREE``: a test walks every field of every settings class and fails on one that is in
neither, so a new setting cannot arrive unchecked.

On the ground floor, beside :mod:`csrseg.errors`, because every floor's settings use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    """A number's range (``low``/``high``, each included unless ``*_open``) or a string's ``choices``.
    A tuple-valued field is checked element by element (nested tuples too)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside this limit, as the end of a sentence, or ``None`` when it is inside."""
        if isinstance(value, tuple):
            return next((p for p in map(self.problem, value) if p), None)
        if self.choices is not None:
            return None if value in self.choices else f"must be {self.describe()}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {self.describe()}, got {value}"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"must be {self.describe()}, got {value}"
        return None

    def describe(self) -> str:
        """``"at least 1"``, ``"above 0"``, ``"from 0 to 1"``, ``"one of a, b"``, ``"a finite number"``."""
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        low = None if self.low is None else f"{'above' if self.low_open else 'at least'} {_num(self.low)}"
        high = None if self.high is None else f"{'below' if self.high_open else 'at most'} {_num(self.high)}"
        if low and high and not (self.low_open or self.high_open):
            return f"from {_num(self.low)} to {_num(self.high)}"
        return " and ".join(p for p in (low, high) if p) or "a finite number"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def at_least(low: float) -> Limit:
    return Limit(low=low)


def above(low: float) -> Limit:
    return Limit(low=low, low_open=True)


def between(low: float, high: float) -> Limit:
    return Limit(low=low, high=high)


def fraction() -> Limit:
    """A probability or a share: 0 to 1."""
    return Limit(low=0, high=1)


def open_fraction() -> Limit:
    """Strictly between 0 and 1 (a prior probability, whose log-odds must be finite)."""
    return Limit(low=0, high=1, low_open=True, high_open=True)


def finite() -> Limit:
    """Any finite number."""
    return Limit()


def one_of(*choices: Any) -> Limit:
    return Limit(choices=tuple(choices))
