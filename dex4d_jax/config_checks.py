"""Declared ranges of configuration settings, checked before a run creates anything.

ConfigDict already checks each setting's type (a locked config refuses unknown keys and values
that cannot take the field's type); this module adds each setting's range, declared next to
the defaults it constrains (`envs/*.py` for environments, `experiments/configs/*.py` for
training), so that `episode_length=0` or `num_envs=-4` stops the command with one line
instead of failing deep inside a compile or training silently on nonsense.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ml_collections import config_dict


class SettingError(ValueError):
    """A setting names no field of the config, has the wrong type, or lies outside its range."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed or half-open interval of numbers; None leaves a side unbounded.

    Attributes:
      low, high: the bounds.
      low_open: the low bound itself is excluded (`positive()` is (0, inf)).
      integer: the value must be a whole number.
      optional: None is allowed too (e.g. "no gradient clipping").
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is outside the range, or None when it is inside."""
        if value is None:
            return None if self.optional else "must be set"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value):
            return "must be finite"
        if self.integer and value != int(value):
            return "must be a whole number"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}"
        return None


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A value (or, with `many`, every item of a tuple) from a fixed set of choices."""

    choices: tuple
    many: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is not among the choices, or None."""
        items = tuple(value) if self.many and isinstance(value, (tuple, list)) else (value,)
        if self.many and not items:
            return "must name at least one of " + ", ".join(map(str, self.choices))
        bad = [v for v in items if v not in self.choices]
        if bad:
            return (f"{bad[0]!r} is not one of {', '.join(map(str, self.choices))}")
        return None


def positive(integer: bool = False) -> Range:
    """(0, inf): a size, a time step, a rate."""
    return Range(0, None, low_open=True, integer=integer)


def at_least(low: float, integer: bool = True) -> Range:
    """[low, inf): counts."""
    return Range(low, None, integer=integer)


def non_negative() -> Range:
    """[0, inf): weights, noise levels."""
    return Range(0, None)


def fraction() -> Range:
    """[0, 1]: probabilities and ratios."""
    return Range(0, 1)


def check(config: config_dict.ConfigDict, checks: Mapping[str, Range | OneOf],
          prefix: str = "", where: str = "") -> None:
    """Raises SettingError for the first setting of `config` outside its declared range.

    Args:
      config: the (nested) config.
      checks: dotted key (relative to `config`) -> Range or OneOf. Keys absent from the config
        are skipped (sections differ between presets).
      prefix: prepended to keys in messages (e.g. "env.").
      where: where the config came from, for the message (e.g. "runs/t/config.json").
    """
    for key, rule in checks.items():
        node = config
        for part in key.split("."):
            if not isinstance(node, (config_dict.ConfigDict, dict)) or part not in node:
                break
            node = node[part]
        else:
            problem = rule.problem(node)
            if problem is not None:
                source = f" in {where}" if where else ""
                raise SettingError(f"{prefix}{key}={node!r}{source}: {problem}")

