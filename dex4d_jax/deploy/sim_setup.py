"""Native-MuJoCo simulations built from the training environments (this module imports JAX).

The deploy runtime itself (policy.py, runtime.py, sim.py) needs no JAX; this glue reads the
training environment's MJCF, object set and episode sampler so that a simulated deployment
runs on exactly the task the policy was trained on, and so that native MuJoCo can be checked
against MJX (`compare_wrench`, `compare_robot`) and the exported policy evaluated on native
MuJoCo (`evaluate_native`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dex4d_jax import envs, object_families, object_library, robot
from dex4d_jax.deploy import sim as native
from dex4d_jax.deploy.policy import OnnxPolicy, PolicyInfo
from dex4d_jax.deploy.runtime import Controller, mean_visible_distance
from dex4d_jax.envs import ap2ap_wrench, objects, robot_scene

WRENCH_CAMERA = "front"


def wrench_model(sim_dt: float, obj: object_families.ObjectSpec) -> mujoco.MjModel:
    """The wrench scene holding `obj`, compiled for native MuJoCo with time step `sim_dt`."""
    with open(ap2ap_wrench.base.mjcf_path("ap2ap_wrench.xml")) as f:
        model = objects.compile_object_model(f.read(), obj)
    model.opt.timestep = sim_dt
    return model


def robot_model(sim_dt: float, obj: object_families.ObjectSpec,
                inertial: objects.Inertial | None = None) -> mujoco.MjModel:
    """The xArm6 + LEAP scene holding `obj` (robot slot layout), for native MuJoCo."""
    model = objects.compile_object_model(lambda: robot_scene.scene_spec(), obj,
                                         robot_scene.SLOT_GEOMS, object_library.ROBOT_SLOTS,
                                         inertial)
    model.opt.timestep = sim_dt
    return model


def box_object(half_sizes, slot_kinds=objects.SLOT_KINDS) -> object_families.ObjectSpec:
    """A box of the given half sizes (metres) in a scene's slot layout (default: the wrench's)."""
    slots = object_families.fill_slots([object_families.box(half_sizes)], slot_kinds, "box")
    return object_families.ObjectSpec("box", "box", tuple(slots))


def wrench_sim(env, object_id: int) -> tuple[native.WrenchSim, np.ndarray]:
    """(WrenchSim of object `object_id` of the env's set, its keypoints [128, 3])."""
    model = wrench_model(env.config.sim_dt, env.objects[object_id])
    return native.WrenchSim(model, env.dt), np.asarray(env.keypoints[object_id], np.float64)


def simulation(info: PolicyInfo, obj: int | list) -> tuple[native._Sim, str]:
    """The native simulation of a policy's task, holding `obj`, and its camera's name.

    Args:
      info: the exported policy's metadata (task, config overrides, control rate).
      obj: an index into the task's object set, or box half sizes [3] in metres.

    `ap2ap_wrench`: the object alone, moved by the twist. `ap2ap`: the robot at the
    grasp-ready pose (keyframe) and the object, both as the MJCF has them; the object is placed
    by the caller.
    """
    cfg = envs.apply_overrides(envs.get_default_config(info.env), info.env_overrides)
    ctrl_dt = 1.0 / info.control_frequency_hz
    if info.env == "ap2ap_wrench":
        if isinstance(obj, int):
            specs = object_families.make_object_set(tuple(cfg.families), cfg.num_objects,
                                                    cfg.object_seed, objects.SLOT_KINDS)
            _check_index(obj, len(specs))
            spec = specs[obj]
        else:
            spec = box_object(obj)
        return native.WrenchSim(wrench_model(cfg.sim_dt, spec), ctrl_dt), WRENCH_CAMERA
    if info.env == "ap2ap":
        inertial = None
        if isinstance(obj, int):
            library = object_library.load_library(cfg.split, cfg.num_objects, cfg.object_seed,
                                                  tuple(cfg.families))
            _check_index(obj, len(library))
            spec = library.spec(obj)
            inertial = objects.Inertial(library.mass[obj], library.com[obj],
                                        library.inertia[obj], library.iquat[obj])
        else:
            spec = box_object(obj, object_library.ROBOT_SLOTS)
        model = robot_model(cfg.sim_dt, spec, inertial)
        sim = native.ArmHandSim(model, ctrl_dt)
        key = model.key(robot.GRASP_READY_KEY)
        sim.data.qpos[:] = key.qpos
        sim.set_joints(key.qpos[: robot.NUM_JOINTS])
        return sim, robot.CAMERA
    raise ValueError(f"No native simulation of {info.env!r}.")


def _check_index(index: int, count: int) -> None:
    if not 0 <= index < count:
        raise ValueError(f"object {index}: the policy's task has objects 0..{count - 1}")


@dataclasses.dataclass
class NativeEpisode:
    """One evaluation episode on native MuJoCo: success (first goal held, all points, as in
    the MJX evaluation), the true d_t trace and the controller's d_t on tracked points."""

    success: bool
    true_distance: list
    tracked_distance: list


def _reset_batch(env, num_episodes: int, seed: int):
    keys = jax.random.split(jax.random.PRNGKey(seed), num_episodes)
    state = jax.jit(jax.vmap(env.reset))(keys)
    return jax.device_get((state.info["object_id"], state.pipeline_state.qpos,
                           state.info["goal_pos"], state.info["goal_quat"]))


def evaluate_native(policy: OnnxPolicy, env, num_episodes: int, seed: int, episode_length: int,
                    noise_std: float = 0.005, camera: str = WRENCH_CAMERA,
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
            models[k] = wrench_model(cfg.sim_dt, env.objects[k])
        sim = native.WrenchSim(models[k], env.dt)
        keypoints = all_keypoints[k]
        sim.set_object_pose(qpos[e, :3], qpos[e, 3:7])
        camera_points = native.CameraPoints(sim, keypoints, camera, noise_std=noise_std,
                                            seed=seed * 100003 + e)
        start = camera_points.true_points()
        goal = keypoints @ native.quat_to_mat(goal_quat[e]).T + goal_pos[e] + table
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


@dataclasses.dataclass
class TrackRun:
    """`dex4d run --robot sim`: the controller's report, the true final distance of the track's
    points to the last frame, and the video path if one was written."""

    report: object
    final_true_distance: float
    frames: int


def run_track(policy: OnnxPolicy, points: np.ndarray, visible: np.ndarray, sim, camera: str,
              pose: tuple[np.ndarray, np.ndarray] | None, max_steps: int,
              noise_std: float = 0.0, video: str | None = None, on_tick=None,
              seed: int = 0) -> TrackRun:
    """Drives a simulated object along a 3D point track [T, N, 3] (world frame).

    The simulation's object (`simulation(...)`) starts at `pose` (position, wxyz; default: at
    the centroid of the first frame's visible points, unrotated) and carries the first frame's
    visible track points rigidly; the simulated camera `camera` decides which of them are seen
    at each tick.
    """
    first = visible[0]
    if not first.any():
        raise ValueError("No point of the track is visible in its first frame.")
    if pose is None:
        pose = (points[0][first].mean(axis=0), np.array([1.0, 0.0, 0.0, 0.0]))
    pos, quat = np.asarray(pose[0], np.float64), np.asarray(pose[1], np.float64)
    if not np.linalg.norm(quat) > 0:
        raise ValueError("The pose's quaternion is zero.")
    quat = quat / np.linalg.norm(quat)
    sim.set_object_pose(pos, quat)
    keypoints = (points[0] - pos) @ native.quat_to_mat(quat)  # object frame
    # Points unseen in the first frame have no place on the object: never seen.
    camera_points = native.CameraPoints(sim, keypoints, camera, noise_std=noise_std, seed=seed,
                                        trackable=first)
    controller = Controller(policy, sim, camera_points, points, visible, clock=sim.time,
                            seed=seed)
    writer = renderer = None
    if video is not None:
        import imageio.v2 as imageio  # noqa: PLC0415

        renderer = mujoco.Renderer(sim.model, 480, 640)
        writer = imageio.get_writer(video, fps=policy.info.control_frequency_hz,
                                    macro_block_size=1)

    def tick(step, d):
        if writer is not None:
            renderer.update_scene(sim.data, camera)
            writer.append_data(renderer.render())
        if on_tick is not None:
            on_tick(step, d, controller.goals.index)

    try:
        report = controller.run(max_steps, tick)
    finally:
        if writer is not None:
            writer.close()
            renderer.close()
    last = visible[-1] & first
    final = mean_visible_distance(camera_points.true_points(), points[-1], last)
    return TrackRun(report, float("nan") if final is None else final, report.steps)
