"""Rollouts of a trained policy for videos: `dex4d render` and training's `--video-every`.

The rollout runs in the MJX environment, jitted once (`make_rollout`): one `lax.scan` over the
episode with the environment vmapped over episodes, recording per control step the model's
qpos, the object's keypoints and the goal's keypoints (world frame), the point distance d_t
(paper Eq. 4), success (d_t below the environment's threshold) and the goals held so far.
`to_rollout` turns it into a `rollout_file.Rollout`, whose `model_xml` is the scene holding the
episodes' object (`video.scene_spec`), and `video.write_video` renders that natively (no JAX),
so a recorded rollout can be rendered again without the policy.

One object per render: the rollout file has one scene, so every episode of a render holds the
same object. Episode `i` is the environment's own reset (`env.reset`) of the i-th key, among
`fold_in(PRNGKey(seed), 0, 1, ...)`, that draws that object (`episode_keys`): the first key's
object unless one is asked for. Start poses and goals differ between episodes.

`TrainingVideos` is the trainers' `policy_params_fn` for `--video-every`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dex4d_jax import geometry
from dex4d_jax.viz import rollout_file, video

# ------------------------------------------------------------------------------------------------
# The rollout (JAX).
# ------------------------------------------------------------------------------------------------


class Steps(NamedTuple):
    """A batch of recorded episodes (leaves [B, T, ...]; world frame, metres).

    Attributes:
      qpos: [B, T, nq] float32, the model's generalized positions after each control step.
      points: [B, T, N, 3] float32, the object's keypoints after the step.
      targets: [B, T, N, 3] float32, the keypoints of the goal that step was scored against.
      distance: [B, T] float32, mean point distance d_t between them (Eq. 4).
      success: [B, T] bool, d_t below the environment's success threshold.
      goals_reached: [B, T] int32, goals held so far in the episode.
      object_id: [B] int32, each episode's object.
      visible: [B, T, N] bool, the points the policy saw at the step (all of them for a
        teacher; for a student, those its masks kept).
    """

    qpos: Any
    points: Any
    targets: Any
    distance: Any
    success: Any
    goals_reached: Any
    object_id: Any
    visible: Any


def points_origin(env) -> np.ndarray:
    """[3] the environment frame's origin in the world (points are stored in the world frame)."""
    return np.asarray(env.deploy_info["points_origin_in_world"], np.float32)


def make_rollout(env, policy_fn: Callable, num_steps: int,
                 policy_init: Callable | None = None,
                 policy_seen: Callable | None = None) -> Callable[[Any, jax.Array], Steps]:
    """The jitted `(policy params, keys [B, 2]) -> Steps` of `num_steps` control steps.

    The policy interface and its keys are `training.evaluation.make_rollout`'s: a stateless
    `policy_fn(params, batched obs) -> action`, or with `policy_init(params, obs, keys [B, 2])
    -> carry` a stateful `policy_fn(params, obs, carry, keys [B, 2]) -> (action, carry)` (the
    student's point mask), its keys folded from each episode's key, so an episode is the same
    whatever batch it runs in. Episodes start at `env.reset(key)` and never reset (a held goal
    is replaced in place, as the environment does).

    Args:
      env: the environment (unwrapped): `reset`, `step`, `object_pose`, `keypoints`,
        `deploy_info`, and `goal_pos` / `goal_quat` / `object_id` in its state's info.
      policy_fn: see above.
      num_steps: T, control steps per episode.
      policy_init: see above; None for a stateless policy.
      policy_seen: `(params, obs, carry, keys) -> [B, N] bool`, the points the policy sees at
        a step, called with the policy's own arguments (a stateful policy only); None: every
        point is seen (recorded in `Steps.visible`).

    Returns:
      The jitted rollout; it compiles once per batch size. (No host callback reports progress
      from inside it: a program with one is never stored in JAX's persistent compilation cache,
      and the robot's takes minutes to compile on a CPU.)
    """
    if policy_init is None:
        if policy_seen is not None:
            raise ValueError("policy_seen needs a stateful policy (policy_init)")
        stateless = policy_fn
        policy_init = lambda params, obs, keys: ()  # noqa: E731
        policy_fn = lambda params, obs, carry, keys: (stateless(params, obs), carry)  # noqa: E731
    if policy_seen is None:
        num_points = env.keypoints.shape[1]
        policy_seen = lambda params, obs, carry, keys: jnp.ones(  # noqa: E731
            (keys.shape[0], num_points), bool)
    origin = jnp.asarray(points_origin(env))
    keypoints = env.keypoints

    def world_points(pos, quat, object_id):
        return geometry.transform_points(pos, quat, keypoints[object_id]) + origin

    def rollout(params, keys):
        state = jax.vmap(env.reset)(keys)
        policy_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 7919)
        policy_carry = policy_init(params, state.obs, policy_keys)
        object_id = state.info["object_id"]

        def body(carry, t):
            state, policy_carry, reached = carry
            step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(policy_keys, t)
            seen = policy_seen(params, state.obs, policy_carry, step_keys)
            action, policy_carry = policy_fn(params, state.obs, policy_carry, step_keys)
            # d_t of this step is measured against the goal before the step (a held goal is
            # replaced inside `step`).
            targets = jax.vmap(world_points)(state.info["goal_pos"], state.info["goal_quat"],
                                             object_id)
            state = jax.vmap(env.step)(state, action)
            pos, quat = jax.vmap(env.object_pose)(state)
            metrics = state.metrics
            reached = reached + (metrics["goal_reached"] > 0).astype(jnp.int32)
            record = Steps(state.pipeline_state.qpos.astype(jnp.float32),
                           jax.vmap(world_points)(pos, quat, object_id), targets,
                           metrics["distance"], metrics["success"] > 0, reached, object_id,
                           seen)
            return (state, policy_carry, reached), record

        init = (state, policy_carry, jnp.zeros(keys.shape[0], jnp.int32))
        _, steps = jax.lax.scan(body, init, jnp.arange(num_steps))
        steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)  # [T, B, ...] -> [B, T, ...]
        return steps._replace(object_id=object_id)

    return jax.jit(rollout)


def candidate_key(seed: int, index: int) -> jax.Array:
    """The `index`-th episode key of a seed: fold_in(PRNGKey(seed), index)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), index)


def episode_keys(env, seed: int, num_episodes: int, object_id: int | None = None,
                 max_candidates: int = 1 << 18, chunk: int = 4096
                 ) -> tuple[jax.Array, int | None]:
    """Keys of `num_episodes` resets that all draw one object (one object per render).

    Candidates are `candidate_key(seed, i)` for i = 0, 1, ...; the object each draws is read
    from `env.reset` (jitted on the object id alone, which XLA reduces to the draw). One
    episode of any object is candidate 0 and needs no search.

    Args:
      env: the environment.
      seed: the render's seed.
      num_episodes: N.
      object_id: the object to show; None: the one candidate 0 draws.
      max_candidates: give up after this many candidates.
      chunk: candidates per call.

    Returns:
      (keys [N, 2], the object id; None when no search was needed: the rollout's
      `Steps.object_id` says which).

    Raises:
      ValueError: `object_id` is outside the environment's objects, or fewer than N of the
        first `max_candidates` candidates draw it.
    """
    num_objects = int(env.keypoints.shape[0])
    if object_id is not None and not 0 <= object_id < num_objects:
        raise ValueError(f"object {object_id}: the environment has objects 0..{num_objects - 1}")
    if num_episodes == 1 and object_id is None:
        return candidate_key(seed, 0)[None], None
    draws = jax.jit(jax.vmap(lambda key: env.reset(key).info["object_id"]))
    found: list[int] = []
    for start in range(0, max_candidates, chunk):
        indices = np.arange(start, start + chunk)
        keys = jax.vmap(candidate_key, in_axes=(None, 0))(seed, jnp.asarray(indices))
        ids = np.asarray(draws(keys))
        if object_id is None:
            object_id = int(ids[0])
        found += indices[ids == object_id].tolist()
        if len(found) >= num_episodes:
            chosen = jnp.asarray(found[:num_episodes])
            return jax.vmap(candidate_key, in_axes=(None, 0))(seed, chosen), int(object_id)
    raise ValueError(f"only {len(found)} of {max_candidates} episode draws hold object "
                     f"{object_id}; ask for fewer episodes or another object")


def to_rollout(env_name: str, xml: str, dt: float, steps: Steps) -> rollout_file.Rollout:
    """A rollout file's contents from recorded episodes [B, T, ...] (episodes one after another).

    `visible` is what the policy saw at each step (`Steps.visible`): for a student, the points
    its masks kept (drawn in full, the others faint); every point for a teacher.

    Raises:
      rollout_file.RolloutFileError: an episode went numerically unstable (non-finite
        positions; MJX on rare deep contacts), which the format cannot hold.
    """
    steps = jax.tree.map(np.asarray, jax.device_get(steps))
    batch, length = steps.distance.shape
    unstable = ~(np.isfinite(steps.qpos).all(-1) & np.isfinite(steps.points).all((-2, -1)))
    if unstable.any():
        episode, step = np.argwhere(unstable)[0]
        raise rollout_file.RolloutFileError(
            f"episode {episode + 1} went numerically unstable at control step {step + 1} "
            "(non-finite positions); try another --seed or fewer --steps")

    def flat(x):
        return x.reshape(batch * length, *x.shape[2:])

    points = flat(steps.points)
    return rollout_file.Rollout(
        env=env_name, model_xml=xml, dt=float(dt), qpos=flat(steps.qpos), points=points,
        targets=flat(steps.targets), visible=flat(steps.visible),
        distance=flat(steps.distance), success=flat(steps.success),
        goals_reached=flat(steps.goals_reached),
        episode=np.repeat(np.arange(batch, dtype=np.int32), length))


# ------------------------------------------------------------------------------------------------
# Policies of a run, and training's videos.
# ------------------------------------------------------------------------------------------------


def run_kind(config) -> str:
    """"student" or "teacher" from a run config (its `dagger` or `ppo` section)."""
    return "student" if "dagger" in config else "teacher"


def episode_length(config) -> int:
    """The episode length a run trained with (`ppo.episode_length` or `dagger.episode_length`)."""
    return int(config.dagger.episode_length if "dagger" in config else config.ppo.episode_length)


def policy_functions(config, env) -> tuple[Callable, Callable | None, Callable | None]:
    """(policy_fn, policy_init, policy_seen) of a run's policy for `make_rollout`, as its
    training evaluates it: a teacher's deterministic PPO policy (stateless, sees every point),
    or the student under masking (it sees the points its masks keep).

    Raises:
      ValueError: a student on an environment without a student layout.
    """
    from dex4d_jax.student.policy import make_policy  # noqa: PLC0415
    from dex4d_jax.training import policies  # noqa: PLC0415

    if run_kind(config) == "student":
        policy = make_policy(config, env)
        return policy.rollout_act, policy.rollout_init, policy.rollout_seen
    networks = policies.teacher_networks(config, env.observation_size, env.action_size)
    return policies.deterministic_policy(networks), None, None


def load_policy(path: str, env) -> tuple[Any, int, str]:
    """(params, step, checkpoint folder) of a run's (or checkpoint's) policy, checked against
    the networks its config builds for `env`.

    Raises:
      FileNotFoundError, training.run_dir.RunDirError: no such run or checkpoint.
      training.checkpoint.CheckpointError: parameters that do not fit.
    """
    from dex4d_jax.export.policy import LoadedPolicy  # noqa: PLC0415
    from dex4d_jax.training import policies, run_dir  # noqa: PLC0415

    step, ckpt = run_dir.resolve_checkpoint(path)
    if run_kind(run_dir.read_run_config(run_dir.run_of(ckpt))) == "student":
        return LoadedPolicy(ckpt, env).params, step, ckpt
    _, params, _, step, ckpt = policies.load_teacher_policy(ckpt, env.observation_size,
                                                            env.action_size)
    return params, step, ckpt


class TrainingVideos:
    """`--video-every N`: a video of one evaluation episode at every N-th evaluation.

    Called by a trainer after each evaluation as `videos(evaluation, step, params)`; at
    evaluations 0, N, 2N, ... (0 is the one at step 0) it rolls the policy out for one episode
    (the same episode every time: key `candidate_key(seed, 0)`) and writes
    `OUT/videos/eval_<step>.mp4` and `eval_<step>.npz`. The rollout is compiled once per run
    (at the first video). Nothing it does touches the training state or its keys, so training
    computes the same with and without videos. Without an OpenGL context it warns once (at
    construction) and writes nothing; a rendering failure later is warned about and ends the
    videos, a video that cannot be written (a full disk, an unstable episode) is warned about
    and skipped. Training goes on in every case.

    Args:
      env: the evaluation environment.
      env_name: its name (stored in the rollout file).
      config: the run's config (its policy and episode length).
      out_dir: the run folder.
      every: N >= 1.
      seed: the episode's seed.
      size: (width, height) of the frames.
      log: where warnings and "wrote" lines go.
    """

    def __init__(self, env, env_name: str, config, out_dir: str, every: int, seed: int = 0,
                 size: tuple[int, int] = (320, 240), log: Callable[[str], None] = print):
        if every < 1:
            raise ValueError(f"--video-every must be at least 1, got {every}")
        self.every, self.size, self.log = every, size, log
        self.folder = os.path.join(out_dir, "videos")
        self.env, self.env_name = env, env_name
        self.threshold = float(env.config.success_threshold)
        policy_fn, policy_init, policy_seen = policy_functions(config, env)
        self._rollout = make_rollout(env, policy_fn, episode_length(config), policy_init,
                                     policy_seen)
        self._keys = candidate_key(seed, 0)[None]
        self._xml: dict[int, str] = {}
        problem = video.gl_problem()
        self.enabled = problem is None
        if problem:
            log(f"warning: --video-every: {problem}; training goes on without videos")

    def due(self, evaluation: int) -> bool:
        """Whether evaluation number `evaluation` (0 at step 0) gets a video."""
        return self.enabled and evaluation % self.every == 0

    def __call__(self, evaluation: int, step: int, params) -> str | None:
        """Writes the video of evaluation `evaluation` at `step` if due; returns its path."""
        if not self.due(evaluation):
            return None
        path = os.path.join(self.folder, f"eval_{step}.mp4")
        try:
            start = time.time()
            steps = self._rollout(params, self._keys)
            object_id = int(np.asarray(steps.object_id)[0])
            if object_id not in self._xml:
                self._xml[object_id] = video.model_xml(
                    video.scene_spec(self.env_name, self.env, object_id))
            rollout = to_rollout(self.env_name, self._xml[object_id], self.env.dt, steps)
            os.makedirs(self.folder, exist_ok=True)
            frames = video.write_video(rollout, path, *self.size, threshold=self.threshold)
        except (video.RenderError, mujoco.FatalError) as err:  # no GL after all: no more tries
            self.enabled = False
            self.log(f"warning: --video-every: no video at step {step:,} "
                     f"({' '.join(str(err).split())}); training goes on without videos")
            return None
        except (OSError, rollout_file.RolloutFileError) as err:  # this video only
            self.log(f"warning: --video-every: no video at step {step:,} "
                     f"({' '.join(str(err).split())}); training goes on")
            return None
        self.log(f"Wrote {path} ({frames} frames, {time.time() - start:.0f} s)")
        return path
