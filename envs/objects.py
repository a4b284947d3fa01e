"""Objects (from `object_families`) in fixed geom slots, and their batched MJX model fields.

The slots and the native model of a scene holding one object are `dex4d_jax.scene_models`
(no JAX, shared with the deploy runtime); this module stacks the fields that differ between
objects so that every environment of an MJX batch holds its own object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from dex4d_jax import geometry, object_families, rotations, scene_models

WRENCH_FAMILIES = ("box", "bottle", "l_shape", "t_shape", "hammer")

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

# Objects and their families live in object_families; this module batches them into models.
ObjectSpec = object_families.ObjectSpec


def batched_object_fields(
    scene: str | Callable[[], mujoco.MjSpec],
    objects: Sequence[ObjectSpec],
    slot_geoms: Sequence[str] = scene_models.WRENCH_SLOT_GEOMS,
    slot_kinds: Sequence[str] = scene_models.WRENCH_SLOT_KINDS,
    inertials: Sequence[scene_models.Inertial] | None = None,
    body: str = "object",
) -> tuple[mujoco.MjModel, dict]:
    """Compiles the scene once per object and stacks the fields that differ between them.

    Args: as `scene_models.compile_object_model`, with K objects and optionally K inertials.

    Returns:
      (mj_model of the first object, {field: [K, ...] jax array}) for the fields in
      _OBJECT_FIELDS; index the stack with an object id and `replace` them into the MJX model.
    """
    # One parse; each object overwrites every slot (and the inertial) before its compile.
    spec = scene_models.as_spec(scene)
    models = []
    for k, obj in enumerate(objects):
        scene_models.set_object(spec, obj, slot_geoms, slot_kinds,
                                None if inertials is None else inertials[k], body)
        models.append(spec.compile())
    fields = {name: jnp.asarray(np.stack([getattr(m, name) for m in models]), jnp.float32)
              for name in _OBJECT_FIELDS}
    return models[0], fields


IMPLS = ("jax", "warp")
WARP_INSTALL = "pip install mujoco-warp warp-lang"


def require_impl(impl: str) -> None:
    """Raises a clear error when MJX implementation `impl` cannot run here.

    Raises:
      ValueError: `impl` is not one of IMPLS.
      ImportError: `impl` is "warp" and warp-lang is not installed (MJX 3.17 carries MuJoCo
        Warp itself; it needs the `warp` package).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "warp":
        from mujoco.mjx import warp as mjx_warp

        if not (mjx_warp.WARP_INSTALLED and mjx_warp.mujoco_warp is not None):
            raise ImportError(f'impl="warp" needs NVIDIA Warp (the warp-lang package), which is '
                              f"not installed: {WARP_INSTALL}")


def put_model(mj_model: mujoco.MjModel, impl: str = "jax") -> mjx.Model:
    """mjx.put_model with the same-frame fast paths off, so object fields can vary per env.

    `impl` is MJX's implementation, "jax" or "warp" (MuJoCo Warp; needs warp-lang).
    """
    # This process's own device: a multi-process job's jax.devices()[0] is process 0's.
    model = mjx.put_model(mj_model, device=jax.local_devices()[0], impl=impl)
    return model.replace(**{name: np.zeros_like(getattr(model, name))
                            for name in _SAMEFRAME_FIELDS})


def object_model(model: mjx.Model, fields: dict, object_id: jax.Array) -> mjx.Model:
    """Returns `model` with the object fields of object `object_id` (batched under vmap).

    Each field takes the model's own shape: MJX's warp implementation keeps `geom_aabb` as
    [ngeom, 2, 3] where MuJoCo and the JAX implementation have [ngeom, 6].
    """
    return model.replace(**{name: value[object_id].reshape(np.shape(getattr(model, name)))
                            for name, value in fields.items()})


def num_support_points(slot_kinds: Sequence[str]) -> int:
    """Rows of `support_points` for a slot layout: 8 per box slot, 2 per capsule slot."""
    return sum(8 if kind == "box" else 2 for kind in slot_kinds)


def support_points(obj: ObjectSpec,
                   slot_kinds: Sequence[str] = scene_models.WRENCH_SLOT_KINDS) -> np.ndarray:
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
