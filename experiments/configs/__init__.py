"""Run configurations: presets (teacher.py, student.py) and one way to change any field.

Every run is one `ml_collections.ConfigDict`. A preset function returns it; named command-line
flags (`--encoder`, `--steps`, ...) are shorthands for fields of it; `--set SECTION.KEY=VALUE`
changes any field. All of them go through `apply_settings`, which uses ConfigDict's own
flattened update on a locked copy, so an unknown key or a value of the wrong type fails
before anything is created.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ml_collections import config_dict

from dex4d_jax.envs import leaf_keys


class SettingError(ValueError):
    """A `KEY=VALUE` setting names no field of the config or has the wrong type."""


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal (number, tuple, None, bool...), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """`["a.b=1", ...]` -> `{"a.b": 1, ...}`; raises SettingError for a pair without `=`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingError(f"--set expects SECTION.KEY=VALUE, got {pair!r}")
        out[key.strip()] = parse_value(value)
    return out


def apply_settings(config: config_dict.ConfigDict, settings: Mapping[str, Any],
                   frozen: Iterable[str] = ()) -> config_dict.ConfigDict:
    """A copy of `config` with `settings` ({"section.key": value}) applied.

    Args:
      config: the run configuration.
      settings: dotted paths and values (already parsed, see `parse_assignments`).
      frozen: top-level sections that may not be set (a student's `env` comes from its
        teacher).

    Raises:
      SettingError: a key is not a field of `config` (the message lists the valid keys of its
        section), lies in a frozen section, or its value cannot take the field's type.
    """
    config = copy.deepcopy(config)  # keeps typed placeholders (None fields with a type)
    config.lock()
    valid = [k for k in leaf_keys(config) if k.split(".")[0] not in frozen]
    for key, value in settings.items():
        section = key.split(".")[0]
        if section in frozen:
            raise SettingError(f"--set {key}: the {section} section cannot be set for this "
                               "run")
        if key not in valid:
            near = [k for k in valid if k.split(".")[0] == section] or valid
            raise SettingError(f"--set {key}: no such setting; valid: {', '.join(near)}")
        try:
            config.update_from_flattened_dict({key: value})
        except (TypeError, ValueError, KeyError) as err:
            raise SettingError(f"--set {key}={value!r}: {err}") from err
    config.unlock()
    return config
