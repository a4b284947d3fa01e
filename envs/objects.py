"""Objects (from `object_families`) in fixed geom slots, and their batched MJX model fields.

An object is a compound of primitives in fixed *slots* whose geom types never change
(MJX chooses collision functions from geom types when it traces, so types are static while
sizes and poses can vary per environment). A shape that leaves a slot unused shrinks it to a
1 mm speck inside slot 0, where it can never touch anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from dex4d_jax import geometry, object_families, rotations, shapes

# Geom types of the slots, in the order of the object's geoms in the MJCF.
SLOT_KINDS = ("box", "box", "capsule")
SLOT_GEOM_NAMES = ("object_box_a", "object_box_b", "object_capsule")
WRENCH_FAMILIES = ("box", "bottle", "l_shape", "t_shape", "hammer")
_HIDDEN_SIZE = 0.001

# Model fields that are traced arrays in MJX and may change from one object to the next.
_OBJECT_FIELDS = (
    "geom_size",
    "geom_pos",
    "geom_quat",
    "geom_rbound",
    "geom_aabb",
    "body_mass",
    "body_subtreemass",
    "body_inertia",
    "body_ipos",
    "body_iquat",
    "body_invweight0",
    "dof_invweight0",
    "dof_M0",
)
# Static fields that are only fast-path flags: a geom or body that happens to sit at its
# parent's frame for one object must not be treated so for all, so the general path is used.
_SAMEFRAME_FIELDS = ("geom_sameframe", "body_sameframe", "body_simple")

_QUAT_ID = np.array([1.0, 0.0, 0.0, 0.0])

# Objects and their families live in object_families; this module batches them into models.
ObjectSpec = object_families.ObjectSpec


def _slot_geom(slot: shapes.Primitive | None, kind: str, anchor: shapes.Primitive):
    """Returns (size[3], pos[3], quat[4]) for a slot, hiding an unused one inside `anchor`."""
    if slot is None:
        return np.full(3, _HIDDEN_SIZE), anchor.pos, _QUAT_ID
    assert slot.kind == kind, (slot.kind, kind)
    size = np.zeros(3)
    size[: len(slot.size)] = slot.size
    return size, slot.pos, slot.quat


class Inertial(NamedTuple):
    """Explicit mass properties of an object body (object frame); the library stores them as
    arrays, `inertia.MassProperties` has the same fields and serves too."""

    mass: float
    com: np.ndarray
    inertia: np.ndarray  # [3] principal moments
    iquat: np.ndarray  # [4] wxyz, object frame to principal axes


def _scene_spec(scene: str | Callable[[], mujoco.MjSpec]) -> mujoco.MjSpec:
    return scene() if callable(scene) else mujoco.MjSpec.from_string(scene)


def _set_object(spec: mujoco.MjSpec, obj: ObjectSpec, slot_geoms: Sequence[str],
                slot_kinds: Sequence[str], inertial: Inertial | None, body: str) -> None:
    """Writes an object's slots (and mass properties, when given) into the scene's spec."""
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
    obj: ObjectSpec,
    slot_geoms: Sequence[str] = SLOT_GEOM_NAMES,
    slot_kinds: Sequence[str] = SLOT_KINDS,
    inertial: Inertial | None = None,
    body: str = "object",
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
    spec = _scene_spec(scene)
    _set_object(spec, obj, slot_geoms, slot_kinds, inertial, body)
    return spec.compile()


def batched_object_fields(
    scene: str | Callable[[], mujoco.MjSpec],
    objects: Sequence[ObjectSpec],
    slot_geoms: Sequence[str] = SLOT_GEOM_NAMES,
    slot_kinds: Sequence[str] = SLOT_KINDS,
    inertials: Sequence[Inertial] | None = None,
    body: str = "object",
) -> tuple[mujoco.MjModel, dict]:
    """Compiles the scene once per object and stacks the fields that differ between them.

    Args: as `compile_object_model`, with K objects and optionally K inertials.

    Returns:
      (mj_model of the first object, {field: [K, ...] jax array}) for the fields in
      _OBJECT_FIELDS; index the stack with an object id and `replace` them into the MJX model.
    """
    # One parse; each object overwrites every slot (and the inertial) before its compile.
    spec = _scene_spec(scene)
    models = []
    for k, obj in enumerate(objects):
        _set_object(spec, obj, slot_geoms, slot_kinds,
                    None if inertials is None else inertials[k], body)
        models.append(spec.compile())
    fields = {name: jnp.asarray(np.stack([getattr(m, name) for m in models]), jnp.float32)
              for name in _OBJECT_FIELDS}
    return models[0], fields


def put_model(mj_model: mujoco.MjModel) -> mjx.Model:
    """mjx.put_model with the same-frame fast paths off, so object fields can vary per env."""
    model = mjx.put_model(mj_model)
    return model.replace(**{name: np.zeros_like(getattr(model, name))
                            for name in _SAMEFRAME_FIELDS})


def object_model(model: mjx.Model, fields: dict, object_id: jax.Array) -> mjx.Model:
    """Returns `model` with the object fields of object `object_id` (batched under vmap)."""
    return model.replace(**{name: value[object_id] for name, value in fields.items()})


def num_support_points(slot_kinds: Sequence[str]) -> int:
    """Rows of `support_points` for a slot layout: 8 per box slot, 2 per capsule slot."""
    return sum(8 if kind == "box" else 2 for kind in slot_kinds)


def support_points(obj: ObjectSpec, slot_kinds: Sequence[str] = SLOT_KINDS) -> np.ndarray:
    """Points and radii whose lowest `z - r` is the object's lowest point in any orientation.

    A box's lowest point is one of its corners and a capsule's lies `r` below one of its end
    points, so `min_i (R p_i).z - r_i` is the exact height of the object's bottom below its frame.

    Args:
      obj: the object.
      slot_kinds: its slot layout, which fixes the number of rows.

    Returns:
      [num_support_points(slot_kinds), 4] rows of (x, y, z, radius) in the object frame;
      unused rows repeat row 0.
    """
    rows = []
    for p in obj.primitives:
        rot = rotations.quat_to_matrix(p.quat)
        if p.kind == "box":
            signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
            local, radius = signs * p.size[:3], 0.0
        elif p.kind == "capsule":
            local, radius = np.array([[0, 0, -p.size[1]], [0, 0, p.size[1]]]), p.size[0]
        else:  # sphere
            local, radius = np.zeros((1, 3)), p.size[0]
        for point in local @ rot.T + p.pos:
            rows.append([*point, radius])
    rows += [rows[0]] * (num_support_points(slot_kinds) - len(rows))
    return np.asarray(rows, np.float32)


def frame_height(support: jax.Array, quat: jax.Array) -> jax.Array:
    """Height of the object frame above the object's lowest point, in orientation `quat`.

    Args:
      support: [P, 4] rows of `support_points`.
      quat: [4] wxyz orientation of the object in the world.

    Returns:
      Scalar: add the table height for the frame's height when the object rests on it.
    """
    z = geometry.quat_rotate(jnp.asarray(quat), jnp.asarray(support)[:, :3])[:, 2]
    return -jnp.min(z - jnp.asarray(support)[:, 3])
