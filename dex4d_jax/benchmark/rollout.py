"""One vectorized, seeded rollout of every trial of a suite: observation as a camera sees it,
waypoints that advance when reached, and a controller (a policy or a baseline) that acts.

Each control step (SPEC section 7; the authors' benchmark mode):
  1. the object's 128 keypoints at its current pose and at the current waypoint's pose;
  2. visibility: a point is observed when the ray from the suite's camera to it is not blocked
     (`visibility.visible_points`, on kinematics refreshed after the physics step); target
     points are paired with the current points that are seen;
  3. noise: independent N(0, point_noise) per coordinate on current and target points, drawn
     afresh every step;
  4. the waypoint is reached when the mean distance over the visible observed pairs (Eq. 4) stays
     below the policy environment's success threshold for its hold steps (ap2ap: 5 cm held 30
     steps, the authors' values; ap2ap_wrench: 2 cm held 10 steps, the values the wrench
     policies were trained with); the next waypoint then replaces the goal in place; reaching
     the last one is success and the goal stays;
  5. the controller maps the observation to an action and the environment steps.
The environment's own in-place goal sampling is switched off (its hold count never completes).

Outputs per trial: the step at which each waypoint was reached (-1: never), the number reached,
and the true (noise-free, all-point) distance to the current waypoint at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from mujoco import mjx

from dex4d_jax import geometry, robot
from dex4d_jax.benchmark import tasks as tasks_lib
from dex4d_jax.benchmark import visibility

# Hold count the environment's own goal switching can never reach inside an episode.
_NEVER = 1 << 30
# Both environments' frames: the table top below the robot base (ap2ap) or the table centre
# (ap2ap_wrench, whose table stands at the same height); the workspace centres in them.
_ORIGIN = np.asarray(robot.BASE_POS, float)
_CENTERS = {"ap2ap": np.asarray(robot.WORKSPACE_CENTER, float), "ap2ap_wrench": np.zeros(2)}


class Observation(NamedTuple):
    """What a controller sees at one step (batched over trials, environment frame).

    env_obs: the environment's observation for the current waypoint (the teacher's input; the
    student reads its joint parts). current, target: [B, 128, 3] observed (noisy) points;
    visible: [B, 128] bool; waypoint: [B] index of the current waypoint; changed: [B] bool,
    the waypoint changed since the last step (True at the first step); step: [] control step;
    state: the environment's batched state (the baselines read joint targets and the
    actuator's pivot from it, as a robot reads its own proprioception).
    """

    env_obs: Any
    current: jax.Array
    target: jax.Array
    visible: jax.Array
    waypoint: jax.Array
    changed: jax.Array
    step: jax.Array
    state: Any


class Controller(NamedTuple):
    """A method under evaluation, jittable.

    init(params, obs: Observation, keys [B, 2]) -> carry;
    act(params, obs, carry, keys [B, 2]) -> (action [B, A] in [-1, 1], carry).
    """

    init: Callable
    act: Callable


class Setup(NamedTuple):
    """An environment built for a suite, and how the suite maps onto it."""

    env: Any
    env_name: str
    object_ids: np.ndarray  # [num suite tasks]
    camera_world: np.ndarray  # [3]
    origin: np.ndarray  # [3] the environment frame's origin in the world
    threshold: float
    hold_steps: int
    episode_length: int


def env_arguments(suite: tasks_lib.Suite, env_name: str, env_config):
    """(config, constructor keyword arguments) of the environment a suite runs in, built by the
    caller (`envs.build(env_name, config, init_kwargs=kwargs)`), from a policy's config.

    Domain randomization and pushes are off, and so is the environment's own goal switching
    (its hold count never completes); the episode length is the suite's.

    Raises:
      ValueError: an environment the benchmark does not run on.
    """
    import ml_collections  # noqa: PLC0415

    if env_name not in tasks_lib.ENVS:
        raise ValueError(f"the benchmark runs on {', '.join(tasks_lib.ENVS)}, not {env_name!r}")
    config = ml_collections.ConfigDict(env_config)
    config.hold_steps = _NEVER
    config.too_far_threshold = 0.0
    if "domain_randomization" in config:
        config.domain_randomization = False
    config.episode_length = int(suite.episode_length[env_name])
    center = _CENTERS[env_name]
    items = tasks_lib.static_items(suite, center, _ORIGIN)
    if env_name == "ap2ap_wrench":
        return config, {"object_set": tasks_lib.task_objects(suite, env_name),
                        "scene_items": items}
    library, _ = tasks_lib.task_objects(suite, env_name)
    return config, {"library": library, "scene_items": items}


def make_setup(suite: tasks_lib.Suite, env_name: str, env, env_config) -> Setup:
    """The setup of `env` (built from `env_arguments`); the success threshold and hold steps are
    `env_config`'s, the policy's training task."""
    center = np.asarray(env.workspace_center, float)
    if not np.allclose(center, _CENTERS[env_name]):
        raise ValueError(f"{env_name}'s workspace centre {center} is not the benchmark's "
                         f"{_CENTERS[env_name]}: build it from env_arguments")
    camera = _ORIGIN + np.array([center[0], center[1], 0.0]) + suite.camera
    return Setup(env, env_name, tasks_lib.object_ids(suite, env_name), camera, _ORIGIN,
                 float(env_config.success_threshold), int(env_config.hold_steps),
                 int(suite.episode_length[env_name]))


def sample_trials(setup: Setup, suite: tasks_lib.Suite, tasks, trials_per_task: int,
                  seed: int) -> tasks_lib.Trials:
    """The trials of `tasks` on this setup's environment."""
    return tasks_lib.sample_trials(suite, tasks, setup.object_ids, np.asarray(setup.env.support),
                                   setup.env.workspace_center, trials_per_task, seed)


class Outputs(NamedTuple):
    """Per-trial results: reached_step [B, W] (-1: not reached), num_reached [B],
    final_distance [B] (metres, true distance to the current waypoint at the end), unstable
    [B] (the simulation blew up)."""

    reached_step: np.ndarray
    num_reached: np.ndarray
    final_distance: np.ndarray
    unstable: np.ndarray


def make_rollout(setup: Setup, suite: tasks_lib.Suite, controller: Controller,
                 policy_fn: Callable | None = None,
                 progress: Callable[[int, int], None] | None = None, progress_every: int = 50):
    """The rollout `(params, trials, seed) -> Outputs` of a controller, jitted once.

    `policy_fn`, when given, replaces the jitted controller call by a host call
    `(Observation on the device) -> action [B, A]`: for policies that do not run in JAX (an ONNX
    student on onnxruntime); the environment's steps stay jitted. `progress(step, length)` is
    called on the host every `progress_every` control steps and at the end (between jitted
    chunks of the episode).
    """
    env = setup.env
    noise = float(suite.point_noise)
    camera = jnp.asarray(setup.camera_world, jnp.float32)
    origin = jnp.asarray(setup.origin, jnp.float32)
    threshold, hold_steps = setup.threshold, setup.hold_steps

    def points(pos, quat, object_id):
        return geometry.transform_points(pos, quat, env.keypoints[object_id])

    def perceive(state, goal_pos, goal_quat, key):
        """(current, target) observed, visible, observed distance; one trial."""
        model = env.episode_model(state.info)
        data = mjx.kinematics(model, state.pipeline_state)
        pos, quat = env.object_pose(state)
        object_id = state.info["object_id"]
        current = points(pos, quat, object_id)
        target = points(goal_pos, goal_quat, object_id)
        seen = visibility.visible_points(model, data, camera, current + origin)
        key_c, key_t = jax.random.split(key)
        current = current + noise * jax.random.normal(key_c, current.shape)
        target = target + noise * jax.random.normal(key_t, target.shape)
        distance = geometry.mean_point_distance(current, target, seen)
        # Nothing seen: nothing can be judged reached.
        distance = jnp.where(jnp.any(seen), distance, jnp.inf)
        return current, target, seen, distance

    def set_goal(state, goal_pos, goal_quat):
        info = dict(state.info, goal_pos=goal_pos, goal_quat=goal_quat)
        return state.replace(info=info)

    def judge(carry, trials, t, keys):
        """Observes, advances reached waypoints, returns the carry and the Observation."""
        state, waypoint, hold, reached = carry
        batch = jnp.arange(waypoint.shape[0])
        goal_pos = trials.goal_pos[batch, waypoint]
        goal_quat = trials.goal_quat[batch, waypoint]
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
        current, target, seen, distance = jax.vmap(perceive)(state, goal_pos, goal_quat,
                                                                step_keys)
        done = waypoint >= trials.num_waypoints  # index past the last: every waypoint reached
        hold = jnp.where((distance < threshold) & ~done, hold + 1, 0)
        advance = hold >= hold_steps
        reached = jnp.where(advance[:, None] & (jnp.arange(reached.shape[1]) == waypoint[:, None]),
                            t, reached)
        waypoint = waypoint + advance.astype(waypoint.dtype)
        hold = jnp.where(advance, 0, hold)
        # The goal shown next: the new waypoint (the last one stays once all are reached).
        shown = jnp.minimum(waypoint, trials.num_waypoints - 1)
        goal_pos = trials.goal_pos[batch, shown]
        goal_quat = trials.goal_quat[batch, shown]
        state = jax.vmap(set_goal)(state, goal_pos, goal_quat)
        def new_target(pos, quat, object_id, key):
            exact = points(pos, quat, object_id)
            return exact + noise * jax.random.normal(jax.random.fold_in(key, 1), exact.shape)

        fresh = jax.vmap(new_target)(goal_pos, goal_quat, state.info["object_id"], step_keys)
        target = jnp.where(advance[:, None, None], fresh, target)
        obs = Observation(jax.vmap(env.observe)(state), current, target, seen, shown,
                          advance | (t == 0), t, state)
        return (state, waypoint, hold, reached), obs

    def start(trials, keys):
        state = jax.vmap(env.reset_to)(keys, trials.object_id, trials.pos, trials.quat,
                                       trials.goal_pos[:, 0], trials.goal_quat[:, 0])
        batch = trials.pos.shape[0]
        waypoint = jnp.zeros(batch, jnp.int32)
        reached = jnp.full((batch, trials.goal_pos.shape[1]), -1, jnp.int32)
        carry = (state, waypoint, jnp.zeros(batch, jnp.int32), reached)
        carry, obs = judge(carry, trials, jnp.int32(0), keys)
        return carry, obs

    def finish(carry, trials):
        state, waypoint, _, reached = carry
        batch = jnp.arange(waypoint.shape[0])
        shown = jnp.minimum(waypoint, trials.num_waypoints - 1)
        pos, quat = jax.vmap(env.object_pose)(state)
        true = jax.vmap(lambda p, q, gp, gq, o: geometry.mean_point_distance(
            points(p, q, o), points(gp, gq, o)))(pos, quat, trials.goal_pos[batch, shown],
                                                 trials.goal_quat[batch, shown],
                                                 state.info["object_id"])
        unstable = ~jnp.isfinite(true)
        return reached, jnp.minimum(waypoint, trials.num_waypoints), true, unstable

    def step_env(carry, action, trials, t, keys):
        state = carry[0]
        state = jax.vmap(env.step)(state, action)
        carry = (state,) + carry[1:]
        return judge(carry, trials, t, keys)

    length = setup.episode_length

    if policy_fn is None:
        # The episode runs in chunks of `progress_every` steps, one compiled program reused for
        # each (the step number is an argument), and progress is reported between them. A host
        # callback inside the scan would report the same, but JAX does not keep a program with
        # one in its persistent compile cache: every `dex4d eval` would compile again.
        chunk = min(max(1, progress_every), length) if progress is not None else length

        @jax.jit
        def begin(params, trials, keys):
            carry, obs = start(trials, keys)
            return carry, obs, controller.init(params, obs, policy_keys(keys))

        @functools.partial(jax.jit, static_argnames="steps")
        def advance(params, trials, keys, c, t0, steps):
            pkeys = policy_keys(keys)

            def body(c, t):
                carry, obs, ccarry = c
                step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(pkeys, t)
                action, ccarry = controller.act(params, obs, ccarry, step_keys)
                carry, obs = step_env(carry, action, trials, t + 1, keys)
                return (carry, obs, ccarry), None

            c, _ = jax.lax.scan(body, c, t0 + jnp.arange(steps, dtype=jnp.int32))
            return c

        end = jax.jit(finish)

        def run(params, trials, seed):
            keys = trial_keys(trials, seed)
            jtrials = _as_jax(trials)
            c = begin(params, jtrials, keys)
            for t0 in range(0, length, chunk):
                steps = min(chunk, length - t0)
                c = advance(params, jtrials, keys, c, jnp.int32(t0), steps)
                if progress is not None:
                    jax.block_until_ready(c)
                    progress(t0 + steps, length)
            out = jax.device_get(end(c[0], jtrials))
            return Outputs(*[np.asarray(x) for x in out])
        return run

    start_j = jax.jit(start)
    step_j = jax.jit(step_env)
    finish_j = jax.jit(finish)

    def run_host(params, trials, seed):
        keys = trial_keys(trials, seed)
        jtrials = _as_jax(trials)
        carry, obs = start_j(jtrials, keys)
        for t in range(length):
            action = policy_fn(obs)
            carry, obs = step_j(carry, jnp.asarray(action, jnp.float32), jtrials,
                                jnp.int32(t + 1), keys)
            if progress is not None and (t + 1) % progress_every == 0:
                progress(t + 1, length)
        out = jax.device_get(finish_j(carry, jtrials))
        return Outputs(*[np.asarray(x) for x in out])
    return run_host


def trial_keys(trials: tasks_lib.Trials, seed: int) -> jax.Array:
    """[B, 2] one key per trial from (seed, task index, the trial's number within its task), so
    that a trial's noise does not depend on the batch it runs in or on the trials per task."""
    task = np.asarray(trials.task)
    number = np.zeros_like(task)
    for t in np.unique(task):
        rows = task == t
        number[rows] = np.arange(rows.sum())
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda t, k: jax.random.fold_in(jax.random.fold_in(base, t), k))(
        jnp.asarray(task), jnp.asarray(number))


def policy_keys(keys: jax.Array) -> jax.Array:
    """The policy's per-trial keys (point subsets, its own randomness) from the trial keys."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 7919)


def _as_jax(trials: tasks_lib.Trials) -> tasks_lib.Trials:
    return tasks_lib.Trials(*[jnp.asarray(x) for x in trials])
