"""The student as it acts: the environment's observation masked as a robot would see it,
then the student network (SPEC section 6).

Used by DAgger (dagger.py) to act and learn, and by evaluation and `dex4d export` to run a
trained student; none of them needs the DAgger trainer for that.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from ml_collections import config_dict

from dex4d_jax.networks.student import StudentNetwork
from dex4d_jax.student import masking


class StudentInputs(NamedTuple):
    """One step of the student's observation (batched over environments)."""

    qpos: jax.Array
    qvel: jax.Array
    last_action: jax.Array
    points: jax.Array  # [..., K, 6] masked paired points, noisy current ; exact target
    visible: jax.Array  # [..., K] bool


def masking_config(config: config_dict.ConfigDict) -> masking.MaskingConfig:
    """The MaskingConfig of a config's `masking` section."""
    return masking.MaskingConfig(**config.to_dict())


def make_student(network: config_dict.ConfigDict, action_size: int) -> StudentNetwork:
    """The student network of a config's `network` section."""
    return StudentNetwork(action_size=action_size, **network.to_dict())


class StudentPolicy:
    """The student as it acts: masking of the environment's observation, then the network.

    Args:
      layout: the environment's `student_layout`.
      network: the StudentNetwork.
      mask: MaskingConfig.
    """

    def __init__(self, layout, network: StudentNetwork, mask: masking.MaskingConfig):
        self.layout, self.network, self.mask = layout, network, mask
        if layout.num_points < mask.num_keep:
            raise ValueError(f"The environment gives {layout.num_points} points; the mask keeps "
                             f"{mask.num_keep}.")

    def episode_indices(self, obs, keys: jax.Array) -> jax.Array:
        """Per-episode plane masks [B, K] from the first observation and one key per episode."""
        paired = self.layout.split(obs)[3]
        return jax.vmap(functools.partial(masking.plane_mask_indices,
                                          num_keep=self.mask.num_keep))(keys, paired[..., :3])

    def inputs(self, obs, indices: jax.Array, keys: jax.Array) -> StudentInputs:
        """The masked student inputs of a batched observation, one key per environment."""
        qpos, qvel, last_action, paired = self.layout.split(obs)
        points, visible = jax.vmap(functools.partial(masking.mask_paired_points,
                                                     config=self.mask))(keys, paired, indices)
        return StudentInputs(qpos, qvel, last_action, points, visible)

    def apply(self, params, inputs: StudentInputs) -> dict[str, jax.Array]:
        """The network's outputs (action unclipped, next joint angles and velocities)."""
        return self.network.apply(params, *inputs)

    def act(self, params, inputs: StudentInputs) -> jax.Array:
        """The action sent to the environment: the action head clipped to [-1, 1]."""
        return jnp.clip(self.apply(params, inputs)["action"], -1.0, 1.0)

    def init(self, key: jax.Array, obs) -> Any:
        """Fresh network parameters for an (unbatched or batched) observation."""
        qpos, qvel, last_action, paired = self.layout.split(obs)
        k = self.mask.num_keep
        points = paired[..., :k, :]
        return self.network.init(key, qpos, qvel, last_action, points,
                                 jnp.ones(points.shape[:-1], bool))

    # Evaluation (training/evaluation.make_rollout's stateful-policy interface).

    def rollout_init(self, params, obs, keys):
        """Per-episode state at the first observation: the plane-mask indices [B, K]."""
        return self.episode_indices(obs, keys)

    def rollout_act(self, params, obs, indices, keys):
        """(clipped action [B, A], unchanged mask indices) for one step of evaluation."""
        return self.act(params, self.inputs(obs, indices, keys)), indices

    def rollout_seen(self, params, obs, indices, keys) -> jax.Array:
        """[B, N] bool: which of the environment's N points the student sees this step.

        The points its plane mask kept for the episode (`indices` [B, K]) that pass this step's
        height mask, drawn with the same `keys` as `rollout_act` draws them (so a rollout
        records exactly the points the student acted on; their noise is not recorded).
        """
        del params
        seen = self.inputs(obs, indices, keys).visible  # [B, K]
        hidden = jnp.zeros((indices.shape[0], self.layout.num_points), bool)
        return jax.vmap(lambda row, i, v: row.at[i].set(v))(hidden, indices, seen)


def make_policy(config: config_dict.ConfigDict, env) -> StudentPolicy:
    """The StudentPolicy of a student run's config (`network`, `masking`) for its environment.

    Raises ValueError when the environment does not say where the student's inputs are.
    """
    if not hasattr(env, "student_layout"):
        raise ValueError(f"Environment {type(env).__name__} does not say where the student's "
                         "inputs are (no student_layout).")
    network = make_student(config.network, env.action_size)
    return StudentPolicy(env.student_layout, network, masking_config(config.masking))
