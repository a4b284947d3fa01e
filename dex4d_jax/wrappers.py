"""Training wrappers: Brax's episode bookkeeping with an auto-reset that samples afresh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers import training as brax_training
from mujoco import mjx


class FreshAutoResetWrapper(Wrapper):
    """Resets a finished episode with a new random object, pose and goal.

    Brax's `AutoResetWrapper` puts back the state from the very first reset and keeps the
    finished episode's `info`, so every later episode of an environment would restart from one
    fixed pose with the old goal. This wrapper calls `reset` again with a key derived from the
    environment's own `info['rng']`, replacing the physics state, observation and the
    environment's info entries. Brax's bookkeeping entries (`steps`, `truncation`,
    `episode_done`, `episode_metrics`) are kept so Brax's PPO and evaluator see the finished
    episode; the reset is computed for every environment each step and selected where done.
    """

    _KEEP = ("steps", "truncation", "episode_done", "episode_metrics")

    def step(self, state: State, action: jax.Array) -> State:
        if "steps" in state.info:
            steps = jnp.where(state.done, jnp.zeros_like(state.info["steps"]), state.info["steps"])
            state.info.update(steps=steps)
        state = state.replace(done=jnp.zeros_like(state.done))
        state = self.env.step(state, action)
        keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(state.info["rng"])
        fresh = self.env.reset(keys)

        def where_done(x, y):
            done = jnp.reshape(state.done, state.done.shape + (1,) * (x.ndim - state.done.ndim))
            return jnp.where(done, x, y)

        info = dict(state.info)
        for key, value in fresh.info.items():
            if key not in self._KEEP:
                info[key] = jax.tree.map(where_done, value, state.info[key])
        if getattr(state.pipeline_state, "impl", None) == mjx.Impl.WARP:
            # Warp's contact arrays are shared by the batch, not per environment: Data.where
            # (under vmap) selects only the per-environment fields.
            pipeline_state = jax.vmap(lambda d, new, old: old.where(d, new))(
                state.done, fresh.pipeline_state, state.pipeline_state)
        else:
            pipeline_state = jax.tree.map(where_done, fresh.pipeline_state, state.pipeline_state)
        obs = jax.tree.map(where_done, fresh.obs, state.obs)
        return state.replace(pipeline_state=pipeline_state, obs=obs, info=info)


def wrap_for_training(env: Env, episode_length: int = 1000, action_repeat: int = 1,
                      randomization_fn=None) -> Wrapper:
    """Vmap + episode + fresh auto-reset; pass as `wrap_env_fn` to Brax's trainers."""
    if randomization_fn is None:
        env = brax_training.VmapWrapper(env)
    else:
        env = brax_training.DomainRandomizationVmapWrapper(env, randomization_fn)
    env = brax_training.EpisodeWrapper(env, episode_length, action_repeat)
    return FreshAutoResetWrapper(env)
