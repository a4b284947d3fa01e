"""Our PPO driver on Brax's building blocks, owning the whole training state.

Brax's `ppo.train` keeps its optimizer state, step count and random keys to itself, so a run
built on it can only be warm-started from parameters. This module runs the same algorithm with
Brax's loss (`losses.compute_ppo_loss`), gradient (`gradients.loss_and_pgrad`, pmean'ed over
devices), adaptive-KL learning rate (`optimizer.adaptive_kl_learning_rate` on
`optax.inject_hyperparams(optax.adam)` after `optax.clip_by_global_norm`), rollouts
(`acting.actor_step`, scanned as `acting.generate_unroll` does, keeping the environment's
per-step metrics too), inference function (`networks.make_inference_fn`, for evaluation)
and observation statistics (`running_statistics`), but the state between epochs is ours: a `LoopState` of
(training state, PRNG key, environment-step count) on the host (dex4d_jax/training/loop.py),
saved whole in one orbax checkpoint and restored exactly.

Differences from Brax's trainer, all deliberate:
  * Randomness does not depend on the number of devices. Each environment's reset and action
    noise keys are folded from its *global* index, and minibatches are drawn by a random
    stratified assignment: the trajectories of an iteration, numbered environment-major by
    global environment index, fall into blocks of `num_minibatches` consecutive ones, and a
    permutation keyed by the block's global index sends one trajectory of each block to each
    minibatch. The same trajectories therefore meet in the same minibatch whether the
    environments live on one device or several. What still differs is the advantage
    normalisation inside Brax's loss, which uses the statistics of each device's share of a
    minibatch (set `ppo.normalize_advantage=False` for runs that agree to float rounding).
  * Environments are reset at the start of every epoch, from that epoch's key. A resumed run
    therefore re-creates exactly the environment states the uninterrupted run had, and the two
    are bitwise identical; the cost is that an episode running at an epoch boundary is cut
    short (it ends without a terminal flag, like any rollout boundary, and GAE bootstraps it).
  * The state crosses the host between epochs (it is checkpointed every epoch anyway), so
    every epoch sees the same input types whether it follows another epoch or a restore.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.training import acting, gradients
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import losses as ppo_losses
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import optimizer as ppo_optimizer
from flax import serialization
from ml_collections import config_dict

from dex4d_jax import wrappers
from dex4d_jax.training import checkpoint, loop
from dex4d_jax.training.loop import AXIS, LoopState

FORMAT = checkpoint.PPO_FORMAT


@flax.struct.dataclass
class TrainingState:
    """Everything the learner carries from one iteration to the next (one device's copy)."""

    optimizer_state: Any
    params: ppo_losses.PPONetworkParams
    normalizer_params: running_statistics.RunningStatisticsState


def make_optimizer(ppo: config_dict.ConfigDict) -> optax.GradientTransformation:
    """Adam with an injectable learning rate, after global-norm clipping when configured.

    The learning rate is always an injected hyperparameter (Brax injects it only for the
    adaptive-KL schedule), so the optimizer state has one layout whatever the schedule.
    """
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=ppo.learning_rate)
    if ppo.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(ppo.max_grad_norm), adam)


def _adaptive(ppo) -> bool:
    schedule = ppo.learning_rate_schedule or ppo_optimizer.LRSchedule.NONE
    return ppo_optimizer.LRSchedule(schedule) == ppo_optimizer.LRSchedule.ADAPTIVE_KL


def schedule_of(ppo: config_dict.ConfigDict) -> loop.Schedule:
    """The schedule of a config's `ppo` section: an iteration is `batch_size *
    num_minibatches` trajectories of `unroll_length` steps.
    """
    per_iteration = ppo.batch_size * ppo.num_minibatches * ppo.unroll_length
    return loop.Schedule.make(per_iteration, ppo.num_timesteps, ppo.num_evals)


class PPO:
    """PPO on all local devices (and all processes of a `jax.distributed` job).

    Args:
      env: the unwrapped environment (one episode per call); it is vmapped, given episodes of
        `ppo.episode_length` steps and fresh auto-resets by `wrappers.wrap_for_training`.
      network: Brax `PPONetworks` for the environment's observation and action sizes.
      ppo: the config's `ppo` section.
      max_devices: use at most this many local devices (default: all).
    """

    def __init__(self, env, network: ppo_networks.PPONetworks, ppo: config_dict.ConfigDict,
                 max_devices: int | None = None):
        self.ppo = ppo
        self.schedule = schedule_of(ppo)
        self.network = network
        self.optimizer = make_optimizer(ppo)
        self._raw_env = env
        self.env = wrappers.wrap_for_training(env, episode_length=ppo.episode_length)
        n, m = ppo.num_envs, ppo.num_minibatches
        if (ppo.batch_size * m) % n:
            raise ValueError(f"batch_size * num_minibatches ({ppo.batch_size * m}) must be a "
                             f"multiple of num_envs ({n}).")
        self.layout = loop.DeviceLayout(n, max_devices)
        self.envs_per_device = self.layout.envs_per_device
        self.unrolls = ppo.batch_size * m // n
        if (self.envs_per_device * self.unrolls) % m:
            raise ValueError(
                f"Each device holds {self.envs_per_device * self.unrolls} trajectories per "
                f"iteration, which must be a multiple of num_minibatches ({m}).")
        self._loss_and_grad = gradients.loss_and_pgrad(
            functools.partial(
                ppo_losses.compute_ppo_loss,
                ppo_network=network,
                entropy_cost=ppo.entropy_cost,
                discounting=ppo.discounting,
                reward_scaling=ppo.reward_scaling,
                gae_lambda=ppo.gae_lambda,
                clipping_epsilon=ppo.clipping_epsilon,
                normalize_advantage=ppo.get("normalize_advantage", True),
                vf_coefficient=ppo.vf_loss_coefficient,
            ),
            pmap_axis_name=AXIS,
            has_aux=True,
        )
        self._epoch = self.layout.pmap(self._epoch_fn)

    # -- state ------------------------------------------------------------------------------

    def observation_spec(self):
        """The observation's per-entry shapes, as running-statistics specs."""
        obs = jax.eval_shape(self._raw_env.reset, jax.random.PRNGKey(0)).obs
        return jax.tree.map(lambda x: specs.Array(x.shape[-1:], jnp.dtype("float32")), obs)

    def init_state(self, seed: int) -> LoopState:
        """Fresh parameters and optimizer from `seed`, at step 0."""
        key_policy, key_value, key = jax.random.split(jax.random.PRNGKey(seed), 3)
        params = ppo_losses.PPONetworkParams(
            policy=self.network.policy_network.init(key_policy),
            value=self.network.value_network.init(key_value))
        return self._fresh(params, running_statistics.init_state(self.observation_spec()), key)

    def _fresh(self, params, normalizer, key) -> LoopState:
        training = TrainingState(optimizer_state=self.optimizer.init(params), params=params,
                                 normalizer_params=normalizer)
        return LoopState(loop.host(training), np.asarray(key), 0)

    def warm_start(self, state: LoopState, normalizer, policy, value, source: str) -> LoopState:
        """`state` with another run's parameters and normaliser, a fresh optimizer and step 0.

        Raises checkpoint.CheckpointError naming `source` when the parameters do not fit the
        networks.
        """
        template = state.training
        given = {"policy": policy, "value": value}
        for name, tree in given.items():
            checkpoint.check_fits(getattr(template.params, name), tree, f"{name} parameters",
                                  source)
        normalizer = checkpoint.fit_tree(template.normalizer_params,
                           serialization.to_state_dict(normalizer), "normaliser", source)
        params = ppo_losses.PPONetworkParams(
            policy=jax.tree.map(np.asarray, policy), value=jax.tree.map(np.asarray, value))
        return self._fresh(params, normalizer, state.key)

    # -- one epoch --------------------------------------------------------------------------

    def _acting_policy(self, params, env_ids):
        """The stochastic policy with one noise key per environment, folded from its index.

        The network runs on the whole batch; only the Gaussian noise is drawn per environment.
        The extras are those of Brax's `make_inference_fn` policy.
        """
        normalizer, policy_params, _ = params
        dist = self.network.parametric_action_distribution

        def act(obs, key):
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_ids)
            logits = self.network.policy_network.apply(normalizer, policy_params, obs)
            raw = jax.vmap(dist.sample_no_postprocessing)(logits, keys)
            extras = {"log_prob": dist.log_prob(logits, raw), "raw_action": raw,
                      "distribution_params": logits}
            return dist.postprocess(raw), extras

        return act

    def _minibatches(self, data, key, env_ids):
        """[trajectories, T, ...] -> [num_minibatches, trajectories / num_minibatches, T, ...].

        Trajectory i of this device is global trajectory env_ids[0] * unrolls + i; each block of
        num_minibatches consecutive ones gives one trajectory to every minibatch, in an order
        drawn from the key folded with the block's global index.
        """
        m = self.ppo.num_minibatches
        blocks_here = self.envs_per_device * self.unrolls // m
        first_block = env_ids[0] * self.unrolls // m
        block_ids = first_block + jnp.arange(blocks_here)
        perms = jax.vmap(lambda b: jax.random.permutation(jax.random.fold_in(key, b), m))(
            block_ids)

        def split(x):
            x = x.reshape((blocks_here, m) + x.shape[1:])
            x = jax.vmap(lambda block, perm: block[perm])(x, perms)
            return jnp.swapaxes(x, 0, 1)

        return jax.tree.map(split, data)

    def _sgd_step(self, carry, minibatch, normalizer):
        optimizer_state, params, key = carry
        key, key_loss = jax.random.split(key)
        (_, metrics), grads = self._loss_and_grad(params, normalizer, minibatch, key_loss)
        if _adaptive(self.ppo):
            kl = jax.lax.pmean(metrics["kl_mean"], axis_name=AXIS)
            optimizer_state, lr = ppo_optimizer.adaptive_kl_learning_rate(
                optimizer_state, kl, self.ppo.desired_kl)
        else:
            lr = jnp.asarray(self.ppo.learning_rate, jnp.float32)
        metrics["learning_rate"] = lr
        updates, optimizer_state = self.optimizer.update(grads, optimizer_state)
        return (optimizer_state, optax.apply_updates(params, updates), key), metrics

    def _iteration(self, carry, _, env_ids):
        training, env_state, key = carry
        key, key_unroll, key_sgd = jax.random.split(key, 3)
        policy = self._acting_policy(
            (training.normalizer_params, training.params.policy, training.params.value), env_ids)

        def env_step(c, _):
            # Brax's generate_unroll step, also keeping the environment's per-step metrics
            # (reward terms, success, ...) averaged over the environments.
            state, k = c
            k, k_next = jax.random.split(k)
            state, transition = acting.actor_step(self.env, state, policy, k,
                                                  extra_fields=("truncation",))
            return (state, k_next), (transition, jax.tree.map(jnp.mean, state.metrics))

        def unroll(c, _):
            state, k = c
            k, k_now = jax.random.split(k)
            (state, _), out = jax.lax.scan(env_step, (state, k_now), None,
                                           length=self.ppo.unroll_length)
            return (state, k), out

        (env_state, _), (data, env_metrics) = jax.lax.scan(
            unroll, (env_state, key_unroll), None, length=self.unrolls)
        # [unrolls, T, envs, ...] -> [envs * unrolls, T, ...], environment-major.
        data = jax.tree.map(
            lambda x: jnp.moveaxis(x, 2, 0).reshape((-1,) + x.shape[1:2] + x.shape[3:]), data)
        normalizer = training.normalizer_params
        update_stats = functools.partial(running_statistics.update, batch=data.observation,
                                         pmap_axis_name=AXIS)
        if not _adaptive(self.ppo):  # Brax's order: before the update, or after it with KL.
            normalizer = update_stats(normalizer)

        def sgd_pass(c, _):
            optimizer_state, params, k = c
            k, k_perm, k_steps = jax.random.split(k, 3)
            minibatches = self._minibatches(data, k_perm, env_ids)
            (optimizer_state, params, _), metrics = jax.lax.scan(
                functools.partial(self._sgd_step, normalizer=normalizer),
                (optimizer_state, params, k_steps), minibatches)
            return (optimizer_state, params, k), metrics

        (optimizer_state, params, _), metrics = jax.lax.scan(
            sgd_pass, (training.optimizer_state, training.params, key_sgd), None,
            length=self.ppo.num_updates_per_batch)
        if _adaptive(self.ppo):
            normalizer = update_stats(normalizer)
        training = TrainingState(optimizer_state=optimizer_state, params=params,
                                 normalizer_params=normalizer)
        metrics.update({f"env/{k}": v for k, v in env_metrics.items()})
        return (training, env_state, key), metrics

    def _epoch_fn(self, training, key, env_ids):
        key_reset, key = jax.random.split(key)
        env_state = self.env.reset(
            jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key_reset, env_ids))
        (training, _, _), metrics = jax.lax.scan(
            functools.partial(self._iteration, env_ids=env_ids), (training, env_state, key), None,
            length=self.schedule.iterations_per_epoch)
        metrics, finite = loop.epoch_summary(training, metrics)
        return training, metrics, finite

    def run_epoch(self, state: LoopState) -> tuple[LoopState, dict[str, float], bool]:
        """One epoch from `state`: (next state, `training/...` metrics, all values finite)."""
        return loop.run_epoch(self._epoch, self.layout, state, self.schedule.steps_per_epoch)

    def inference_params(self, state: LoopState):
        """(normaliser, policy, value) params for Brax's inference function."""
        t = state.training
        return t.normalizer_params, t.params.policy, t.params.value


# -- checkpoints ------------------------------------------------------------------------------
#
# The format of training/checkpoint.py, "dex4d-ppo/1", with the state tree
#   params/{policy,value}   Flax parameter dicts
#   normalizer              the running statistics (mean, std, count, ...)
#   optimizer               the optax state's leaves, in tree order
#   key                     the PRNG key of the next epoch
# (training/policies.py reads the policy of such a checkpoint without this module.)


def save_checkpoint(root: str, state: LoopState, epoch: int, extra_meta: dict | None = None
                    ) -> str:
    """Writes `state` to `root/<step>` atomically and returns that path."""
    t = state.training
    tree = {
        "params": {"policy": t.params.policy, "value": t.params.value},
        "normalizer": serialization.to_state_dict(t.normalizer_params),
        "optimizer": jax.tree.leaves(t.optimizer_state),
        "key": state.key,
    }
    return checkpoint.write_checkpoint(root, state.env_steps, tree, t.optimizer_state, epoch,
                                       FORMAT, extra_meta)


def restore_checkpoint(path: str, template: LoopState) -> LoopState:
    """The full loop state saved at `path`, in the structure of `template` (a fresh state).

    Raises checkpoint.CheckpointError when the saved state does not fit the template.
    """
    tree, meta = checkpoint.read_checkpoint(path, FORMAT)
    t = template.training
    params = ppo_losses.PPONetworkParams(policy=tree["params"]["policy"],
                                         value=tree["params"]["value"])
    checkpoint.check_fits(t.params, params, "parameters", path)
    normalizer = checkpoint.fit_tree(t.normalizer_params, tree["normalizer"], "normaliser", path)
    optimizer_state = checkpoint.restore_optimizer(t.optimizer_state, tree["optimizer"], meta,
                                                   path)
    training = TrainingState(optimizer_state=optimizer_state, params=params,
                             normalizer_params=normalizer)
    return LoopState(training, np.asarray(tree["key"], dtype=np.uint32), int(meta["step"]))
