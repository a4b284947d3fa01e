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
      contact_limits: MJX's contact caps (scene_models.ContactLimits).
      scene_items: fixed items on the table (scene_models.StaticItem), colliding with the
        object only.
    """

    mj_model: mujoco.MjModel
    fields: dict
    keypoints: np.ndarray
    support: np.ndarray
    library: object_library.ObjectLibrary
    collision: str
    contact_limits: scene_models.ContactLimits = scene_models.CONTACT_LIMITS
    scene_items: tuple = ()

    def scene_spec(self) -> mujoco.MjSpec:
        """A fresh spec of the scene (preset, caps, items) before any object is written."""
        return _scene_spec(self.collision, self.contact_limits, self.scene_items)

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
            self.scene_spec, self.library.spec(object_id),
            scene_models.ROBOT_SLOT_GEOMS,
            object_library.ROBOT_SLOTS, _inertial(self.library, object_id))


def _inertial(library: object_library.ObjectLibrary, i: int) -> scene_models.Inertial:
    return scene_models.Inertial(library.mass[i], library.com[i], library.inertia[i],
                                 library.iquat[i])


def _scene_spec(collision: str, limits: scene_models.ContactLimits,
                items: tuple) -> mujoco.MjSpec:
    spec = scene_models.robot_scene_spec(collision, limits)
    # Only the object meets the items (its conaffinity holds the arm's bit, the robot's
    # geoms' do not): see scene_models.add_static_items.
    scene_models.add_static_items(spec, items, contype=robot.ARM_COLLISION_BIT, conaffinity=0)
    return spec


def build_scene_objects(library: object_library.ObjectLibrary, collision: str = "default",
                        contact_limits: scene_models.ContactLimits | None = None,
                        scene_items: tuple = ()) -> SceneObjects:
    """Compiles the scene once per object and stacks the fields that change.

    Args:
      library: objects in the ROBOT_SLOTS layout, with mass properties.
      collision: a collision preset.
      contact_limits: MJX's contact caps (scene_models.CONTACT_LIMITS by default).
      scene_items: fixed items on the table (scene_models.StaticItem, world frame).

    Returns:
      The stacked fields; each object keeps its library mass, centre of mass and inertia.
    """
    limits = scene_models.CONTACT_LIMITS if contact_limits is None else contact_limits
    if tuple(library.slot_kinds) != object_library.ROBOT_SLOTS:
        raise ValueError(f"Library slots {library.slot_kinds} do not match the scene's "
                         f"{object_library.ROBOT_SLOTS}")
    specs = [library.spec(i) for i in range(len(library))]
    inertials = [_inertial(library, i) for i in range(len(library))]
    scene_items = tuple(scene_items)
    mj_model, fields = objects.batched_object_fields(
        lambda: _scene_spec(collision, limits, scene_items), specs,
        scene_models.ROBOT_SLOT_GEOMS,
        object_library.ROBOT_SLOTS,
        inertials=inertials)
    robot.check_model(mj_model)
    support = np.stack([objects.support_points(s, object_library.ROBOT_SLOTS) for s in specs])
    return SceneObjects(mj_model, fields, np.asarray(library.keypoints, np.float32), support,
                        library, collision, limits, scene_items)


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
    data = mjx.make_data(model, device=jax.local_devices()[0])
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
      The lowest z over every robot geom (one hanging from robot.BASE_BODY) in the hand and arm
      collision groups (robot.HAND_COLLISION_BIT, robot.ARM_COLLISION_BIT): exact for boxes and
      capsules, the bounding sphere otherwise. Geoms of the world body, such as the
      benchmark's fixed items, which carry the arm's bit so that the object meets them, are
      not the robot's.
    """
    lowest = np.inf
    for g in np.flatnonzero(robot.robot_geoms(mj_model)):
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


# ----------------------------------------------------------------------------------------------
# A scripted power grasp (numpy and mujoco only): tests/test_grasp.py runs it on both engines.
# ----------------------------------------------------------------------------------------------

# The phases of `power_grasp_plan`, in order: (name, seconds).
POWER_GRASP_PHASES = (("settle", 0.25), ("descend", 0.5), ("close", 1.0), ("lift", 1.25),
                      ("hold", 2.0))
# The joints that close the hand (towards their upper limits): each finger's mcp, pip and dip,
# the thumb's mcp and ipl. The fingers' sideways rot joints and the thumb's cmc and axl keep
# their grasp-ready angles.
_GRASP_FLEX_JOINTS = ("if_mcp", "if_pip", "if_dip", "mf_mcp", "mf_pip", "mf_dip",
                      "rf_mcp", "rf_pip", "rf_dip", "th_mcp", "th_ipl")


def _smoothstep(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def _digit_colliders(mj_model: mujoco.MjModel, site: str) -> list[int]:
    """Hand colliders of the digit (finger or thumb) that carries fingertip `site`."""
    palm = mj_model.body(robot.HAND_BODY).id
    root = mj_model.site_bodyid[mj_model.site(site).id]
    while mj_model.body_parentid[root] != palm:
        root = mj_model.body_parentid[root]
    geoms = []
    for g in np.flatnonzero(mj_model.geom_contype & robot.HAND_COLLISION_BIT):
        body = mj_model.geom_bodyid[g]
        while body not in (0, root):
            body = mj_model.body_parentid[body]
        if body == root:
            geoms.append(int(g))
    return geoms


def power_grasp_plan(scene: SceneObjects, object_id: int, lift: float = 0.10,
                     squeeze: float = 1.0, clearance: float = 0.01
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A scripted power grasp: the hand closes around an upright object, the arm lifts it.

    Object `object_id` stands upright on the table below the grasp-ready hand; the arm lowers
    the palm, the hand closes around the object, the arm raises the palm straight up by `lift`
    and everything holds still. The plan is computed, not simulated: forward kinematics of
    the native model (`scene.native_model(object_id)`), MuJoCo's geom distances
    (mj_geomDistance) and `raised_arm` (IK keeping the palm's orientation).

    The hand closes along one straight path in joint space, from the grasp-ready hand (s = 0)
    to every joint of `_GRASP_FLEX_JOINTS` (each finger's mcp, pip, dip; the thumb's mcp, ipl)
    at its upper limit (s = 1); the other hand joints keep their grasp-ready angles. The
    fingers curl down and back towards the thumb, the thumb curls towards the fingers.
    Placement:
      * palm descent dz: the deepest, up to 10 cm below grasp-ready, that leaves the open hand
        `clearance` from the object and keeps the robot's lowest collider
        (`lowest_robot_point`) `clearance` above the table along the whole closing path;
      * object x (world): where the fingers (index, middle, ring) and the thumb first touch it
        at the same s, s_c (bisection on x; each first touch a sweep of s, refined by
        bisection);
      * object y: midway between the middle fingertip and the thumb tip at s_c.
    Each depends on the others: three rounds of the three settle them. The hand's target is
    the path at s_c + squeeze / (the largest joint travel of the path): the joint that moves
    most is commanded `squeeze` radians past first touch, so with the default 1 rad the LEAP
    servos (3 N m/rad, capped at 0.5 N m) push at their cap and the fingers curl on under the
    object, pulling it up against the palm: a cage rather than a pinch. On the 16 bottles of
    `load_library("train", 16, 0, ("bottle",))` in native MuJoCo, the ten up to 10.2 cm tall
    are held (height within 1.1 mm and turning at most 6 degrees over the hold); of the six
    12 to 13 cm tall, which the palm and fingers cannot enclose, two are held and four tip or
    slip.

    Phases (POWER_GRASP_PHASES), each move with a smoothstep profile:
      settle  0.25 s  grasp-ready targets; the object rests on the table.
      descend 0.5 s   the arm lowers the palm straight down by dz; the hand stays open.
      close   1.0 s   the hand goes from s = 0 to its target in the first 0.75 s, then holds.
      lift    1.25 s  the arm raises the palm straight up by `lift` in the first 1.0 s; the
                      last 0.25 s let the servos settle.
      hold    2.0 s   all targets constant: the last round(2.0 / timestep) rows.
    The arm targets interpolate (in joint space) `raised_arm` solutions at most LIFT_STEP
    (1 cm) of palm height apart, each plus its servos' static gravity offset
    (qfrc_bias / kp at that pose), so that the palm reaches the commanded heights instead of
    sagging 4 to 7 mm below them.

    Args:
      scene: the scene objects.
      object_id: which object; it stands upright (identity orientation).
      lift: metres the palm rises in the lift phase.
      squeeze: radians past first touch commanded on the hand joint that moves most.
      clearance: metres kept between the open hand and the object, and between the robot and
        the table top.

    Returns:
      Tuple of qpos0 [nq]: the grasp-ready robot with the object resting upright on the table
      at the computed xy (world frame, metres; object quaternion wxyz (1, 0, 0, 0)), and
      targets [T, 22]: joint targets (radians, robot.JOINT_NAMES order: arm 6, hand 16) for
      the position servos, one per physics step of model.opt.timestep (1/120 s, so T = 600
      for the 5 s of the phases): set ctrl to targets[t] before physics step t.

    Raises:
      ValueError: the object does not fit under the open grasp-ready hand.
    """
    model = scene.native_model(object_id)
    data = mujoco.MjData(model)
    key = model.key(robot.GRASP_READY_KEY).qpos.copy()
    ranges = robot.joint_ranges(model)
    hand_open = key[: robot.NUM_JOINTS].copy()
    hand_closed = hand_open.copy()
    flex = [robot.JOINT_NAMES.index(name) for name in _GRASP_FLEX_JOINTS]
    hand_closed[flex] = ranges[flex, 1]

    def hand(s: float) -> np.ndarray:
        return hand_open + s * (hand_closed - hand_open)

    present = np.asarray(scene.library.present[object_id], bool)
    obj = [model.geom(name).id
           for name, used in zip(scene_models.ROBOT_SLOT_GEOMS, present, strict=True) if used]
    middle = model.site(robot.FINGERTIP_SITES[1]).id
    thumb_tip = model.site(robot.FINGERTIP_SITES[3]).id
    fingers = [g for s in robot.FINGERTIP_SITES[:3] for g in _digit_colliders(model, s)]
    thumb = _digit_colliders(model, robot.FINGERTIP_SITES[3])
    whole_hand = np.flatnonzero(model.geom_contype & robot.HAND_COLLISION_BIT)
    rest_z = rest_height(scene.support[object_id], _UPRIGHT)

    def pose(arm: np.ndarray, s: float, xy) -> None:
        data.qpos[:] = key
        data.qpos[: robot.NUM_JOINTS] = hand(s)
        data.qpos[: robot.NUM_ARM] = arm
        data.qpos[robot.NUM_JOINTS:] = [xy[0], xy[1], rest_z, *_UPRIGHT]
        mujoco.mj_kinematics(model, data)

    def gap(geoms) -> float:
        """Smallest signed distance (metres) between `geoms` and the object, up to 5 cm."""
        return min(mujoco.mj_geomDistance(model, data, int(a), b, 0.05, None)
                   for a in geoms for b in obj)

    def first_touch(arm: np.ndarray, xy, geoms) -> float:
        """The s at which `geoms` first touch the object (1.0: never)."""
        before = 0.0
        for s in np.linspace(0.0, 1.0, 21):
            pose(arm, s, xy)
            if gap(geoms) <= 0.0:
                break
            before = s
        else:
            return 1.0
        after = s
        for _ in range(6):
            mid = 0.5 * (before + after)
            pose(arm, mid, xy)
            before, after = (before, mid) if gap(geoms) <= 0.0 else (mid, after)
        return after

    def fits(arm: np.ndarray, xy) -> bool:
        pose(arm, 0.0, xy)
        if gap(whole_hand) < clearance:
            return False
        for s in np.linspace(0.0, 1.0, 11):
            pose(arm, s, xy)
            if lowest_robot_point(model, data) < robot.TABLE_HEIGHT + clearance:
                return False
        return True

    pose(key[: robot.NUM_ARM], 0.0, (2.0, 2.0))
    x_range = sorted([data.site_xpos[thumb_tip, 0], data.site_xpos[middle, 0]])
    xy = 0.5 * (data.site_xpos[thumb_tip, :2] + data.site_xpos[middle, :2])
    for _ in range(3):
        if not fits(key[: robot.NUM_ARM], xy):
            raise ValueError(f"Object {object_id} does not fit under the open hand.")
        low, high = 0.0, 0.1
        for _ in range(10):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if fits(raised_arm(model, key, -mid), xy) else (low, mid)
        dz = low
        arm = raised_arm(model, key, -dz)
        low, high = x_range
        for _ in range(16):
            mid = 0.5 * (low + high)
            later = first_touch(arm, (mid, xy[1]), fingers) > first_touch(arm, (mid, xy[1]), thumb)
            low, high = (mid, high) if later else (low, mid)
        x = 0.5 * (low + high)
        pose(arm, first_touch(arm, (x, xy[1]), fingers), (x, xy[1]))
        xy = np.array([x, 0.5 * (data.site_xpos[middle, 1] + data.site_xpos[thumb_tip, 1])])
    touch = max(first_touch(arm, xy, fingers), first_touch(arm, xy, thumb))
    s_hold = min(1.0, touch + squeeze / np.abs(hand_closed - hand_open).max())

    # Arm rungs: palm heights (relative to grasp-ready) at most 1 cm apart, down then up.
    down = max(1, int(np.ceil(dz / LIFT_STEP)))
    up = max(1, int(np.ceil(lift / LIFT_STEP)))
    heights = np.concatenate([np.linspace(0.0, -dz, down + 1),
                              np.linspace(-dz, lift - dz, up + 1)[1:]])
    kp = model.actuator_gainprm[: robot.NUM_ARM, 0]
    rungs, start = [], key.copy()
    for i, height in enumerate(heights):
        arm = raised_arm(model, key, height, start)
        start[: robot.NUM_ARM] = arm
        pose(arm, s_hold if i > down else 0.0, (2.0, 2.0))
        mujoco.mj_forward(model, data)
        rungs.append(arm + data.qfrc_bias[: robot.NUM_ARM] / kp)
    rungs = np.stack(rungs)

    def arm_at(r: float) -> np.ndarray:
        i = min(int(r), len(rungs) - 2)
        return rungs[i] + (r - i) * (rungs[i + 1] - rungs[i])

    targets = []
    for name, seconds in POWER_GRASP_PHASES:
        steps = int(round(seconds / model.opt.timestep))
        for i in range(steps):
            u = (i + 1) / steps
            rung, s = {
                "settle": (0.0, 0.0),
                "descend": (down * _smoothstep(u), 0.0),
                "close": (down, s_hold * _smoothstep(u / 0.75)),
                "lift": (down + up * _smoothstep(u / 0.8), s_hold),
                "hold": (down + up, s_hold),
            }[name]
            target = hand(s)
            target[: robot.NUM_ARM] = arm_at(rung)
            targets.append(target)
    return grasp_ready_qpos(scene, object_id, tuple(xy)), np.stack(targets)
