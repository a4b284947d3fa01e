"""Run configurations: presets (teacher.py, student.py) and one way to change any field.

Every run is one `ml_collections.ConfigDict`. A preset function returns it; named command-line
flags (`--encoder`, `--steps`, ...) are shorthands for fields of it; `--set SECTION.KEY=VALUE`
changes any field. All of them go through `apply_settings`, which uses ConfigDict's own
flattened update on a locked copy, so an unknown key or a value of the wrong type fails
before anything is created. `validate` checks a whole config (a new one, or a run's
config.json) the same way, against its preset's types and every declared range.
"""

from __future__ import annotations

import ast
import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dex4d_jax.envs import leaf_keys
from ml_collections import config_dict

from dex4d_jax import config_checks, envs
from dex4d_jax.config_checks import SettingError

# Top-level entries a run adds to its preset's config (not settings).
RECORDS = ("init_from", "stage", "teacher")


def _type_problem(err: Exception) -> str:
    """ConfigDict's type error in a few words ("expected int, got str")."""
    found = re.search(r"of original type <class '(\w+)'> and cannot be casted to type "
                      r"<class '(\w+)'>", str(err))
    if found:
        return f"expected {found.group(2)}, got {found.group(1)}"
    return str(err).replace("\n", " ")


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal (number, tuple, None, bool...), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)  # nan, inf: refused later by the ranges, by name
    except ValueError:
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
            guess = difflib.get_close_matches(key, near, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(guess)}? " if guess else ""
            raise SettingError(f"--set {key}: no such setting; {hint}valid: {', '.join(near)}")
        try:
            config.update_from_flattened_dict({key: value})
        except (TypeError, ValueError, KeyError) as err:
            raise SettingError(f"--set {key}={value!r}: {_type_problem(err)}") from err
    config.unlock()
    return config


def _template(config: config_dict.ConfigDict, where: str) -> tuple[config_dict.ConfigDict, dict]:
    from dex4d_jax.experiments.configs import student, teacher  # noqa: PLC0415

    if "dagger" in config:
        return student.get_config("quick"), student.RANGES
    if "ppo" in config:
        return teacher.get_config("quick"), teacher.RANGES
    raise SettingError(f"{where or 'the config'} is neither a teacher's (ppo) nor a student's "
                       "(dagger) run configuration")


def validate(config: config_dict.ConfigDict, where: str = "") -> config_dict.ConfigDict:
    """A run config checked whole: each setting's type against its preset's, every declared
    range (training sections and the environment's), and the environment's name.

    Args:
      config: a new run's config, or one read from a run's config.json.
      where: where it came from (a path), named in messages.

    Returns:
      The config, typed as the preset's (e.g. ints given where floats are expected become
      floats).

    Raises:
      SettingError: the first problem, naming the key, its value and `where`.
    """
    source = f" in {where}" if where else ""
    template, ranges = _template(config, where)
    env = config.get("env")
    if not isinstance(env, config_dict.ConfigDict) or not isinstance(env.get("name"), str):
        raise SettingError(f"env{source}: missing, or without an environment name")
    name = env.name
    if name == "" and "dagger" in config:  # a student config before its teacher is bound
        settings = None
    elif name not in envs.ALL_ENVS:
        raise SettingError(f"env.name={name!r}{source}: not one of {', '.join(envs.ALL_ENVS)}")
    else:
        settings = {k: v for k, v in env.items() if k != "name"}
        if set(settings) != {"overrides"}:  # runs before settings were stored whole: skipped
            template.env = envs.run_env_config(name)
        else:
            settings = None
    checked = copy.deepcopy(template)
    checked.lock()
    for key in leaf_keys(config):
        section = key.split(".")[0]
        if section in RECORDS or (section == "env" and settings is None):
            continue
        node = config
        for part in key.split("."):
            node = node[part]
        try:
            checked.update_from_flattened_dict({key: node})
        except (KeyError, TypeError, ValueError) as err:
            raise SettingError(f"{key}={node!r}{source}: {_type_problem(err)}") from err
    missing = [k for k in leaf_keys(template) if k.split(".")[0] not in RECORDS
               and not (k.startswith("env.") and settings is None)
               and k not in leaf_keys(config)]
    if missing:
        raise SettingError(f"{where or 'the config'} lacks {', '.join(missing[:6])}")
    checked.unlock()
    for record in RECORDS:
        if record in config:
            checked[record] = copy.deepcopy(config[record])
    if settings is None:
        checked.env = copy.deepcopy(config.env)
    config_checks.check(checked, ranges, where=where)
    if settings is not None:
        envs.check_settings(name, checked.env, prefix="env.", where=where)
    return checked
