"""The Dex4D scene in MJX with a different library object in every environment of a batch.

MJX shares one model across a batch, so per-environment objects are batched *model fields*:
the object's four primitive slots (fixed geom types, see object_library.ROBOT_SLOTS) take each
object's sizes and poses, and its body takes the object's mass, centre of mass and inertia.
`SceneObjects.model_for(model, object_id)` returns the model of one environment; vmapped over
object ids it is the same mechanism Brax's `randomization_fn` uses.

Collision presets (docs/robot.md explains the default; bench/scene_throughput.py measures the
others): "default"; "hand_self" adds hand self-collision; "table_box" makes the table a box
instead of a plane; "full_hand" makes all 67 LEAP boxes colliders instead of 24.
"""

from __future__ import annotations

import dataclasses

import jax
import mujoco
import numpy as np
from mujoco import mjx

from dex4d_jax import object_library, robot
from dex4d_jax.envs import objects

# Scene geoms of the object's slots, in the order of object_library.ROBOT_SLOTS.
SLOT_GEOMS = ("object_box_a", "object_box_b", "object_capsule_a", "object_capsule_b")
COLLISION_PRESETS = ("default", "hand_self", "table_box", "full_hand")

_HAND_BIT, _TABLE_BIT = robot.HAND_COLLISION_BIT, robot.TABLE_COLLISION_BIT


def scene_spec(collision: str = "default") -> mujoco.MjSpec:
    """The scene's MjSpec with a collision preset applied.

    Args:
      collision: one of COLLISION_PRESETS.

    Returns:
      An uncompiled spec of mjcf/dex4d_scene.xml.
    """
    if collision not in COLLISION_PRESETS:
        raise ValueError(f"Unknown collision preset {collision!r}; valid: "
                         f"{', '.join(COLLISION_PRESETS)}")
    spec = mujoco.MjSpec.from_file(str(robot.SCENE_XML))
    hand_bodies = {b.name for b in spec.body(robot.HAND_BODY).find_all(mujoco.mjtObj.mjOBJ_BODY)}
    hand_bodies.add(robot.HAND_BODY)
    hand_geoms = [g for g in spec.geoms if g.parent.name in hand_bodies]
    if collision == "hand_self":
        for geom in hand_geoms:
            if geom.contype == _HAND_BIT:
                geom.conaffinity |= _HAND_BIT
    elif collision == "full_hand":
        # Every visual LEAP box collides; the named colliders, copies of some of them, step
        # aside, except the fingertip pads, which have no visual twin.
        for geom in hand_geoms:
            if not geom.contype:
                geom.contype, geom.conaffinity = _HAND_BIT, robot.OBJECT_COLLISION_BIT | _TABLE_BIT
            elif not geom.name.endswith("_pad"):
                geom.contype = geom.conaffinity = 0
    elif collision == "table_box":
        table = spec.geom(robot.TABLE_GEOM)
        table.type = mujoco.mjtGeom.mjGEOM_BOX
        table.size = [0.6, 0.75, 0.3]
        table.pos = [0.35, 0.0, robot.TABLE_HEIGHT - 0.3]
    return spec


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
        return objects.compile_object_model(
            lambda: scene_spec(self.collision), self.library.spec(object_id), SLOT_GEOMS,
            object_library.ROBOT_SLOTS, _inertial(self.library, object_id))


def _inertial(library: object_library.ObjectLibrary, i: int) -> objects.Inertial:
    return objects.Inertial(library.mass[i], library.com[i], library.inertia[i], library.iquat[i])


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
        lambda: scene_spec(collision), specs, SLOT_GEOMS, object_library.ROBOT_SLOTS,
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
