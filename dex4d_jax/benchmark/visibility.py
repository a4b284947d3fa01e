"""Which of an object's points a camera sees: one MJX ray per point, batched, inside jit.

The benchmark observes an object's surface keypoints "as a camera sees it" (SPEC section 7: "a
point is visible if the camera ray to it is not blocked (MJX has ray casting)"). A point is
*visible* when the segment from the camera's optical centre to the point meets no geom before
the point itself: not the robot hand, not a scene item such as a bowl, not the table and not the
object (the far side of an object is hidden by its near side, self-occlusion). Points lie on the
object's surface, so the ray to a visible point first hits the object at about the point; a hit
closer than the point by more than a small tolerance means something is in the way.

The camera is a point: there is no image plane, resolution or field of view, since the
benchmark's camera sees the whole workspace. The authors' Isaac Gym code rendered a depth image
and compared depths instead; casting one ray per point is the exact version of that test without
the pixel grid.

Which geoms occlude is `mjx.ray`'s choice (MJX 3.17): only geoms MuJoCo would draw (a geom
whose rgba or material alpha is 0 occludes nothing), of the groups `geomgroup` selects, and only
planes (seen from their front, +z, side), spheres, capsules, ellipsoids, boxes and meshes.
Cylinders and height fields are never hit, unlike in native `mujoco.mj_ray`; in the robot
scene that is 13 cylinders of the arm's visual group (2), whose collision boxes and capsules
(group 3) still block rays.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from mujoco import mjx

# The ray to a visible surface point hits that surface at |point - camera_pos| only up to
# float32 error: about 1e-7 m of rounding at 1 m, but up to a few 1e-4 m for grazing rays near
# the silhouette (the hit solves a quadratic whose discriminant vanishes there), plus however far
# the keypoints sit off the geoms (sampled on the same primitives, so on them to float precision).
# 3 mm covers all of these tenfold. Its cost: a surface less than 3 mm in front of a point does
# not hide it, which only matters for something pressed onto the object (a fingertip pad is
# larger than that, so it hides the points around its contact all the same).
DEFAULT_TOLERANCE = 0.003  # metres

# Rays shorter than this (metres) go to a point at the camera itself: visible, not cast.
_MIN_RAY_LENGTH = 1e-9


def visible_points(
    model: mjx.Model,
    data: mjx.Data,
    camera_pos: jax.Array,
    points: jax.Array,
    tolerance: float = DEFAULT_TOLERANCE,
    geomgroup: Sequence[int] = (),
) -> jax.Array:
    """[N] bool: points (world frame, [N, 3], metres) that the camera at camera_pos sees.

    Casts one ray per point with `mjx.ray`, from `camera_pos` towards the point. The point is
    visible iff the ray hits nothing, or its first hit is not closer to the camera than
    `|point - camera_pos| - tolerance`. A point at the camera (zero-length ray) is visible.

    `data` must hold the current kinematics (`geom_xpos`, `geom_xmat`): after `mjx.step`, call
    `data = mjx.kinematics(model, data)` first. `mjx.step` computes the geom poses from the qpos
    at the start of the step and then integrates, so its geoms lag one step behind qpos; points
    of a moving object computed from the new qpos would then be tested against the old geoms,
    and the near side of an object moving away from the camera would be wrongly hidden.

    The function jits and vmaps. The benchmark batches it over trials with
    `jax.vmap(visible_points, in_axes=(model_axes, 0, None, 0))`, where `model_axes` maps the
    per-trial model fields (object geom sizes and poses) to 0 and everything else to None; pass
    `tolerance` and `geomgroup` by keyword, or bind them with `functools.partial`.

    Args:
      model: the MJX model (its fields may be batched under an outer vmap).
      data: MJX data with current geom poses (run `mjx.kinematics` after `mjx.step`).
      camera_pos: [3] the camera's optical centre, world frame, metres. For a camera of the
        model, `data.cam_xpos[camera_id]` after `mjx.camlight` (which `mjx.kinematics` does not
        run), or `model.cam_pos[camera_id]` for a camera fixed in the world body.
      points: [N, 3] the points to test, world frame, metres.
      tolerance: metres; a hit this much closer than the point still counts as the point.
      geomgroup: as `mjx.ray`, six include flags for geom groups 0-5 (MuJoCo's
        `mjvOption.geomgroup`), or empty for all groups. A static Python sequence.

    Returns:
      [N] bool, True where the point is visible.

    Raises:
      ValueError: `points` is not [N, 3], or `camera_pos` is not [3].
    """
    camera_pos = jnp.asarray(camera_pos)
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {points.shape}")
    if camera_pos.shape != (3,):
        raise ValueError(f"camera_pos must be [3], got shape {camera_pos.shape}")
    if model.mat_rgba.shape[0] == 0:
        # mjx.ray reads mat_rgba[geom_matid] for every geom, which fails to compile when the
        # model has no material (an empty array cannot be gathered from). Every geom then has
        # geom_matid = -1, so one placeholder row changes no result.
        model = model.replace(mat_rgba=jnp.ones((1, 4), model.geom_rgba.dtype))

    offset = points - camera_pos
    sq_length = jnp.sum(offset * offset, axis=-1)
    is_ray = sq_length > _MIN_RAY_LENGTH**2
    length = jnp.sqrt(jnp.where(is_ray, sq_length, 1.0))
    # mjx.ray's distance is in units of |vec|: cast unit directions to get metres. A zero-length
    # ray gets an arbitrary unit direction (its result is overridden below), never a NaN.
    direction = jnp.where(is_ray[:, None], offset / length[:, None], jnp.array([0.0, 0.0, 1.0]))

    def first_hit(vec: jax.Array) -> jax.Array:
        dist, _ = mjx.ray(model, data, camera_pos, vec, geomgroup=tuple(geomgroup))
        return dist

    hit = jax.vmap(first_hit)(direction)  # metres, -1 for no hit
    return ~is_ray | (hit < 0.0) | (hit >= length - tolerance)
