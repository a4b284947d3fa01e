"""Native MuJoCo models of the task scenes holding one object (numpy and mujoco only, no JAX).

An object is a compound of primitives in fixed geom *slots* whose types never change (MJX
picks collision functions from geom types when it traces, so types are static while sizes and
poses may vary per environment). A shape that leaves a slot unused shrinks it to a 1 mm speck
inside slot 0, where it can never touch anything. Two scenes:

* the `ap2ap_wrench` table (mjcf/ap2ap_wrench.xml), slots WRENCH_SLOT_KINDS in
  WRENCH_SLOT_GEOMS;
* the xArm6 + LEAP hand scene (mjcf/dex4d_scene.xml, `robot_scene_spec`), slots
  `object_library.ROBOT_SLOTS` in ROBOT_SLOT_GEOMS, with a collision preset.

The MJX environments (`dex4d_jax.envs.objects`, `dex4d_jax.envs.robot_scene`) batch these
models' fields; the deploy runtime's simulated robot (`dex4d_jax.deploy.sim_setup`) compiles
them for native MuJoCo. Lengths in metres, quaternions wxyz.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import mujoco
import numpy as np

import dex4d_jax.mjcf
from dex4d_jax import robot, rotations

if TYPE_CHECKING:
    from dex4d_jax import object_families, shapes

WRENCH_XML = pathlib.Path(dex4d_jax.mjcf.__file__).parent / "ap2ap_wrench.xml"

# Geom types of the wrench scene's slots, in the order of the object's geoms in its MJCF.
WRENCH_SLOT_KINDS = ("box", "box", "capsule")
WRENCH_SLOT_GEOMS = ("object_box_a", "object_box_b", "object_capsule")
# The robot scene's slot geoms, in the order of object_library.ROBOT_SLOTS.
ROBOT_SLOT_GEOMS = ("object_box_a", "object_box_b", "object_capsule_a", "object_capsule_b")
COLLISION_PRESETS = ("default", "hand_self", "table_box", "full_hand")

_HIDDEN_SIZE = 0.001
_QUAT_ID = np.array([1.0, 0.0, 0.0, 0.0])


class ContactLimits(NamedTuple):
    """MJX's caps on the collision work of one physics step (-1: no cap).

    MJX's JAX implementation gives every candidate geom pair fixed contact slots and computes
    all of them at every step (174 pairs and 540 contact slots in the default robot scene), and
    its constraint solver works on every slot, touching or not. The caps are MJX's own
    `<custom><numeric>` options (MuJoCo Playground's LEAP hand uses them too):

    max_contact_points: contacts kept per step, those with the smallest distance (the deepest);
      each costs the solver 4 constraint rows (pyramidal cone, condim 3).
    max_geom_pairs: per group of pairs with the same geom types (box-box, capsule-box, ...; plane
      pairs are never culled), the pairs whose bounding spheres are nearest, the only ones that
      then run the narrow phase.

    The physics is unchanged while fewer contacts are active than the cap and fewer pairs of a
    type overlap than its cap: tests/test_grasp.py measures a power grasp's counts, and
    docs/robot.md gives the values and the cost (bench/ap2ap_step_cost.py).
    """

    max_contact_points: int
    max_geom_pairs: int


# The robot scene's caps: the measured counts and their margins are in docs/robot.md.
CONTACT_LIMITS = ContactLimits(max_contact_points=32, max_geom_pairs=32)
NO_CONTACT_LIMITS = ContactLimits(-1, -1)


class Inertial(NamedTuple):
    """Explicit mass properties of an object body (object frame); the library stores them as
    arrays, `inertia.MassProperties` has the same fields and serves too."""

    mass: float  # kg
    com: np.ndarray  # [3] metres
    inertia: np.ndarray  # [3] principal moments, kg m^2
    iquat: np.ndarray  # [4] wxyz, object frame to principal axes


def wrench_scene_spec() -> mujoco.MjSpec:
    """An uncompiled spec of the `ap2ap_wrench` scene (mjcf/ap2ap_wrench.xml)."""
    return mujoco.MjSpec.from_string(WRENCH_XML.read_text())


def robot_scene_spec(collision: str = "default", contact_limits: ContactLimits | None = None
                     ) -> mujoco.MjSpec:
    """The robot scene's MjSpec with a collision preset and MJX's contact caps applied.

    Args:
      collision: one of COLLISION_PRESETS: "default"; "hand_self" adds hand self-collision;
        "table_box" makes the table a box instead of a plane; "full_hand" makes all 67 LEAP
        boxes colliders instead of 24 (docs/robot.md).
      contact_limits: MJX's caps on contacts and geom pairs (CONTACT_LIMITS by default);
        written as the model's `max_contact_points` / `max_geom_pairs` custom numerics, which
        native MuJoCo ignores.

    Returns:
      An uncompiled spec of mjcf/dex4d_scene.xml.

    Raises:
      ValueError: an unknown preset, or a cap below -1.
    """
    if collision not in COLLISION_PRESETS:
        raise ValueError(f"Unknown collision preset {collision!r}; valid: "
                         f"{', '.join(COLLISION_PRESETS)}")
    limits = CONTACT_LIMITS if contact_limits is None else contact_limits
    spec = mujoco.MjSpec.from_file(str(robot.SCENE_XML))
    for name, value in limits._asdict().items():
        if int(value) < -1:
            raise ValueError(f"{name} must be -1 (no cap) or a count, got {value}")
        if int(value) >= 0:
            spec.add_numeric(name=name, data=[float(value)])
    hand_bodies = {b.name for b in spec.body(robot.HAND_BODY).find_all(mujoco.mjtObj.mjOBJ_BODY)}
    hand_bodies.add(robot.HAND_BODY)
    hand_geoms = [g for g in spec.geoms if g.parent.name in hand_bodies]
    if collision == "hand_self":
        for geom in hand_geoms:
            if geom.contype == robot.HAND_COLLISION_BIT:
                geom.conaffinity |= robot.HAND_COLLISION_BIT
    elif collision == "full_hand":
        # Every visual LEAP box collides; the named colliders, copies of some of them, step
        # aside, except the fingertip pads, which have no visual twin.
        for geom in hand_geoms:
            if not geom.contype:
                geom.contype = robot.HAND_COLLISION_BIT
                geom.conaffinity = robot.OBJECT_COLLISION_BIT | robot.TABLE_COLLISION_BIT
            elif not geom.name.endswith("_pad"):
                geom.contype = geom.conaffinity = 0
    elif collision == "table_box":
        table = spec.geom(robot.TABLE_GEOM)
        table.type = mujoco.mjtGeom.mjGEOM_BOX
        table.size = [0.6, 0.75, 0.3]
        table.pos = [0.35, 0.0, robot.TABLE_HEIGHT - 0.3]
    return spec


def as_spec(scene: str | Callable[[], mujoco.MjSpec]) -> mujoco.MjSpec:
    """A fresh MjSpec of `scene`: MJCF text, or a function returning a spec."""
    return scene() if callable(scene) else mujoco.MjSpec.from_string(scene)


def _slot_geom(slot: shapes.Primitive | None, kind: str, anchor: shapes.Primitive):
    """Returns (size[3], pos[3], quat[4]) for a slot, hiding an unused one inside `anchor`."""
    if slot is None:
        return np.full(3, _HIDDEN_SIZE), anchor.pos, _QUAT_ID
    assert slot.kind == kind, (slot.kind, kind)
    size = np.zeros(3)
    size[: len(slot.size)] = slot.size
    return size, slot.pos, slot.quat


def set_object(spec: mujoco.MjSpec, obj: object_families.ObjectSpec, slot_geoms: Sequence[str],
               slot_kinds: Sequence[str], inertial: Inertial | None, body: str) -> None:
    """Writes an object's slots (and mass properties, when given) into a scene's spec.

    Args: as `compile_object_model`, with the spec to change in place.
    """
    anchor = obj.slots[0] if obj.slots[0] is not None else obj.primitives[0]
    for name, kind, slot in zip(slot_geoms, slot_kinds, obj.slots, strict=True):
        size, pos, quat = _slot_geom(slot, kind, anchor)
        geom = spec.geom(name)
        geom.size = size
        geom.pos = pos
        geom.quat = quat
    if inertial is not None:
        target = spec.body(body)
        target.explicitinertial = True
        target.mass = float(inertial.mass)
        target.ipos = inertial.com
        target.inertia = inertial.inertia
        target.iquat = inertial.iquat


def compile_object_model(
    scene: str | Callable[[], mujoco.MjSpec],
    obj: object_families.ObjectSpec,
    slot_geoms: Sequence[str] = WRENCH_SLOT_GEOMS,
    slot_kinds: Sequence[str] = WRENCH_SLOT_KINDS,
    inertial: Inertial | None = None,
    body: str = robot.OBJECT_BODY,
) -> mujoco.MjModel:
    """Compiles the scene holding one object.

    Args:
      scene: the scene's MJCF text, or a function returning a fresh MjSpec of it.
      obj: the object, in the `slot_kinds` layout.
      slot_geoms: names of the scene geoms that hold the slots.
      slot_kinds: geom type of each slot.
      inertial: optional explicit mass properties; without them MuJoCo derives them from the
        geoms' density.
      body: the object's body, which receives `inertial`.

    Returns:
      The compiled model: use it for native MuJoCo (its broad phase needs the body bounding
      volumes that only compiling computes).
    """
    spec = as_spec(scene)
    set_object(spec, obj, slot_geoms, slot_kinds, inertial, body)
    return spec.compile()


class StaticItem(NamedTuple):
    """A fixed object of a scene (a plate, a bowl, a cup the task puts the object on or in).

    Attributes:
      name: geom names are `item_<name>_<k>`.
      primitives: its geoms (boxes, capsules, spheres) in the item's frame.
      pos: [3] position of the item's frame in the world, metres.
      quat: [4] orientation of the item's frame in the world, wxyz.
      rgba: [4] colour.
    """

    name: str
    primitives: tuple
    pos: np.ndarray
    quat: np.ndarray
    rgba: tuple = (0.85, 0.85, 0.8, 1.0)


def add_static_items(spec: mujoco.MjSpec, items: Sequence[StaticItem], contype: int,
                     conaffinity: int) -> None:
    """Adds fixed items to a scene's world body, in place.

    The geoms belong to the world body, like the table, so MuJoCo never pairs them with the
    table; `contype` and `conaffinity` choose what else they meet. The robot scene passes
    contype = robot.ARM_COLLISION_BIT and conaffinity 0, so that only the object (whose
    conaffinity holds that bit) collides with them: the hand and arm pass through (MJX pays
    for every candidate pair at every step, and 24 hand boxes against each item would cost
    more than the benchmark's physics needs); they still block camera rays.

    Raises:
      ValueError: two items share a name, or an item has no primitives.
    """
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"Static item names repeat: {names}")
    kinds = {"box": mujoco.mjtGeom.mjGEOM_BOX, "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
             "sphere": mujoco.mjtGeom.mjGEOM_SPHERE}
    for item in items:
        if not item.primitives:
            raise ValueError(f"Static item {item.name!r} has no primitives")
        rot = rotations.quat_to_matrix(np.asarray(item.quat, np.float64))
        for k, prim in enumerate(item.primitives):
            size = np.zeros(3)
            size[: len(prim.size)] = prim.size
            spec.worldbody.add_geom(
                name=f"item_{item.name}_{k}", type=kinds[prim.kind], size=size,
                pos=np.asarray(item.pos) + rot @ prim.pos,
                quat=rotations.quat_multiply(np.asarray(item.quat, np.float64), prim.quat),
                contype=contype, conaffinity=conaffinity, rgba=list(item.rgba))
