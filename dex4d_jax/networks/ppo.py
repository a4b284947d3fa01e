"""Actor and critic on a flat observation whose first `num_points * 6` entries are paired points.

`make_ppo_networks` has the signature Brax's `ppo.train(network_factory=...)` expects. The
observation is split into the paired points, which go through a point encoder, and the rest of
the state, which is concatenated to the encoding; both actor and critic see the same input
("symmetric" PPO, as in the authors' code) through separate encoders.

Observation normalisation is deliberately not used: Brax normalises each index separately,
which would give every point slot its own statistics and break the encoder's invariance to
point order (the authors' code does not normalise either; values are clipped to +-5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from brax.training import distribution, networks, types
from brax.training.agents.ppo import networks as ppo_networks

from dex4d_jax.networks.point_encoders import PointEncoder


def _obs_size(observation_size: types.ObservationSize, key: str) -> int:
    """The flat size of observation entry `key` (an int size has a single entry)."""
    if isinstance(observation_size, Mapping):
        if key not in observation_size:
            raise KeyError(f"Observation has no entry {key!r}; it has {list(observation_size)}.")
        shape = observation_size[key]
        return int(shape if isinstance(shape, int) else shape[-1])
    return int(observation_size)


def split_observation(obs: jax.Array, num_points: int) -> tuple[jax.Array, jax.Array]:
    """[..., D] -> (paired points [..., N, 6], remaining state [..., D - 6N])."""
    if obs.shape[-1] < num_points * 6:
        raise ValueError(
            f"Observation of size {obs.shape[-1]} cannot hold {num_points} paired points."
        )
    points = obs[..., : num_points * 6].reshape(*obs.shape[:-1], num_points, 6)
    return points, obs[..., num_points * 6:]


class PointTrunk(nn.Module):
    """Point encoder on the paired points, concatenated with the rest of the state, then an MLP.

    With `num_points=0` there is no encoder: a plain MLP on the whole input (for a critic on
    the privileged state).
    """

    num_points: int = 128
    encoder: str = "paired"
    point_hidden: Sequence[int] = (128, 128)
    pooling: str = "mean_max"
    hidden: Sequence[int] = (1024, 1024, 512, 512)
    activation: str = "elu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        if self.num_points:
            points, state = split_observation(obs, self.num_points)
            encoder = PointEncoder(self.encoder, self.point_hidden, self.pooling, self.activation)
            x = jnp.concatenate([encoder(points), state], axis=-1)
        act = getattr(nn, self.activation)
        for size in self.hidden:
            x = act(nn.Dense(size)(x))
        return x


class PointPolicy(nn.Module):
    """Gaussian policy: trunk -> mean; a state-independent learned log-std."""

    trunk: PointTrunk
    action_size: int
    init_std: float = 0.8

    @nn.compact
    def __call__(self, obs: jax.Array):
        # A small last layer so the first actions are dominated by exploration noise.
        mean = nn.Dense(self.action_size, kernel_init=nn.initializers.variance_scaling(
            0.01, "fan_in", "uniform"))(self.trunk(obs))
        log_std = self.param("log_std", nn.initializers.constant(jnp.log(self.init_std)),
                             (self.action_size,))
        return mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape)


class PointValue(nn.Module):
    """Value function: trunk -> scalar."""

    trunk: PointTrunk

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return nn.Dense(1)(self.trunk(obs))[..., 0]


def make_ppo_networks(
    observation_size: types.ObservationSize,
    action_size: int,
    preprocess_observations_fn: types.PreprocessObservationFn = types.identity_observation_preprocessor,
    encoder: str = "paired",
    num_points: int = 128,
    point_hidden: Sequence[int] = (128, 128),
    pooling: str = "mean_max",
    policy_hidden: Sequence[int] = (1024, 1024, 512, 512),
    value_hidden: Sequence[int] = (1024, 1024, 512, 512),
    activation: str = "elu",
    init_std: float = 0.8,
    policy_obs_key: str = "state",
    value_obs_key: str = "state",
) -> ppo_networks.PPONetworks:
    """Brax PPO networks with a point encoder in both actor and critic.

    Args:
      observation_size: flat observation size (an int, or Brax's {'state': (size,)}).
      action_size: action dimension.
      preprocess_observations_fn: Brax's observation preprocessor (identity here).
      encoder: `paired`, `decoupled` or `mlp`.
      num_points: paired points at the start of the observation.
      point_hidden: shared-MLP sizes of the encoder.
      pooling: `mean`, `max` or `mean_max`.
      policy_hidden: actor MLP sizes (the paper: [1024, 1024, 512, 512]).
      value_hidden: critic MLP sizes.
      activation: nonlinearity name (flax.linen), ELU in the paper.
      init_std: initial action standard deviation.
      policy_obs_key: entry of a dict observation the actor reads (paired points first).
      value_obs_key: entry the critic reads. `state` gives the paper's symmetric critic;
        `privileged_state` an asymmetric one on the low-dimensional true state, with no point
        encoder, which costs a fraction of the compute on a CPU.

    Returns:
      Networks for `brax.training.agents.ppo.train`, with an unsquashed Gaussian policy.
    """
    common = dict(encoder=encoder, point_hidden=tuple(point_hidden), pooling=pooling,
                  activation=activation)
    policy = PointPolicy(PointTrunk(num_points, hidden=tuple(policy_hidden), **common),
                         action_size=action_size, init_std=init_std)
    value_points = num_points if value_obs_key == policy_obs_key else 0
    value = PointValue(PointTrunk(value_points, hidden=tuple(value_hidden), **common))
    policy_dummy = jnp.zeros((1, _obs_size(observation_size, policy_obs_key)))
    value_dummy = jnp.zeros((1, _obs_size(observation_size, value_obs_key)))

    def select(obs, key):
        return obs[key] if isinstance(obs, Mapping) else obs

    def policy_apply(processor_params, params, obs):
        obs = preprocess_observations_fn(select(obs, policy_obs_key), processor_params)
        return policy.apply(params, obs)

    def value_apply(processor_params, params, obs):
        obs = preprocess_observations_fn(select(obs, value_obs_key), processor_params)
        return value.apply(params, obs)

    return ppo_networks.PPONetworks(
        policy_network=networks.FeedForwardNetwork(
            init=lambda key: policy.init(key, policy_dummy), apply=policy_apply),
        value_network=networks.FeedForwardNetwork(
            init=lambda key: value.init(key, value_dummy), apply=value_apply),
        parametric_action_distribution=distribution.NormalDistribution(event_size=action_size),
    )
