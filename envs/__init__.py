"""Environment registry: `load(name, **overrides)` returns a Brax-API environment.

Overrides replace entries of the environment's default config; nested entries use a double
underscore or a dotted key passed through `**{"a.b": v}` (for example
`reward_weights__bonus=2.0`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

# mujoco.mjx prints "Failed to import warp" to stdout when the optional GPU backend is absent;
# on CPU that is expected, so the message is swallowed rather than alarming users.
with contextlib.redirect_stdout(io.StringIO()):
    from mujoco import mjx  # noqa: F401
from typing import Any

from dex4d_jax.envs import ap2ap, ap2ap_wrench
from dex4d_jax.envs.base import MjxEnv
from ml_collections import config_dict

from dex4d_jax import config_checks

_ENVS: dict[str, tuple[Callable[..., MjxEnv], Callable[[], config_dict.ConfigDict]]] = {
    "ap2ap": (ap2ap.Ap2ap, ap2ap.default_config),
    "ap2ap_wrench": (ap2ap_wrench.Ap2apWrench, ap2ap_wrench.default_config),
}
# Each environment's declared setting ranges (dex4d_jax/config_checks.py).
_RANGES = {"ap2ap": ap2ap.SETTING_RANGES, "ap2ap_wrench": ap2ap_wrench.SETTING_RANGES}
ALL_ENVS = tuple(_ENVS)


def _check_name(name: str) -> None:
    if name not in _ENVS:
        raise ValueError(f"Unknown environment {name!r}; valid: {', '.join(ALL_ENVS)}")


def get_default_config(name: str) -> config_dict.ConfigDict:
    """The default config of environment `name`."""
    _check_name(name)
    return _ENVS[name][1]()


def leaf_keys(config: config_dict.ConfigDict, prefix: str = "") -> list[str]:
    """The dotted paths of every leaf of a (nested) ConfigDict."""
    keys = []
    for key, value in config.items():
        if isinstance(value, config_dict.ConfigDict):
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def apply_overrides(config: config_dict.ConfigDict, overrides: dict[str, Any]):
    """A copy of `config` with `overrides` applied by ConfigDict's own flattened update.

    Nested keys are dotted or double-underscored (`reward_weights__bonus`). Raises KeyError for
    an unknown key (listing the valid ones) and TypeError for a value of the wrong type.
    """
    config = config_dict.ConfigDict(config)
    valid = leaf_keys(config)
    config.lock()
    for raw_key, value in overrides.items():
        key = raw_key.replace("__", ".")
        if key not in valid:
            raise KeyError(f"Unknown config key {raw_key!r}; valid: {', '.join(valid)}")
        config.update_from_flattened_dict({key: value})
    config.unlock()
    return config


def run_env_config(name: str, **overrides: Any) -> config_dict.ConfigDict:
    """A run config's `env` section: `name` and every setting of that environment (defaults
    with `overrides` applied), as `config.json` stores it and `from_run_config` reads it.
    """
    section = apply_overrides(get_default_config(name), overrides)
    section.name = name
    return section


def from_run_config(config: config_dict.ConfigDict, evaluation: bool = False) -> MjxEnv:
    """The environment of a run config's `env` section (`run_env_config`).

    Args:
      config: a run configuration (teacher or student), whose `env` holds `name` and the
        environment's settings. Runs written before the settings were stored whole hold
        `name` and `overrides` instead; those are read too.
      evaluation: build the evaluation environment: domain randomization (where the
        environment has it) is off unless the config's `eval.randomization` asks for it.

    Raises:
      ValueError: unknown environment. KeyError/TypeError: a setting the environment does not
        have, or of the wrong type.
    """
    name, env_config = run_env_settings(config, evaluation)
    return load(name, config=env_config)


def run_env_settings(config: config_dict.ConfigDict, evaluation: bool = False
                     ) -> tuple[str, config_dict.ConfigDict]:
    """(name, environment config) of a run config's `env` section, as `from_run_config` reads
    them (same arguments and errors), for callers that build the environment themselves."""
    settings = config.env.to_dict()
    name = settings.pop("name")
    _check_name(name)
    if set(settings) == {"overrides"}:  # the layout before settings were stored whole
        env_config = apply_overrides(get_default_config(name), settings["overrides"])
    else:
        env_config = get_default_config(name)
        env_config.lock()
        env_config.update(settings)
        env_config.unlock()
    if evaluation and "domain_randomization" in env_config:
        env_config.domain_randomization = bool(config.eval.get("randomization", False))
    return name, env_config


def check_settings(name: str, config: config_dict.ConfigDict, prefix: str = "",
                   where: str = "") -> None:
    """Raises config_checks.SettingError for a setting of environment `name` outside its
    declared range (`SETTING_RANGES` of its module); messages name keys with `prefix`."""
    _check_name(name)
    config_checks.check(config, _RANGES[name], prefix=prefix, where=where)


def load(name: str, config: config_dict.ConfigDict | None = None, **overrides: Any) -> MjxEnv:
    """Builds environment `name` from `config` (default: its default config) plus overrides.

    Raises:
      ValueError: unknown environment; config_checks.SettingError (a ValueError): a setting
        outside its declared range. KeyError/TypeError: an unknown setting or a wrong type.
    """
    return build(name, config, **overrides)


def build(name: str, config: config_dict.ConfigDict | None = None, init_kwargs: dict | None = None,
          **overrides: Any) -> MjxEnv:
    """`load` with keyword arguments for the environment's constructor (`init_kwargs`: the
    benchmark's object set and fixed scene items)."""
    _check_name(name)
    cls, default = _ENVS[name]
    config = apply_overrides(config if config is not None else default(), overrides)
    check_settings(name, config)
    return cls(config, **(init_kwargs or {}))
