"""Object and goal pose sampling shared by the AP2AP environments (SPEC section 4).

Positions are in a frame whose origin is on the table top (z = 0 on the table), orientations
are wxyz quaternions. `support` is an object's [P, 4] support points (objects.support_points),
from which `objects.frame_height` gives the height of its frame when it rests on the table.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from dex4d_jax.envs import objects

from dex4d_jax import config_checks, geometry

_S = float(np.sqrt(0.5))
# The six face-down orientations of an object frame (each axis pointing down once).
FACE_QUATS = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [_S, _S, 0, 0], [_S, -_S, 0, 0],
                       [_S, 0, _S, 0], [_S, 0, -_S, 0]], np.float32)


# Declared ranges of the pose-sampling settings (dex4d_jax/config_checks.py).
SAMPLING_RANGES = {
    "reset_stable_ratio": config_checks.fraction(),
    "reset_xy_range": config_checks.non_negative(),
    "first_goal_xy_range": config_checks.non_negative(),
    "first_goal_max_angle": config_checks.Range(0.0, float(np.pi)),
    "next_goal_pos_range": config_checks.non_negative(),
    "next_goal_max_angle": config_checks.Range(0.0, float(np.pi)),
    "goal_reset_stable_ratio": config_checks.fraction(),
}


def sampling_config(goal_reset_stable_ratio: float) -> dict:
    """The pose-sampling entries of an AP2AP environment's config (SPEC section 4)."""
    return dict(
        # Reset: random orientation, or a pose resting on a face with this probability.
        reset_stable_ratio=0.2,
        reset_xy_range=0.1,
        # First goal: lifted `first_goal_height` above the table, rotated from the initial
        # orientation by up to `first_goal_max_angle` about a random axis (pi: any).
        first_goal_height=(0.1, 0.2),
        first_goal_xy_range=0.1,
        first_goal_max_angle=float(np.pi),
        # Later goals, sampled in place once a goal is held.
        next_goal_pos_range=0.1,
        next_goal_max_angle=0.5,
        goal_reset_stable_ratio=goal_reset_stable_ratio,
    )


def stable_quat(key: jax.Array) -> jax.Array:
    """One of the six face-down orientations, turned by a random yaw."""
    key_face, key_yaw = jax.random.split(key)
    face = jnp.asarray(FACE_QUATS)[jax.random.randint(key_face, (), 0, 6)]
    yaw = jax.random.uniform(key_yaw, (), minval=-jnp.pi, maxval=jnp.pi)
    return geometry.quat_mul(geometry.axis_angle_to_quat(jnp.array([0.0, 0.0, 1.0]), yaw), face)


def stable_pose(key: jax.Array, support: jax.Array, center: jax.Array, xy_range: float):
    """A pose resting on the table within `xy_range` of `center` [2]: (position [3], quat)."""
    key_quat, key_xy = jax.random.split(key)
    quat = stable_quat(key_quat)
    xy = center + jax.random.uniform(key_xy, (2,), minval=-xy_range, maxval=xy_range)
    return jnp.concatenate([xy, objects.frame_height(support, quat)[None]]), quat


def reset_pose(key: jax.Array, support: jax.Array, center: jax.Array, xy_range: float,
               stable_ratio: float):
    """The reset pose: any orientation resting at its lowest point, or a stable pose.

    A millimetre of clearance keeps the first contact gentle.
    """
    key_stable, key_pose, key_quat, key_xy = jax.random.split(key, 4)
    stable_pos, stable_q = stable_pose(key_pose, support, center, xy_range)
    quat = geometry.random_quat(key_quat)
    xy = center + jax.random.uniform(key_xy, (2,), minval=-xy_range, maxval=xy_range)
    pos = jnp.concatenate([xy, objects.frame_height(support, quat)[None]])
    use_stable = jax.random.uniform(key_stable) < stable_ratio
    pos = jnp.where(use_stable, stable_pos, pos)
    quat = jnp.where(use_stable, stable_q, quat)
    return pos + jnp.array([0.0, 0.0, 0.001]), quat


def first_goal(key: jax.Array, quat: jax.Array, center: jax.Array, xy_range: float,
               height: tuple[float, float], max_angle: float):
    """A goal in the air: xy near `center`, `height` above the table, rotated from `quat`."""
    key_xy, key_z, key_rot = jax.random.split(key, 3)
    xy = center + jax.random.uniform(key_xy, (2,), minval=-xy_range, maxval=xy_range)
    z = jax.random.uniform(key_z, (1,), minval=height[0], maxval=height[1])
    rot = geometry.random_axis_angle_quat(key_rot, max_angle)
    return jnp.concatenate([xy, z]), geometry.quat_normalize(geometry.quat_mul(rot, quat))


def next_goal(key: jax.Array, support: jax.Array, goal_pos: jax.Array, goal_quat: jax.Array,
              workspace_low: jax.Array, workspace_high: jax.Array, pos_range: float,
              max_angle: float, center: jax.Array, xy_range: float, stable_ratio: float):
    """The goal after a held one, in place (SPEC section 4).

    The held goal moved by up to `pos_range` per axis (kept in the workspace and 1 cm above the
    table) and rotated by up to `max_angle` about a random axis; or, with probability
    `stable_ratio`, a resting pose on the table.
    """
    key_stable, key_pose, key_dpos, key_rot = jax.random.split(key, 4)
    delta = jax.random.uniform(key_dpos, (3,), minval=-pos_range, maxval=pos_range)
    rot = geometry.random_axis_angle_quat(key_rot, max_angle)
    quat = geometry.quat_normalize(geometry.quat_mul(rot, goal_quat))
    low = workspace_low.at[2].set(objects.frame_height(support, quat) + 0.01)
    pos = jnp.clip(goal_pos + delta, low, workspace_high)
    stable_pos, stable_q = stable_pose(key_pose, support, center, xy_range)
    use_stable = jax.random.uniform(key_stable) < stable_ratio
    return jnp.where(use_stable, stable_pos, pos), jnp.where(use_stable, stable_q, quat)
