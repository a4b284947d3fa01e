"""DAgger distillation of a teacher into the student (SPEC section 6), jitted end to end.

One iteration, on every local device at once (`jax.pmap`), in one compiled program per epoch:

1. The student acts for `unroll_length` steps in `num_envs` environments (Brax's vmapped
   training wrappers, fresh auto-resets). It sees what the robot would: joint angles and
   velocities, the last action and 64 masked paired points (`masking.py`: a plane mask drawn
   per episode, height occlusion and noise per step). With `beta > 0` each environment takes
   the teacher's action instead with probability beta (decaying linearly to 0 over the first
   `beta_decay` fraction of the run); `beta = 0` is the authors' code: the student acts.
2. The teacher labels every visited state with its deterministic action, from the full
   observation (all 128 points and its privileged state). Its parameters are an input of the
   compiled program, never an output: distillation cannot change them.
3. `num_updates_per_batch` passes of `num_minibatches` Adam steps on Eq. 3: L1 between student
   and teacher actions, plus L1 between the predicted and the true next joint angles and
   velocities (`world_model_weight`, 0 for the "w/o world modelling" ablation). A transition
   whose episode ended has no next state and is left out of the world-model terms.

Randomness and batches do not depend on the number of devices: environment, mask and beta
keys are folded from each environment's global index; minibatch `j` takes, from every
environment, the steps of its own permutation's `j`-th block; the losses are sums over each
device's share divided by the global count, and gradients are summed across devices. One
device and several therefore compute the same update up to float rounding.

Like the teacher's PPO (teacher/ppo.py), environments are reset at the start of each epoch from
that epoch's key, and the state between epochs (student parameters, Adam state, PRNG key,
step) is on the host and saved whole, so a resumed run is bitwise the uninterrupted one.

Logged losses are measured on each minibatch before the Adam step that trains on it, so with
one pass per batch they are held-out figures for the student that collected the data. The
"nothing changes" predictor (next state = current state) is logged beside the world model.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import config_dict

from dex4d_jax import wrappers
from dex4d_jax.student.policy import StudentInputs, StudentPolicy
from dex4d_jax.training import checkpoint, loop
from dex4d_jax.training.loop import AXIS, LoopState

FORMAT = checkpoint.DAGGER_FORMAT


class Sample(NamedTuple):
    """One labelled transition."""

    inputs: StudentInputs
    teacher_action: jax.Array
    next_qpos: jax.Array
    next_qvel: jax.Array
    valid: jax.Array  # 1 where the next state belongs to the same episode


def _per_env(key: jax.Array, env_ids: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, env_ids)


@flax.struct.dataclass
class StudentTrainingState:
    """The learner's state (one device's copy)."""

    optimizer_state: Any
    params: Any


def _l1(pred, target, weight=None):
    """(sum of |pred - target| over the rows where weight is 1, number of entries)."""
    err = jnp.abs(pred - target)
    if weight is None:
        weight = jnp.ones(err.shape[:-1], err.dtype)
    return jnp.sum(err * weight[..., None]), jnp.sum(weight) * err.shape[-1]


class DAgger:
    """DAgger on all local devices.

    Args:
      env: the unwrapped environment (it must have a `student_layout`).
      policy: the StudentPolicy.
      teacher_fn: `(teacher params, batched obs) -> action`, the teacher's deterministic action.
      dagger: the config's `dagger` section.
      max_devices: use at most this many local devices (default: all).
    """

    def __init__(self, env, policy: StudentPolicy, teacher_fn, dagger: config_dict.ConfigDict,
                 max_devices: int | None = None):
        self.cfg = dagger
        self.policy = policy
        self.teacher_fn = teacher_fn
        self._raw_env = env
        self.env = wrappers.wrap_for_training(env, episode_length=dagger.episode_length)
        n, t, m = dagger.num_envs, dagger.unroll_length, dagger.num_minibatches
        if t % m:
            raise ValueError(f"unroll_length ({t}) must be a multiple of num_minibatches ({m}): "
                             "each minibatch takes unroll_length / num_minibatches steps of "
                             "every environment.")
        self.schedule = loop.Schedule.make(n * t, dagger.num_timesteps, dagger.num_evals)
        self.layout = loop.DeviceLayout(n, max_devices)
        self.envs_per_device = self.layout.envs_per_device
        adam = optax.adam(dagger.learning_rate)
        self.optimizer = (adam if dagger.max_grad_norm is None else
                          optax.chain(optax.clip_by_global_norm(dagger.max_grad_norm), adam))
        self._epoch = self.layout.pmap(self._epoch_fn, num_inputs=2)

    # -- state ------------------------------------------------------------------------------

    def init_state(self, seed: int) -> LoopState:
        """Fresh student parameters and Adam state from `seed`, at step 0."""
        key_init, key = jax.random.split(jax.random.PRNGKey(seed))
        obs = jax.eval_shape(self._raw_env.reset, jax.random.PRNGKey(0)).obs
        obs = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), obs)
        params = self.policy.init(key_init, obs)
        training = StudentTrainingState(optimizer_state=self.optimizer.init(params),
                                        params=params)
        return LoopState(loop.host(training), np.asarray(key), 0)

    # -- one epoch --------------------------------------------------------------------------

    def beta(self, env_steps) -> jax.Array:
        """The probability of executing the teacher's action after `env_steps` steps."""
        cfg = self.cfg
        if cfg.beta <= 0:
            return jnp.zeros((), jnp.float32)
        total = self.schedule.total_steps
        frac = jnp.asarray(env_steps, jnp.float32) / (max(cfg.beta_decay, 1e-9) * total)
        return cfg.beta * jnp.clip(1.0 - frac, 0.0, 1.0)

    def _loss(self, params, batch: Sample):
        out = self.policy.apply(params, batch.inputs)
        parts = {"action": _l1(out["action"], batch.teacher_action)}
        inputs = batch.inputs
        for name, pred, now, nxt in (("next_qpos", out["next_qpos"], inputs.qpos, batch.next_qpos),
                                     ("next_qvel", out["next_qvel"], inputs.qvel, batch.next_qvel)):
            parts[name] = _l1(pred, nxt, batch.valid)
            parts[f"{name}_unchanged"] = _l1(now, nxt, batch.valid)  # "nothing changes"
        terms = {}
        for name, (total, count) in parts.items():
            # The mean over all devices' samples: a local sum over the global count.
            terms[name] = total / jnp.maximum(jax.lax.psum(count, AXIS), 1.0)
        w = self.cfg.world_model_weight
        loss = terms["action"] + w * (terms["next_qpos"] + terms["next_qvel"])
        return loss, terms

    def _sgd_step(self, carry, minibatch):
        optimizer_state, params = carry
        grads, terms = jax.grad(self._loss, has_aux=True)(params, minibatch)
        grads = jax.lax.psum(grads, AXIS)
        terms = jax.lax.psum(terms, AXIS)
        updates, optimizer_state = self.optimizer.update(grads, optimizer_state, params)
        return (optimizer_state, optax.apply_updates(params, updates)), terms

    def _iteration(self, carry, _, teacher_params, env_ids):
        training, env_state, indices, key, env_steps = carry
        key, key_unroll, key_sgd = jax.random.split(key, 3)
        beta = self.beta(env_steps)
        policy = self.policy

        def env_step(c, _):
            state, indices, k = c
            k, k_mask, k_beta, k_plane = jax.random.split(k, 4)
            inputs = policy.inputs(state.obs, indices, _per_env(k_mask, env_ids))
            student_action = policy.act(training.params, inputs)
            teacher_action = self.teacher_fn(teacher_params, state.obs)
            use_teacher = jax.vmap(jax.random.uniform)(_per_env(k_beta, env_ids)) < beta
            action = jnp.where(use_teacher[:, None], teacher_action, student_action)
            state = self.env.step(state, action)
            # A finished episode restarts with a new object and pose: a new plane mask.
            fresh = policy.episode_indices(state.obs, _per_env(k_plane, env_ids))
            indices = jnp.where(state.done[:, None] > 0, fresh, indices)
            next_qpos, next_qvel, _, _ = policy.layout.split(state.obs)
            sample = Sample(inputs, teacher_action, next_qpos, next_qvel, 1.0 - state.done)
            metrics = {f"env/{k}": jnp.mean(v) for k, v in state.metrics.items()}
            metrics["action_gap"] = jnp.mean(jnp.abs(student_action - teacher_action))
            return (state, indices, k), (sample, metrics)

        (env_state, indices, _), (data, env_metrics) = jax.lax.scan(
            env_step, (env_state, indices, key_unroll), None, length=self.cfg.unroll_length)
        # [T, envs, ...] -> [envs, T, ...]; each environment's steps in their own random order,
        # then minibatch j takes every environment's j-th block: [m, envs * T / m, ...].
        m = self.cfg.num_minibatches

        def sgd_pass(c, k):
            perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(k, e),
                                                              self.cfg.unroll_length))(env_ids)

            def split(x):  # explicit sizes: some leaves are empty (no joint angles)
                envs, steps = x.shape[1], x.shape[0]
                x = jnp.swapaxes(x, 0, 1)
                x = jax.vmap(lambda env_steps, perm: env_steps[perm])(x, perms)
                x = x.reshape((envs, m, steps // m) + x.shape[2:])
                x = jnp.swapaxes(x, 0, 1)
                return x.reshape((m, envs * (steps // m)) + x.shape[3:])

            return jax.lax.scan(self._sgd_step, c, jax.tree.map(split, data))

        pass_keys = jax.random.split(key_sgd, self.cfg.num_updates_per_batch)
        (optimizer_state, params), terms = jax.lax.scan(
            sgd_pass, (training.optimizer_state, training.params), pass_keys)
        # Held-out figures: the first pass, before each minibatch's own step.
        metrics = {f"loss/{k}": v[0] for k, v in terms.items()}
        metrics.update(env_metrics)
        metrics["beta"] = beta
        training = StudentTrainingState(optimizer_state=optimizer_state, params=params)
        steps = env_steps + self.schedule.steps_per_iteration
        return (training, env_state, indices, key, steps), metrics

    def _epoch_fn(self, training, key, env_steps, teacher_params, env_ids):
        key_reset, key_plane, key = jax.random.split(key, 3)
        env_state = self.env.reset(_per_env(key_reset, env_ids))
        indices = self.policy.episode_indices(env_state.obs, _per_env(key_plane, env_ids))
        carry = (training, env_state, indices, key, env_steps)
        (training, *_), metrics = jax.lax.scan(
            functools.partial(self._iteration, teacher_params=teacher_params, env_ids=env_ids),
            carry, None, length=self.schedule.iterations_per_epoch)
        metrics, finite = loop.epoch_summary(training, metrics)
        return training, metrics, finite

    def run_epoch(self, state: LoopState, teacher_params
                  ) -> tuple[LoopState, dict[str, float], bool]:
        """One epoch from `state`: (next state, `training/...` metrics, all values finite)."""
        return loop.run_epoch(self._epoch, self.layout, state, self.schedule.steps_per_epoch,
                              np.int32(state.env_steps), teacher_params)


# -- checkpoints ------------------------------------------------------------------------------
#
# The format of training/checkpoint.py, "dex4d-dagger/1", with the state tree
#   params      the student's Flax parameters
#   optimizer   the optax state's leaves, in tree order
#   key         the PRNG key of the next epoch
# (training/policies.load_student_params reads the parameters without this module.)


def save_checkpoint(root: str, state: LoopState, epoch: int) -> str:
    """Writes the whole DAgger state to `root/<step>` atomically; returns the path."""
    t = state.training
    tree = {"params": t.params, "optimizer": jax.tree.leaves(t.optimizer_state),
            "key": state.key}
    return checkpoint.write_checkpoint(root, state.env_steps, tree, t.optimizer_state, epoch,
                                       FORMAT)


def restore_checkpoint(path: str, template: LoopState) -> LoopState:
    """The full DAgger state saved at `path`, in the structure of `template` (a fresh state).

    Raises checkpoint.CheckpointError when the saved state does not fit the template.
    """
    tree, meta = checkpoint.read_checkpoint(path, FORMAT)
    t = template.training
    params = tree["params"]
    checkpoint.check_fits(t.params, params, "student parameters", path)
    optimizer_state = checkpoint.restore_optimizer(t.optimizer_state, tree["optimizer"], meta,
                                                   path)
    training = StudentTrainingState(optimizer_state=optimizer_state, params=params)
    return LoopState(training, np.asarray(tree["key"], dtype=np.uint32), int(meta["step"]))
