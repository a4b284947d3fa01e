"""Base class for dex4d-jax environments written directly on MJX behind Brax's `Env` API."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import mujoco
import numpy as np
from brax.envs import base as brax_base
from ml_collections import config_dict
from mujoco import mjx

import dex4d_jax.mjcf
from dex4d_jax import xla_flags

# Every environment finds its model files from this one folder (shipped inside the package).
ROOT_PATH = os.path.dirname(os.path.abspath(dex4d_jax.mjcf.__file__))

State = brax_base.State


def mjcf_path(name: str) -> str:
    """Absolute path of a model file shipped in `mjcf/`; fails clearly when it is missing."""
    path = os.path.join(ROOT_PATH, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MJCF file {name!r} not found in {ROOT_PATH}; reinstall dex4d-jax.")
    return path


def whole_steps(duration: float, step: float, duration_name: str, step_name: str) -> int:
    """`duration / step` when it is a whole number of at least 1; a ValueError otherwise."""
    n = duration / step
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f"{duration_name} ({duration}) must be a whole multiple of "
                         f"{step_name} ({step}).")
    return int(round(n))


class StudentLayout(NamedTuple):
    """Where the student's inputs sit in an environment's observation (SPEC section 6).

    Attributes:
      obs_key: the observation entry the student reads.
      points: slice of the flat paired points `[p_i ; p_bar_i]`, point-major.
      qpos: slice of the joint angles (may be empty: the wrench task has no joints).
      qvel: slice of the joint velocities.
      last_action: slice of the last action.
    """

    obs_key: str
    points: slice
    qpos: slice
    qvel: slice
    last_action: slice

    @property
    def num_points(self) -> int:
        """Paired points in the observation."""
        return (self.points.stop - self.points.start) // 6

    def split(self, obs: dict) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(qpos, qvel, last_action, paired points [..., N, 6]) of a (batched) observation."""
        x = obs[self.obs_key]
        points = x[..., self.points].reshape(*x.shape[:-1], self.num_points, 6)
        return x[..., self.qpos], x[..., self.qvel], x[..., self.last_action], points


class MjxEnv(brax_base.Env):
    """An environment stepping an MJX model `n_substeps` times per control step.

    Subclasses set `self._mj_model` (and may replace `self._mjx_model`) in `__init__`, then
    implement `reset` and `step`. The config must hold `ctrl_dt` and `sim_dt`.
    """

    def __init__(self, config: config_dict.ConfigDict, mj_model: mujoco.MjModel):
        xla_flags.warn_if_slow_cpu()
        self._config = config
        self._mj_model = mj_model
        self._mj_model.opt.timestep = config.sim_dt
        self._n_substeps = whole_steps(config.ctrl_dt, config.sim_dt, "ctrl_dt", "sim_dt")

    def physics_step(self, model: mjx.Model, data: mjx.Data, qvel_fn=None) -> mjx.Data:
        """Runs `n_substeps` MJX steps; `qvel_fn(data) -> qvel` overrides velocities first."""

        def body(data, _):
            if qvel_fn is not None:
                data = data.replace(qvel=qvel_fn(data))
            return mjx.step(model, data), None

        data, _ = jax.lax.scan(body, data, (), length=self._n_substeps)
        return data

    @property
    def config(self) -> config_dict.ConfigDict:
        """The environment's (locked) configuration."""
        return self._config

    @property
    def mj_model(self) -> mujoco.MjModel:
        """The MuJoCo model (for rendering and native-MuJoCo checks)."""
        return self._mj_model

    @property
    def dt(self) -> float:
        """Control time step in seconds."""
        return self._config.ctrl_dt

    @property
    def n_substeps(self) -> int:
        """Physics steps per control step."""
        return self._n_substeps

    @property
    def support(self) -> jax.Array:
        """[num_objects, P, 4] support points (envs/objects.support_points) of each object;
        an environment sets `_support`."""
        return self._support

    @property
    def workspace_center(self) -> np.ndarray:
        """[2] xy of the workspace centre in the environment's frame (metres), where objects
        are reset; an environment sets `_center`."""
        return np.asarray(self._center, np.float32)

    @property
    def backend(self) -> str:
        """Brax's name for the physics backend."""
        return "mjx"

    @property
    def observation_size(self):
        """Length of the flat observation, or {key: shape} for a dict observation (as Brax)."""
        obs = jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs
        if isinstance(obs, dict):
            return {key: tuple(value.shape) for key, value in obs.items()}
        return int(obs.shape[-1])
