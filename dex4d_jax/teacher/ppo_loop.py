"""Our PPO driver on Brax's building blocks, owning the whole training state.

Brax's `ppo.train` keeps its optimizer state, step count and random keys to itself, so a run
built on it can only be warm-started from parameters. This module runs the same algorithm with
Brax's loss (`losses.compute_ppo_loss`), gradient (`gradients.loss_and_pgrad`, pmean'ed over
devices), adaptive-KL learning rate (`optimizer.adaptive_kl_learning_rate` on
`optax.inject_hyperparams(optax.adam)` after `optax.clip_by_global_norm`), rollouts
(`acting.actor_step`, scanned as `acting.generate_unroll` does, keeping the environment's
per-step metrics too), inference function (`networks.make_inference_fn`, for evaluation) and observation
statistics (`running_statistics`), but the state between epochs is ours: a `LoopState` of
(training state, PRNG key, environment-step count) on the host, saved whole in one orbax
checkpoint and restored exactly.

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

import dataclasses
import functools
import json
import math
import os
import shutil
import time
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

AXIS = "i"
FORMAT = "dex4d-ppo/1"
TMP_MARKER = ".orbax-checkpoint-tmp"
_COMPLETE_MARKER = "_CHECKPOINT_METADATA"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the networks being trained."""


class TrainingDiverged(RuntimeError):
    """A loss, parameter or optimizer value became NaN or infinite; nothing was saved."""


@flax.struct.dataclass
class TrainingState:
    """Everything the learner carries from one iteration to the next (one device's copy)."""

    optimizer_state: Any
    params: ppo_losses.PPONetworkParams
    normalizer_params: running_statistics.RunningStatisticsState


@dataclasses.dataclass
class LoopState:
    """The whole state of a run between epochs, on the host.

    Attributes:
      training: the training state (numpy leaves).
      key: the PRNG key of the next epoch (uint32[2]).
      env_steps: environment steps trained so far.
    """

    training: TrainingState
    key: np.ndarray
    env_steps: int


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's environment steps divide into iterations and epochs.

    An iteration collects `batch_size * num_minibatches` trajectories of `unroll_length` steps
    and runs `num_updates_per_batch` passes of `num_minibatches` SGD steps over them; an epoch is
    `iterations_per_epoch` iterations followed by a checkpoint and an evaluation. As in Brax, a
    run has `num_evals - 1` epochs (fewer when the budget is too small for that many
    iterations), and ends at or a little past `num_timesteps`.
    """

    steps_per_iteration: int
    iterations_per_epoch: int
    num_epochs: int

    @property
    def steps_per_epoch(self) -> int:
        """Environment steps per epoch."""
        return self.steps_per_iteration * self.iterations_per_epoch

    @property
    def total_steps(self) -> int:
        """Environment steps at the end of the run."""
        return self.steps_per_epoch * self.num_epochs

    @classmethod
    def make(cls, per_iteration: int, num_timesteps: int, num_evals: int) -> Schedule:
        """`num_evals - 1` epochs of whole iterations covering `num_timesteps` steps."""
        iterations = math.ceil(num_timesteps / per_iteration)
        epochs = max(1, min(max(num_evals - 1, 1), iterations))
        iterations = max(1, math.ceil(num_timesteps / (epochs * per_iteration)))
        return cls(per_iteration, iterations, epochs)

    @classmethod
    def from_config(cls, ppo: config_dict.ConfigDict) -> Schedule:
        """The schedule of a config's `ppo` section."""
        per_iteration = ppo.batch_size * ppo.num_minibatches * ppo.unroll_length
        return cls.make(per_iteration, ppo.num_timesteps, ppo.num_evals)


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


def host(tree):
    """Numpy copies of a pytree's leaves."""
    return jax.tree.map(np.asarray, tree)


def unreplicate(tree):
    """Numpy copy of the first local device's slice of a pmap output."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)


def across_devices(name: str, value):
    """A metric over all devices: the largest of the maxima, the smallest minimum, the mean."""
    if "_max_" in name:
        return jax.lax.pmax(value, axis_name=AXIS)
    if "_min_" in name:
        return jax.lax.pmin(value, axis_name=AXIS)
    return jax.lax.pmean(value, axis_name=AXIS)


def all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class PPOLoop:
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
        self.schedule = Schedule.from_config(ppo)
        self.network = network
        self.optimizer = make_optimizer(ppo)
        self._raw_env = env
        self.env = wrappers.wrap_for_training(env, episode_length=ppo.episode_length)
        self.local_devices = jax.local_devices()[:max_devices]
        local = len(self.local_devices)
        self.device_count = local * jax.process_count()
        n, m = ppo.num_envs, ppo.num_minibatches
        if (ppo.batch_size * m) % n:
            raise ValueError(f"batch_size * num_minibatches ({ppo.batch_size * m}) must be a "
                             f"multiple of num_envs ({n}).")
        if n % self.device_count:
            raise ValueError(f"num_envs ({n}) must be a multiple of the {self.device_count} "
                             "devices.")
        self.envs_per_device = n // self.device_count
        self.unrolls = ppo.batch_size * m // n
        if (self.envs_per_device * self.unrolls) % m:
            raise ValueError(
                f"Each device holds {self.envs_per_device * self.unrolls} trajectories per "
                f"iteration, which must be a multiple of num_minibatches ({m}).")
        first = jax.process_index() * local * self.envs_per_device
        self._env_ids = (first + np.arange(local * self.envs_per_device, dtype=np.int32)
                         ).reshape(local, self.envs_per_device)
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
        self._epoch = jax.pmap(self._epoch_fn, axis_name=AXIS, in_axes=(0, None, 0),
                               devices=self.local_devices)

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
        return LoopState(host(training), np.asarray(key), 0)

    def warm_start(self, state: LoopState, normalizer, policy, value, source: str) -> LoopState:
        """`state` with another run's parameters and normaliser, a fresh optimizer and step 0.

        Raises CheckpointError naming `source` when the parameters do not fit the networks.
        """
        template = state.training
        given = {"policy": policy, "value": value}
        for name, tree in given.items():
            check_fits(getattr(template.params, name), tree, f"{name} parameters", source)
        normalizer = _into(template.normalizer_params,
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
        metrics = {k: across_devices(k, jnp.mean(v)) for k, v in metrics.items()}
        finite = jnp.logical_and(all_finite(training), all_finite(metrics))
        return training, metrics, finite

    def run_epoch(self, state: LoopState) -> tuple[LoopState, dict[str, float], bool]:
        """One epoch from `state`: (next state, `training/...` metrics, all values finite)."""
        key, epoch_key = jax.random.split(jnp.asarray(state.key))
        local = len(self.local_devices)
        replicated = jax.tree.map(lambda x: np.broadcast_to(x, (local,) + x.shape),
                                  state.training)
        start = time.time()
        training, metrics, finite = self._epoch(replicated, epoch_key, self._env_ids)
        metrics = {k: float(v) for k, v in unreplicate(metrics).items()}
        seconds = time.time() - start
        finite = bool(np.all(np.asarray(finite))) and all(map(math.isfinite, metrics.values()))
        metrics = {"training/sps": self.schedule.steps_per_epoch / seconds,
                   **{f"training/{k}": v for k, v in metrics.items()}}
        steps = state.env_steps + self.schedule.steps_per_epoch
        return LoopState(unreplicate(training), np.asarray(key), steps), metrics, finite

    def inference_params(self, state: LoopState):
        """(normaliser, policy, value) params for Brax's inference function."""
        t = state.training
        return t.normalizer_params, t.params.policy, t.params.value


# -- checkpoints ------------------------------------------------------------------------------
#
# checkpoints/<step, 12 digits>/     one orbax checkpoint (written to a *.orbax-checkpoint-tmp-*
#   state/                            folder and renamed when complete), with two items:
#     params/{policy,value}           Flax parameter dicts
#     normalizer                      the running statistics (mean, std, count, ...)
#     optimizer                       the optax state's leaves, in tree order
#     key                             the PRNG key of the next epoch
#   meta/                             JSON: format, step, epoch, optimizer tree description


def _checkpointer():
    from orbax import checkpoint as ocp  # noqa: PLC0415

    options = ocp.options.MultiprocessingOptions()
    if jax.process_count() > 1:  # Only process 0 saves; the others must not wait for it.
        options = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler(), multiprocessing_options=options)


def is_complete(path: str) -> bool:
    """Whether `path` is a finished checkpoint (orbax renames it into place when done)."""
    name = os.path.basename(os.path.normpath(path))
    return (name.isdigit() and os.path.isdir(path)
            and os.path.isfile(os.path.join(path, _COMPLETE_MARKER)))


def remove_stale_tmp(root: str) -> list[str]:
    """Deletes the folders of saves that were interrupted (never complete); returns them."""
    if not os.path.isdir(root):
        return []
    stale = [os.path.join(root, n) for n in os.listdir(root) if TMP_MARKER in n]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


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
    return write_checkpoint(root, state.env_steps, tree, t.optimizer_state, epoch, FORMAT,
                            extra_meta)


def write_checkpoint(root: str, step: int, tree, optimizer_state, epoch: int, fmt: str,
                     extra_meta: dict | None = None) -> str:
    """Writes `tree` (numpy leaves) and JSON metadata to `root/<step>` atomically.

    The metadata records `fmt`, the step, the epoch and the optimizer state's tree structure
    (checked on restore); returns the checkpoint's path.
    """
    from orbax import checkpoint as ocp  # noqa: PLC0415

    path = os.path.join(root, f"{step:012d}")
    meta = {"format": fmt, "step": int(step), "epoch": int(epoch),
            "optimizer_tree": str(jax.tree.structure(optimizer_state)), **(extra_meta or {})}
    _checkpointer().save(path, ocp.args.Composite(
        state=ocp.args.StandardSave(jax.tree.map(np.asarray, tree)),
        meta=ocp.args.JsonSave(meta)))
    return path


def read_checkpoint(path: str, fmt: str = FORMAT):
    """(state tree of numpy arrays, metadata) of a checkpoint of format `fmt`, failing clearly."""
    from orbax import checkpoint as ocp  # noqa: PLC0415

    if not os.path.isdir(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        restored = _checkpointer().restore(path, ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        tree, meta = restored["state"], restored["meta"]
        if not isinstance(meta, dict) or meta.get("format") != fmt:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                             f", expected {fmt!r}")
    except Exception as err:  # orbax raises many types for truncated or foreign files
        raise CheckpointError(
            f"Checkpoint {path} could not be read ({type(err).__name__}: {err}). It is corrupt "
            "or not a dex4d-jax checkpoint; move it aside to use an earlier one.") from err
    return jax.tree.map(np.asarray, tree), meta


def read_meta(path: str) -> dict:
    """The JSON metadata of a checkpoint (format, step, epoch, ...)."""
    return read_checkpoint(path)[1]


def _normalizer_from(state_dict):
    spec = jax.tree.map(lambda m: specs.Array(m.shape, jnp.dtype("float32")), state_dict["mean"])
    return _into(running_statistics.init_state(spec), state_dict, "normaliser", "checkpoint")


def load_inference_params(path: str):
    """(normaliser, policy, value) params of a checkpoint, for Brax's inference function."""
    tree, _ = read_checkpoint(path)
    return (_normalizer_from(tree["normalizer"]), tree["params"]["policy"],
            tree["params"]["value"])


def _describe(tree, dtypes: bool) -> dict:
    return {jax.tree_util.keystr(p): (tuple(np.shape(x)),
                                      str(np.asarray(x).dtype) if dtypes else "")
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_fits(template, given, what: str, source: str, dtypes: bool = True) -> None:
    want, got = _describe(template, dtypes), _describe(given, dtypes)
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise CheckpointError(
            f"The {what} in {source} do not fit the networks of this run (first differences: "
            f"{diff}). Use a checkpoint trained with the same network and environment settings.")


def _into(template, state_dict, what: str, source: str):
    """`state_dict` (a restored tree) in the structure and dtypes of `template`."""
    try:
        tree = serialization.from_state_dict(template, state_dict)
    except Exception as err:
        raise CheckpointError(f"The {what} in {source} do not fit this run: {err}") from err
    check_fits(template, tree, what, source, dtypes=False)
    return jax.tree.map(lambda t, x: np.asarray(x, dtype=np.asarray(t).dtype), template, tree)


def restore_checkpoint(path: str, template: LoopState) -> LoopState:
    """The full loop state saved at `path`, in the structure of `template` (a fresh state)."""
    tree, meta = read_checkpoint(path)
    t = template.training
    params = ppo_losses.PPONetworkParams(policy=tree["params"]["policy"],
                                         value=tree["params"]["value"])
    check_fits(t.params, params, "parameters", path)
    normalizer = _into(t.normalizer_params, tree["normalizer"], "normaliser", path)
    optimizer_state = restore_optimizer(t.optimizer_state, tree["optimizer"], meta, path)
    training = TrainingState(optimizer_state=optimizer_state, params=params,
                             normalizer_params=normalizer)
    return LoopState(training, np.asarray(tree["key"], dtype=np.uint32), int(meta["step"]))


def restore_optimizer(template, saved: list, meta: dict, path: str):
    """The optimizer state saved as `saved` leaves, in the structure of `template`."""
    leaves, treedef = jax.tree.flatten(template)
    if (meta.get("optimizer_tree") != str(treedef) or len(saved) != len(leaves)
            or any(np.shape(a) != np.shape(b) for a, b in zip(saved, leaves, strict=True))):
        raise CheckpointError(f"The optimizer state in {path} does not fit this run's optimizer.")
    return jax.tree.unflatten(
        treedef, [np.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(saved, leaves,
                                                                         strict=True)])


def describe_checkpoint(path: str) -> str:
    """A one-line JSON summary of a checkpoint's metadata (for logs)."""
    return json.dumps(read_meta(path))
