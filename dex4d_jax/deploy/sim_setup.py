"""The native-MuJoCo simulation of an exported student's task, and a run along a point track.

`dex4d run --robot sim` builds the simulated robot from the policy file alone: the file's
metadata carries the training environment's resolved config (`PolicyInfo.env_config`), from
which `simulation` compiles the same MJCF scene with the same object set (`scene_models`,
`object_families`, `object_library`), and `run_track` drives it through the deploy
`Controller`. Like the rest of `dex4d_jax.deploy` this imports no JAX; the comparisons of
native MuJoCo against MJX, which do, are in `dex4d_jax.sim2sim`.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from dex4d_jax import object_families, object_library, robot, rotations, scene_models
from dex4d_jax.deploy import sim as native
from dex4d_jax.deploy.policy import OnnxPolicy, PolicyFileError, PolicyInfo
from dex4d_jax.deploy.runtime import Controller, mean_visible_distance

WRENCH_CAMERA = "front"


def wrench_model(sim_dt: float, obj: object_families.ObjectSpec) -> mujoco.MjModel:
    """The wrench scene holding `obj`, compiled for native MuJoCo with time step `sim_dt`."""
    model = scene_models.compile_object_model(scene_models.wrench_scene_spec, obj)
    model.opt.timestep = sim_dt
    return model


def robot_model(sim_dt: float, obj: object_families.ObjectSpec,
                inertial: scene_models.Inertial | None = None) -> mujoco.MjModel:
    """The xArm6 + LEAP scene holding `obj` (robot slot layout), for native MuJoCo."""
    model = scene_models.compile_object_model(scene_models.robot_scene_spec, obj,
                                              scene_models.ROBOT_SLOT_GEOMS,
                                              object_library.ROBOT_SLOTS, inertial)
    model.opt.timestep = sim_dt
    return model


def box_object(half_sizes, slot_kinds=scene_models.WRENCH_SLOT_KINDS
               ) -> object_families.ObjectSpec:
    """A box of the given half sizes (metres) in a scene's slot layout (default: the wrench's)."""
    slots = object_families.fill_slots([object_families.box(half_sizes)], slot_kinds, "box")
    return object_families.ObjectSpec("box", "box", tuple(slots))


def simulation(info: PolicyInfo, obj: int | list) -> tuple[native._Sim, str]:
    """The native simulation of a policy's task, holding `obj`, and its camera's name.

    Args:
      info: the exported policy's metadata (task, its resolved config, control rate).
      obj: an index into the task's object set, or box half sizes [3] in metres.

    `ap2ap_wrench`: the object alone, moved by the twist. `ap2ap`: the robot at the
    grasp-ready pose (keyframe) and the object, both as the MJCF has them; the object is placed
    by the caller.

    Raises:
      PolicyFileError: the file carries no environment config (exported before it was stored).
      ValueError: an object index outside the task's set, or a task with no native simulation.
    """
    cfg = info.env_config
    if cfg is None:
        raise PolicyFileError(f"The policy (exported by dex4d-jax {info.version}) carries no "
                              "environment config (dex4d.env_config) to build its simulation "
                              "from; re-export it with `dex4d export`.")
    ctrl_dt = 1.0 / info.control_frequency_hz
    if info.env == "ap2ap_wrench":
        if isinstance(obj, int):
            specs = object_families.make_object_set(tuple(cfg["families"]), cfg["num_objects"],
                                                    cfg["object_seed"],
                                                    scene_models.WRENCH_SLOT_KINDS)
            _check_index(obj, len(specs))
            spec = specs[obj]
        else:
            spec = box_object(obj)
        return native.WrenchSim(wrench_model(cfg["sim_dt"], spec), ctrl_dt), WRENCH_CAMERA
    if info.env == "ap2ap":
        inertial = None
        if isinstance(obj, int):
            library = object_library.load_library(cfg["split"], cfg["num_objects"],
                                                  cfg["object_seed"], tuple(cfg["families"]))
            _check_index(obj, len(library))
            spec = library.spec(obj)
            inertial = scene_models.Inertial(library.mass[obj], library.com[obj],
                                             library.inertia[obj], library.iquat[obj])
        else:
            spec = box_object(obj, object_library.ROBOT_SLOTS)
        model = robot_model(cfg["sim_dt"], spec, inertial)
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
    keypoints = (points[0] - pos) @ rotations.quat_to_matrix(quat)  # object frame
    # Points unseen in the first frame have no place on the object: never seen.
    camera_points = native.CameraPoints(sim, keypoints, camera, noise_std=noise_std, seed=seed,
                                        trackable=first)
    controller = Controller(policy, sim, camera_points, points, visible, clock=sim.time,
                            seed=seed)
    writer = renderer = None
    if video is not None:
        import imageio.v2 as imageio  # noqa: PLC0415

        from dex4d_jax.viz import video as video_lib  # noqa: PLC0415 (no JAX either)

        renderer = mujoco.Renderer(sim.model, 480, 640)
        writer = imageio.get_writer(video, fps=policy.info.control_frequency_hz,
                                    macro_block_size=1)

    def tick(step, d):
        if writer is not None:
            renderer.update_scene(sim.data, camera)
            if controller.frame is not None:  # as `dex4d render` draws them: what is tracked
                target, target_visible = controller.goals.target()
                video_lib.add_spheres(renderer.scene, *controller.frame,
                                      video_lib.CURRENT_RGBA, video_lib.POINT_RADIUS)
                video_lib.add_spheres(renderer.scene, target, target_visible,
                                      video_lib.TARGET_RGBA, video_lib.POINT_RADIUS)
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
