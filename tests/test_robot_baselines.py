"""The robot NovaFlow baselines (dex4d_jax/benchmark/robot_baselines.py) in the benchmark rollout.

One compiled rollout serves every rollout test: RotateBox and Apple2Plate, one trial each, a
short episode (the scripted grasp and MOTION_STEPS motion steps); NovaFlow drives the first
trial and NovaFlow-CL the second. A third controller, NovaFlow-CL with a stand-in grasp policy
(all-zero actions), watches the same observations without driving anything. Every controller's
actions are recorded at every step through a debug callback, with the object's height and the
waypoint index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dex4d_jax.envs import ap2ap
from helpers import benchmark_setup

from dex4d_jax.benchmark import robot_baselines, rollout
from dex4d_jax.benchmark import tasks as tasks_lib

MOTION_STEPS = 40


def test_grasp_schedule_follows_ctrl_dt_and_arm_speed():
    """Phase ends in control steps; a slow arm stretches them."""
    settings = robot_baselines.Settings()
    config = ap2ap.default_config()  # 30 Hz, 10 * 1/60 rad per step: 5 rad/s, no stretch
    # 1.5 s = 45 steps, 0.75 s = 23 (22.5 rounded up), 1.0 s = 30, 1.0 s = 30.
    assert robot_baselines.grasp_schedule(config, settings) == (45, 68, 98, 128)
    config.arm_speed_scale = 1.5  # 0.025 rad per step at 30 Hz: 0.75 rad/s, stretch 4/3
    # 2.0 s = 60, 1.0 s = 30, 1.333 s = 40, 1.333 s = 40.
    assert robot_baselines.grasp_schedule(config, settings) == (60, 90, 130, 170)


def test_visible_top_and_centroid_reads_only_visible_points():
    """Hidden points do not count; the top is a high quantile of the visible heights."""
    heights = jnp.arange(11, dtype=jnp.float32) / 100.0  # 0.00 .. 0.10 m
    points = jnp.stack([jnp.full(11, 0.4), jnp.linspace(-0.05, 0.05, 11), heights], -1)
    hidden = jnp.array([[1.0, 1.0, 0.5]])  # far away and high: ignored
    points = jnp.concatenate([points, hidden])
    visible = jnp.arange(12) < 11
    centroid, top = robot_baselines._visible_top_and_centroid(points, visible, 0.9,
                                                              jnp.zeros(2))
    np.testing.assert_allclose(centroid, [0.4, 0.0], atol=1e-6)
    # Descending heights 0.10, 0.09, ...; rank floor(0.1 * (11 - 1)) = 1: 0.09 m.
    np.testing.assert_allclose(top, 0.09, atol=1e-6)
    centroid, top = robot_baselines._visible_top_and_centroid(
        points, jnp.zeros(12, bool), 0.9, jnp.array([0.45, 0.0]))
    np.testing.assert_allclose(centroid, [0.45, 0.0])
    np.testing.assert_allclose(top, 0.05)


@pytest.fixture(scope="module")
def episode():
    """Runs the shared rollout once; returns what it recorded per step."""
    suite = tasks_lib.load_suite()
    setup = benchmark_setup(suite, "ap2ap", ap2ap.default_config())
    env = setup.env
    schedule = robot_baselines.grasp_schedule(env.config, robot_baselines.Settings())
    setup = setup._replace(episode_length=schedule.lift + MOTION_STEPS)
    trials = rollout.sample_trials(setup, suite, suite.select("RotateBox,Apple2Plate"), 1, 0)
    open_loop = robot_baselines.robot_novaflow(env, closed_loop=False)
    closed_loop = robot_baselines.robot_novaflow(env, closed_loop=True)
    zero_policy = rollout.Controller(lambda params, obs, keys: (),
                                     lambda params, obs, carry, keys: (
                                         jnp.zeros((obs.current.shape[0], 22)), carry))
    with_policy = robot_baselines.robot_novaflow(env, closed_loop=True,
                                                 grasp_controller=zero_policy)
    controllers = (open_loop, closed_loop, with_policy)
    use_closed = jnp.arange(len(trials.task)) % 2 == 1
    log = {}

    def record(step, height, waypoint, actions):
        log[int(step)] = (np.asarray(height), np.asarray(waypoint), np.asarray(actions))

    def init(params, obs, keys):
        return tuple(c.init(params, obs, keys) for c in controllers)

    def act(params, obs, carry, keys):
        outs = [c.act(params, obs, k, keys) for c, k in zip(controllers, carry, strict=True)]
        actions = jnp.stack([a for a, _ in outs])  # [3 controllers, B, 22]
        height = jax.vmap(env.object_pose)(obs.state)[0][:, 2]
        jax.debug.callback(record, obs.step, height, obs.waypoint, actions)
        action = jnp.where(use_closed[:, None], actions[1], actions[0])
        return action, tuple(c for _, c in outs)

    run = rollout.make_rollout(setup, suite, rollout.Controller(init, act))
    outputs = run(None, trials, 0)
    steps = sorted(log)
    heights = np.stack([log[t][0] for t in steps])  # [T, B]
    waypoints = np.stack([log[t][1] for t in steps])  # [T, B]
    actions = np.stack([log[t][2] for t in steps])  # [T, 3 controllers, B, 22]
    return dict(outputs=outputs, steps=steps, heights=heights, waypoints=waypoints,
                actions=actions, schedule=schedule, length=setup.episode_length)


@pytest.mark.slow
def test_scripted_grasp_lifts_the_object(episode):
    """After the grasp phase an object is several cm above where it started.

    Only if the hand closed on it and the arm lifted it (the scripted lift is 10 cm).
    """
    heights, schedule = episode["heights"], episode["schedule"]
    assert episode["steps"] == list(range(episode["length"]))
    lift = heights[schedule.lift] - heights[0]
    assert np.max(lift) > 0.05, lift
    # Nothing moves the objects before the hand reaches them (the approach ends above them).
    np.testing.assert_allclose(heights[schedule.approach], heights[0], atol=0.005)


@pytest.mark.slow
def test_controllers_act_in_range_and_outputs_are_finite(episode):
    """Both controllers' actions are finite and in [-1, 1] at every step.

    The rollout's outputs are finite and no trial blew up.
    """
    actions, outputs = episode["actions"], episode["outputs"]
    assert actions.shape[-1] == 22
    assert np.all(np.isfinite(actions))
    assert np.all(np.abs(actions) <= 1.0)
    # The arm moves in the grasp phase and in the motion phase.
    schedule = episode["schedule"]
    assert np.max(np.abs(actions[: schedule.lift, :, :, :6])) > 0.1
    assert np.all(np.isfinite(outputs.final_distance))
    assert not np.any(outputs.unstable)
    assert outputs.num_reached.shape == (2,)


@pytest.mark.slow
def test_grasp_policy_acts_until_the_lift_then_the_fingers_lock(episode):
    """With a grasp policy, the fingers lock at the lift.

    Its actions pass through while the first waypoint is pending; from the step the waypoint
    advances, the hand holds the targets it had then. The scripted grasp of the driving
    NovaFlow lifts the brick of the first trial to its first waypoint, so the watching
    controller sees the advance; its locked hand actions are then the closed hand that
    NovaFlow holds.
    """
    waypoints, actions = episode["waypoints"], episode["actions"]
    policy = actions[:, 2]  # [T, B, 22]
    pending = waypoints == 0  # [T, B]
    np.testing.assert_array_equal(policy[pending], 0.0)
    advanced = np.flatnonzero(~pending[:, 0])
    assert advanced.size, "the first trial's first waypoint was not reached"
    after = slice(advanced[0], None)
    np.testing.assert_allclose(policy[after, 0, 6:], actions[after, 0, 0, 6:], atol=1e-5)
    assert np.all(np.abs(policy) <= 1.0)
