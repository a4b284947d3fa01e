"""The Dex4D scene in MJX with a different library object in every environment of a batch.

MJX shares one model across a batch, so per-environment objects are batched *model fields*:
the object's four primitive slots (fixed geom types, see object_library.ROBOT_SLOTS) take each
object's sizes and poses, and its body takes the object's mass, centre of mass and inertia.
`SceneObjects.model_for(model, object_id)` returns the model of one environment; vmapped over
object ids it is the same mechanism Brax's `randomization_fn` uses.

The scene's spec, its collision presets (docs/robot.md explains the default;
bench/scene_throughput.py measures the others) and its slot geoms are
`dex4d_jax.scene_models` (no JAX: the deploy runtime's simulated robot compiles them too).
"""

from __future__ import annotations

import dataclasses

import jax
import mujoco
import numpy as np
from mujoco import mjx

from dex4d_jax import object_library, robot, scene_models
from dex4d_jax.envs import objects

@dataclasses.dataclass(frozen=True)
class SceneObjects:
    """Model fields of K library objects, stacked for per-environment objects.

    Attributes:
      mj_model: the scene compiled with object 0 (for native MuJoCo and rendering).
      fields: {model field: [K, ...] array} of every field that differs between objects.
      keypoints: [K, 128, 3] object-frame surface keypoints.
      support: [K, P, 4] support points (x, y, z, radius) giving each object's lowest point.
      library: the objects.
      collision: the collision preset.
    """

    mj_model: mujoco.MjModel
    fields: dict
    keypoints: np.ndarray
    support: np.ndarray
    library: object_library.ObjectLibrary
    collision: str

    @property
    def num_objects(self) -> int:
        """K, the number of objects."""
        return len(self.keypoints)

    def model_for(self, model: mjx.Model, object_id: jax.Array) -> mjx.Model:
        """`model` holding object `object_id` (an int array; vmap it for a batch)."""
        return objects.object_model(model, self.fields, object_id)

    def native_model(self, object_id: int) -> mujoco.MjModel:
        """The scene compiled with object `object_id`, for native MuJoCo."""
        return scene_models.compile_object_model(
            lambda: scene_models.robot_scene_spec(self.collision), self.library.spec(object_id),
            scene_models.ROBOT_SLOT_GEOMS,
            object_library.ROBOT_SLOTS, _inertial(self.library, object_id))


def _inertial(library: object_library.ObjectLibrary, i: int) -> scene_models.Inertial:
    return scene_models.Inertial(library.mass[i], library.com[i], library.inertia[i],
                                 library.iquat[i])


def build_scene_objects(library: object_library.ObjectLibrary,
                        collision: str = "default") -> SceneObjects:
    """Compiles the scene once per object and stacks the fields that change.

    Args:
      library: objects in the ROBOT_SLOTS layout, with mass properties.
      collision: a collision preset.

    Returns:
      The stacked fields; each object keeps its library mass, centre of mass and inertia.
    """
    if tuple(library.slot_kinds) != object_library.ROBOT_SLOTS:
        raise ValueError(f"Library slots {library.slot_kinds} do not match the scene's "
                         f"{object_library.ROBOT_SLOTS}")
    specs = [library.spec(i) for i in range(len(library))]
    inertials = [_inertial(library, i) for i in range(len(library))]
    mj_model, fields = objects.batched_object_fields(
        lambda: scene_models.robot_scene_spec(collision), specs, scene_models.ROBOT_SLOT_GEOMS,
        object_library.ROBOT_SLOTS,
        inertials=inertials)
    robot.check_model(mj_model)
    support = np.stack([objects.support_points(s, object_library.ROBOT_SLOTS) for s in specs])
    return SceneObjects(mj_model, fields, np.asarray(library.keypoints, np.float32), support,
                        library, collision)


def batched_rollout(scene: SceneObjects, num_steps: int):
    """A vmapped MJX rollout of the grasp-ready robot, one object per environment.

    Args:
      scene: the scene objects.
      num_steps: physics steps to run.

    Returns:
      `rollout(object_ids [N] int, qpos [N, nq]) -> mjx.Data` after `num_steps` steps, with
      the servos holding the grasp-ready targets; wrap it in `jax.jit`.
    """
    model = objects.put_model(scene.mj_model)
    data = mjx.make_data(model)
    ctrl = jax.numpy.asarray(scene.mj_model.key(robot.GRASP_READY_KEY).ctrl)

    def one_env(object_id, qpos):
        env_model = scene.model_for(model, object_id)
        env_data = mjx.forward(env_model, data.replace(qpos=qpos, ctrl=ctrl))
        return jax.lax.scan(lambda d, _: (mjx.step(env_model, d), None), env_data, (),
                            length=num_steps)[0]

    return jax.vmap(one_env)


_UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])


def grasp_ready_qpos(scene: SceneObjects, object_id: int, xy: tuple[float, float] = (0.45, 0.0),
                     quat: np.ndarray = _UPRIGHT, lift: float = 0.0) -> np.ndarray:
    """[nq] qpos: the grasp-ready robot and object `object_id` resting on the table.

    Args:
      scene: the scene objects.
      object_id: which object.
      xy: the object's position on the table.
      quat: the object's wxyz orientation.
      lift: metres above its resting height (to drop it).
    """
    qpos = scene.mj_model.key(robot.GRASP_READY_KEY).qpos.copy()
    z = rest_height(scene.support[object_id], quat) + lift
    qpos[robot.NUM_JOINTS:] = [*xy, z, *quat]
    return qpos


def grasp_ready_data(scene: SceneObjects, object_id: int,
                     xy: tuple[float, float] = (0.45, 0.0)) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """Native model and data of the grasp-ready robot with object `object_id` upright below it.

    Returns:
      (model, data) after forward kinematics, ready to render or step.
    """
    model = scene.native_model(object_id)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(robot.GRASP_READY_KEY).id)
    data.qpos[:] = grasp_ready_qpos(scene, object_id, xy)
    mujoco.mj_forward(model, data)
    return model, data


def render(model: mujoco.MjModel, data: mujoco.MjData, camera: str = robot.CAMERA,
           width: int = 640, height: int = 480) -> np.ndarray:
    """[height, width, 3] uint8 RGB image from a named camera (needs an OpenGL backend).

    On a headless machine set MUJOCO_GL=egl (or osmesa) before mujoco is first imported.
    """
    with mujoco.Renderer(model, height, width) as renderer:
        renderer.update_scene(data, camera)
        return renderer.render()


def rest_height(support: np.ndarray, quat: np.ndarray) -> float:
    """Height of an object's frame above the table when it rests in orientation `quat`.

    Args:
      support: [P, 4] support points of the object (SceneObjects.support[k]).
      quat: [4] wxyz orientation of the object in the world.

    Returns:
      The z of the object frame when its lowest point touches the table top.
    """
    return robot.TABLE_HEIGHT + float(objects.frame_height(support, quat))


# ----------------------------------------------------------------------------------------------
# The arm ladder: arm poses that raise the grasp-ready palm straight up (ap2ap's reset).
# ----------------------------------------------------------------------------------------------

# Palm lifts of the ladder, metres: LIFT_STEP apart from 0 up to MAX_LIFT.
LIFT_STEP = 0.01
MAX_LIFT = 0.32


def lowest_robot_point(mj_model: mujoco.MjModel, data: mujoco.MjData) -> float:
    """World z (metres) of the lowest point of the hand's and the arm's colliders.

    Args:
      mj_model: the scene model.
      data: its data after forward kinematics.

    Returns:
      The lowest z over every geom in the hand and arm collision groups (robot.HAND_COLLISION_BIT,
      robot.ARM_COLLISION_BIT): exact for boxes and capsules, the bounding sphere otherwise.
    """
    lowest = np.inf
    for g in range(mj_model.ngeom):
        if not mj_model.geom_contype[g] & (robot.HAND_COLLISION_BIT | robot.ARM_COLLISION_BIT):
            continue
        z, axis_z = data.geom_xpos[g, 2], np.abs(data.geom_xmat[g].reshape(3, 3)[2])
        size = mj_model.geom_size[g]
        kind = mj_model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_BOX:
            low = z - axis_z @ size
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            low = z - axis_z[2] * size[1] - size[0]
        else:
            low = z - mj_model.geom_rbound[g]
        lowest = min(lowest, low)
    return float(lowest)


def raised_arm(mj_model: mujoco.MjModel, qpos: np.ndarray, lift: float,
               start: np.ndarray | None = None) -> np.ndarray:
    """Arm joints that raise the palm site by `lift` metres keeping its orientation.

    Damped least squares on the palm site's 6-D error (world frame; damping 1e-4), at most 100
    iterations, stopping once the error norm is below 1e-6. The hand joints stay as in `qpos`.

    Args:
      mj_model: the scene model.
      qpos: [nq] the pose whose palm is raised (the target is relative to its palm site).
      lift: metres to raise the palm along world z.
      start: [nq] where the solver starts (default: `qpos`).

    Returns:
      [6] arm joint angles (robot.ARM_JOINTS order), radians. Not checked against the joint
      ranges; an unreachable lift returns the last iterate.
    """
    data = mujoco.MjData(mj_model)
    data.qpos[:] = qpos
    mujoco.mj_forward(mj_model, data)
    site = mj_model.site(robot.PALM_SITE).id
    target_pos = data.site_xpos[site] + np.array([0.0, 0.0, lift])
    target_mat = data.site_xmat[site].reshape(3, 3).copy()
    if start is not None:
        data.qpos[:] = start
    jacp, jacr = np.zeros((3, mj_model.nv)), np.zeros((3, mj_model.nv))
    for _ in range(100):
        mujoco.mj_forward(mj_model, data)
        err_pos = target_pos - data.site_xpos[site]
        rot = target_mat @ data.site_xmat[site].reshape(3, 3).T
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, rot.reshape(-1))
        err_rot = np.zeros(3)
        mujoco.mju_quat2Vel(err_rot, quat, 1.0)
        err = np.concatenate([err_pos, err_rot])
        if np.linalg.norm(err) < 1e-6:
            break
        mujoco.mj_jacSite(mj_model, data, jacp, jacr, site)
        jac = np.concatenate([jacp, jacr])[:, : robot.NUM_ARM]
        step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
        data.qpos[: robot.NUM_ARM] += step
    return data.qpos[: robot.NUM_ARM].copy()


def arm_ladder(mj_model: mujoco.MjModel, qpos: np.ndarray,
               lifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arm joints raising the palm of `qpos` by each lift, and the robot's lowest point there.

    Each rung is solved by `raised_arm`, starting from the previous rung's solution, so the
    ladder is continuous. ap2ap builds it once from the grasp-ready keyframe with lifts
    `np.arange(0, MAX_LIFT + 1e-9, LIFT_STEP)` and picks a rung per reset.

    Args:
      mj_model: the scene model.
      qpos: [nq] the pose to raise (ap2ap: the robot.GRASP_READY_KEY keyframe).
      lifts: [L] palm lifts, metres, in increasing order.

    Returns:
      Tuple of [L, 6] float32 arm joints (robot.ARM_JOINTS order, radians) and [L] float32 z of
      the lowest hand or arm collider (`lowest_robot_point`) in the robot base frame (metres
      above the table top).
    """
    arms, lowest = [], []
    data = mujoco.MjData(mj_model)
    start = qpos.copy()
    for lift in lifts:
        arm = raised_arm(mj_model, qpos, lift, start)
        start[: robot.NUM_ARM] = arm
        data.qpos[:] = qpos
        data.qpos[: robot.NUM_ARM] = arm
        mujoco.mj_forward(mj_model, data)
        arms.append(arm)
        lowest.append(lowest_robot_point(mj_model, data) - robot.TABLE_HEIGHT)
    return np.stack(arms).astype(np.float32), np.array(lowest, np.float32)


def collision_pair_counts(model: mujoco.MjModel) -> dict[str, int]:
    """MJX's candidate collision pairs of a model counted by geom types, most frequent first
    ({"box - capsule": 40, ...}); each pair costs a narrow-phase call every physics step."""
    import collections  # noqa: PLC0415

    from mujoco.mjx._src import collision_driver  # noqa: PLC0415

    counts = collections.Counter(
        " - ".join(sorted(mujoco.mjtGeom(model.geom_type[g]).name[7:].lower() for g in (a, b)))
        for a, b, _ in collision_driver.geom_pairs(model))
    return dict(counts.most_common())


def describe(model: mujoco.MjModel, collision: str) -> str:
    """Three lines about a scene model: sizes, joint/actuator order, collision pairs."""
    colliders = int((model.geom_contype | model.geom_conaffinity).astype(bool).sum())
    pairs = ", ".join(f"{n} {kind}" for kind, n in collision_pair_counts(model).items())
    return "\n".join([
        f"{robot.SCENE_XML}: {model.nq} qpos, {model.nv} dofs, {model.nu} actuators, "
        f"{model.ngeom} geoms ({colliders} colliders), timestep {model.opt.timestep:.5f} s",
        "joint/actuator order: " + " ".join(robot.JOINT_NAMES),
        f"collision preset {collision!r}: {pairs}"])
