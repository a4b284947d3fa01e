"""Trained policies read back from their checkpoints, without the trainer that wrote them.

DAgger needs the teacher's deterministic policy, `dex4d export` and evaluation need either
policy; none of them imports a trainer. A checkpoint's format (training/checkpoint.py) says
which trainer wrote it; the run's config.json says which networks to build.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import networks as brax_ppo_networks
from ml_collections import config_dict

from dex4d_jax.networks import ppo as ppo_networks
from dex4d_jax.training import checkpoint, run_dir


def teacher_networks(config: config_dict.ConfigDict, observation_size, action_size: int):
    """The Brax PPO networks of a teacher run's `network` section for an environment's sizes."""
    return ppo_networks.make_ppo_networks(observation_size, action_size,
                                          **config.network.to_dict())


def deterministic_policy(networks):
    """`(params, batched obs) -> action`: the mode of the PPO networks' policy, where params
    are (normaliser, policy, value) as `load_inference_params` returns them.
    """
    inference = brax_ppo_networks.make_inference_fn(networks)

    def policy_fn(p, obs):
        return inference(p, deterministic=True)(obs, jax.random.PRNGKey(0))[0]

    return policy_fn


def load_inference_params(path: str):
    """(normaliser, policy, value) params of a teacher checkpoint, for Brax's inference function.

    Raises:
      FileNotFoundError, checkpoint.CheckpointError: no such checkpoint, or not a teacher's.
    """
    tree, _ = checkpoint.read_checkpoint(os.path.abspath(path), checkpoint.PPO_FORMAT)
    saved = tree["normalizer"]
    spec = jax.tree.map(lambda m: specs.Array(m.shape, jnp.dtype("float32")), saved["mean"])
    normalizer = checkpoint.fit_tree(running_statistics.init_state(spec), saved, "normaliser",
                                     path)
    return normalizer, tree["params"]["policy"], tree["params"]["value"]


def load_teacher_policy(path: str, observation_size, action_size: int):
    """A teacher's deterministic policy from a run or checkpoint folder.

    Args:
      path: a teacher run (its latest checkpoint) or one of its checkpoint folders.
      observation_size: the environment's `observation_size` (a size, or sizes by key).
      action_size: the environment's `action_size`.

    Returns:
      (policy_fn(params, batched obs) -> action, params, run config, step, checkpoint path).

    Raises:
      FileNotFoundError, run_dir.RunDirError: no such run or checkpoint.
      checkpoint.CheckpointError: not a teacher's checkpoint, or its parameters do not fit the
        networks its config describes for these sizes.
    """
    step, ckpt = run_dir.resolve_checkpoint(path)
    config = run_dir.read_run_config(run_dir.run_of(ckpt))
    if "ppo" not in config:
        raise run_dir.RunDirError(f"{run_dir.run_of(ckpt)} is not a teacher run (its "
                                  "config.json has no `ppo` section).")
    networks = teacher_networks(config, observation_size, action_size)
    params = load_inference_params(ckpt)
    checkpoint.check_fits(networks.policy_network.init(jax.random.PRNGKey(0)), params[1],
                          "policy parameters", ckpt)
    return deterministic_policy(networks), params, config, step, ckpt


def load_student_params(path: str):
    """The student parameters of a DAgger checkpoint folder (for evaluation and export)."""
    return checkpoint.read_checkpoint(os.path.abspath(path),
                                      checkpoint.DAGGER_FORMAT)[0]["params"]
