"""Deterministic evaluation of a policy (teacher or student) on freshly sampled episodes."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Summary of `num_episodes` episodes.

    Attributes:
      success_rate: fraction of episodes whose first goal was reached and held.
      episode_reward: mean undiscounted return.
      goals_reached: mean number of goals held per episode (later goals are sampled in place).
      final_distance: mean point distance d_t at the last step (metres).
      min_distance: mean over episodes of the smallest d_t reached on the first goal (metres).
      num_episodes: episodes evaluated.
    """

    success_rate: float
    episode_reward: float
    goals_reached: float
    final_distance: float
    min_distance: float
    num_episodes: int

    def as_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return dataclasses.asdict(self)


def make_rollout(env, policy_fn, episode_length: int, policy_init=None):
    """A jitted `(policy params, keys [B, 2]) -> per-episode metrics` over fixed-length episodes.

    `policy_fn(params, obs) -> action` must be batched over the leading axis of `obs`. A
    policy with per-episode state and randomness (the student's point mask) gives
    `policy_init(params, obs, keys [B, 2]) -> carry`, called on the first observation, and
    `policy_fn(params, obs, carry, keys [B, 2]) -> (action, carry)`; its keys are derived
    from each episode's key, so an episode's result does not depend on the batch it ran in.
    """
    if policy_init is None:
        stateless = policy_fn
        policy_init = lambda params, obs, keys: ()  # noqa: E731
        policy_fn = lambda params, obs, carry, keys: (stateless(params, obs), carry)  # noqa: E731

    def rollout(params, keys):
        state = jax.vmap(env.reset)(keys)
        policy_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 7919)
        policy_carry = policy_init(params, state.obs, policy_keys)

        def body(carry, t):
            state, policy_carry, first_done, min_dist = carry
            step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(policy_keys, t)
            action, policy_carry = policy_fn(params, state.obs, policy_carry, step_keys)
            state = jax.vmap(env.step)(state, action)
            m = state.metrics
            min_dist = jnp.where(first_done, min_dist, jnp.minimum(min_dist, m["distance"]))
            first_done = jnp.logical_or(first_done, m["first_goal_reached"] > 0)
            return (state, policy_carry, first_done, min_dist), (m["goal_reached"], state.reward)

        batch = keys.shape[0]
        init = (state, policy_carry, jnp.zeros(batch, bool), jnp.full(batch, jnp.inf))
        (state, _, first_done, min_dist), (reached, reward) = jax.lax.scan(
            body, init, jnp.arange(episode_length))
        return {
            "success": first_done.astype(jnp.float32),
            "episode_reward": reward.sum(0),
            "goals_reached": reached.sum(0),
            "final_distance": state.metrics["distance"],
            "min_distance": min_dist,
        }

    return jax.jit(rollout)


def evaluate(rollout, params, num_episodes: int, seed: int, batch_size: int = 256) -> EvalResult:
    """Runs `num_episodes` episodes through a `make_rollout` function, in batches."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_episodes)
    parts = []
    for start in range(0, num_episodes, batch_size):
        chunk = keys[start:start + batch_size]
        if chunk.shape[0] < batch_size:  # pad so the rollout compiles once
            chunk = jnp.concatenate([chunk, keys[: batch_size - chunk.shape[0]]])
        out = jax.device_get(rollout(params, chunk))
        parts.append({k: v[: min(batch_size, num_episodes - start)] for k, v in out.items()})
    res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return EvalResult(
        success_rate=float(res["success"].mean()),
        episode_reward=float(res["episode_reward"].mean()),
        goals_reached=float(res["goals_reached"].mean()),
        final_distance=float(res["final_distance"].mean()),
        min_distance=float(res["min_distance"].mean()),
        num_episodes=num_episodes,
    )
