"""Sim-to-sim: native MuJoCo (the deploy runtime's simulated robot) against MJX (training).

The deploy runtime runs without JAX (`dex4d_jax.deploy`); these checks need the MJX
environment as well, so they live here:

* `compare_wrench`, `compare_robot`: the same actions on both engines, qpos after each
  control step (tests/test_deploy.py bounds the differences; docs/deploy.md has the table).
* `evaluate_native`: an exported `ap2ap_wrench` student through the whole deploy runtime on
  native MuJoCo, on the MJX evaluation's own episodes (docs/benchmarks.md, "Deployment").

Environments are passed in (`env`), never looked up, as in the rest of the library.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dex4d_jax import rotations
from dex4d_jax.deploy import sim as native
from dex4d_jax.deploy import sim_setup
from dex4d_jax.deploy.policy import OnnxPolicy
from dex4d_jax.deploy.runtime import Controller, mean_visible_distance


def wrench_sim(env, object_id: int) -> tuple[native.WrenchSim, np.ndarray]:
    """(WrenchSim of object `object_id` of the env's set, its keypoints [128, 3])."""
    model = sim_setup.wrench_model(env.config.sim_dt, env.objects[object_id])
    return native.WrenchSim(model, env.dt), np.asarray(env.keypoints[object_id], np.float64)


@dataclasses.dataclass
class NativeEpisode:
    """One evaluation episode on native MuJoCo: success (first goal held, all points, as in
    the MJX evaluation), the true d_t trace and the controller's d_t on tracked points."""

    success: bool
    true_distance: list
    tracked_distance: list


def _reset_batch(env, num_episodes: int, seed: int):
    """(object ids [E], qpos [E, 7], goal positions [E, 3], goal wxyz [E, 4]) of `env.reset`
    on the keys the MJX evaluation uses."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_episodes)
    state = jax.jit(jax.vmap(env.reset))(keys)
    return jax.device_get((state.info["object_id"], state.pipeline_state.qpos,
                           state.info["goal_pos"], state.info["goal_quat"]))


def evaluate_native(policy: OnnxPolicy, env, num_episodes: int, seed: int, episode_length: int,
                    noise_std: float = 0.005, camera: str = sim_setup.WRENCH_CAMERA,
                    progress=None) -> list[NativeEpisode]:
    """The exported student on native MuJoCo, on the env's own episodes (`ap2ap_wrench`).

    Each episode's object, start pose and first goal come from `env.reset` with the same keys
    as the MJX evaluation (`teacher.evaluate`); the track has two frames (start, goal) of the
    object's 128 keypoints; the simulated camera decides which points are seen, with
    `noise_std` noise. Success is the MJX environment's: mean distance over all keypoints
    below the success threshold for `hold_steps` ticks in a row within `episode_length`.
    """
    if policy.info.env != "ap2ap_wrench":
        raise ValueError(f"evaluate_native runs ap2ap_wrench students; this one is "
                         f"{policy.info.env!r}.")
    object_ids, qpos, goal_pos, goal_quat = _reset_batch(env, num_episodes, seed)
    table = np.asarray(policy.info.points_origin_in_world)
    cfg = env.config
    results = []
    models = {}  # one native compile per object, not per episode
    all_keypoints = np.asarray(env.keypoints, np.float64)
    for e in range(num_episodes):
        k = int(object_ids[e])
        if k not in models:
            models[k] = sim_setup.wrench_model(cfg.sim_dt, env.objects[k])
        sim = native.WrenchSim(models[k], env.dt)
        keypoints = all_keypoints[k]
        sim.set_object_pose(qpos[e, :3], qpos[e, 3:7])
        camera_points = native.CameraPoints(sim, keypoints, camera, noise_std=noise_std,
                                            seed=seed * 100003 + e)
        start = camera_points.true_points()
        goal = keypoints @ rotations.quat_to_matrix(goal_quat[e]).T + goal_pos[e] + table
        track = np.stack([start, goal])
        controller = Controller(policy, sim, camera_points, track, np.ones(track.shape[:2], bool),
                                hold_steps=episode_length + 1, clock=sim.time, seed=e)
        held, success, true_d, tracked_d = 0, False, [], []
        for _ in range(episode_length):
            d, final = controller.tick()
            if final is not None and final.startswith("stopped"):
                break
            sim.wait()
            truth = mean_visible_distance(camera_points.true_points(), goal,
                                          np.ones(len(goal), bool))
            true_d.append(truth)
            tracked_d.append(d)
            held = held + 1 if truth < cfg.success_threshold else 0
            if held >= cfg.hold_steps:
                success = True
                break
        results.append(NativeEpisode(success, true_d, tracked_d))
        if progress is not None:
            progress(e, results[-1])
    return results


def compare_wrench(env, actions: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The same twist actions [T, 6] on MJX (the env) and on native MuJoCo (WrenchSim).

    Returns {"mjx": [T, 7], "native": [T, 7]}: the object's qpos (position, wxyz) after each
    control step, in the world frame.
    """
    state = jax.jit(env.reset)(jax.random.PRNGKey(seed))
    q0 = np.asarray(state.pipeline_state.qpos)
    step = jax.jit(env.step)
    mjx_qpos = []
    for a in actions:
        state = step(state, jnp.asarray(a, jnp.float32))
        mjx_qpos.append(np.asarray(state.pipeline_state.qpos))
    sim, _ = wrench_sim(env, int(state.info["object_id"]))
    sim.set_object_pose(q0[:3], q0[3:7])
    scale = np.array([env.config.max_lin_speed] * 3 + [env.config.max_ang_speed] * 3)
    native_qpos = []
    for a in actions:
        sim.command(np.clip(a, -1, 1) * scale)
        sim.wait()
        native_qpos.append(np.concatenate(sim.object_pose()))
    return {"mjx": np.stack(mjx_qpos), "native": np.stack(native_qpos)}


def compare_robot(model: mujoco.MjModel, qpos0: np.ndarray, targets: np.ndarray,
                  ctrl_dt: float) -> dict[str, np.ndarray]:
    """The same joint targets [T, nu] on MJX and on native MuJoCo (ArmHandSim), from qpos0.

    Returns {"mjx": [T, nq], "native": [T, nq]}: qpos after each control step.
    """
    from mujoco import mjx  # noqa: PLC0415

    sim = native.ArmHandSim(model, ctrl_dt)
    sim.data.qpos[:] = qpos0
    sim.set_joints(qpos0[: sim.num_joints])
    data0 = mjx.put_data(model, sim.data)
    mjx_model = mjx.put_model(model)

    @jax.jit
    def rollout(data, targets):
        def control(data, target):
            data = data.replace(ctrl=target)
            data = jax.lax.fori_loop(0, sim.n_substeps, lambda _, d: mjx.step(mjx_model, d),
                                     data)
            return data, data.qpos

        return jax.lax.scan(control, data, targets)[1]

    mjx_qpos = np.asarray(rollout(data0, jnp.asarray(targets, jnp.float32)))
    native_qpos = []
    for target in targets:
        sim.command(target)
        sim.wait()
        native_qpos.append(sim.data.qpos.copy())
    return {"mjx": mjx_qpos, "native": np.stack(native_qpos)}
