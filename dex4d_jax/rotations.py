"""Rotations in numpy (float64), quaternions scalar-first (w, x, y, z) as in MuJoCo.

The one numpy rotation toolkit of the project: the point-track pipeline, the deploy runtime's
native simulation and the object-shape code all use these, so none of them imports JAX for a
rotation. Each function is vectorised over leading axes and agrees with MuJoCo's own
`mju_quat2Mat`, `mju_mat2Quat` and `mju_axisAngle2Quat` (tests/test_rotations.py checks it).
The JAX versions used inside jitted environments are in `dex4d_jax.geometry`.
"""

from __future__ import annotations

import numpy as np


def _unit(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"Quaternions must have shape [..., 4] (w, x, y, z); got {q.shape}.")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norm)) or np.any(norm == 0):
        raise ValueError("A quaternion is zero or not finite; it describes no rotation.")
    return q / norm


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] wxyz (normalised here).

    Raises:
      ValueError: the last axis is not 4, or a quaternion is zero or not finite.
    """
    w, x, y, z = np.moveaxis(_unit(q), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions [..., 4] wxyz (w >= 0) of rotation matrices [..., 3, 3].

    Shepperd's method: of the four candidate expressions, the one with the largest diagonal
    term is used, so the result is accurate for every rotation (including 180 degrees).
    """
    m = np.asarray(rot, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"Rotation matrices must have shape [..., 3, 3]; got {m.shape}.")
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)  # [..., 4 candidates, 4]; candidate k is 4 q_k q
    diag = np.stack([1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def axis_angle_to_quat(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] wxyz of a rotation by `angle` [...] radians about `axis` [..., 3].

    The axis is normalised here; a zero axis raises ValueError.
    """
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise ValueError("A rotation axis is zero or not finite.")
    half = 0.5 * np.asarray(angle, dtype=np.float64)[..., None]
    return np.concatenate([np.cos(half) * np.ones_like(norm),
                           np.sin(half) * axis / norm], axis=-1)


def quat_multiply(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hamilton products q1 * q2 [..., 4] wxyz (rotate by q2, then by q1)."""
    w1, x1, y1, z1 = np.moveaxis(np.asarray(q1, np.float64), -1, 0)
    w2, x2, y2, z2 = np.moveaxis(np.asarray(q2, np.float64), -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)
