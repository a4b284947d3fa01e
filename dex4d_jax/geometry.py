"""JAX pose math for jitted code: quaternions (wxyz), rigid transforms, paired points, Kabsch, FPS.

The numpy object-shape code (primitives, surface sampling, bounding boxes, numpy farthest
point sampling) is in `dex4d_jax.shapes`, and numpy rotations are in `dex4d_jax.rotations`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Squared-norm threshold below which a vector is treated as zero. Used to pick a safe branch in
# jnp.where so that both forward values and gradients stay finite.
_TINY = 1e-12


# ----------------------------------------------------------------------------------------------
# Small numerically safe helpers.
# ----------------------------------------------------------------------------------------------


def _safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm whose gradient is 0 (not NaN) at the origin.

    Args:
        x: [..., D] vectors.
        axis: Axis to reduce.

    Returns:
        [...] norms.
    """
    sq = jnp.sum(x * x, axis=axis)
    positive = sq > 0.0
    # The inner where keeps sqrt away from 0, where its derivative is infinite; the outer where
    # then selects the exact 0. Both branches therefore have finite gradients.
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _safe_unit(x: jax.Array, fallback: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Normalizes vectors, replacing (near-)zero vectors by ``fallback`` (default zeros).

    Args:
        x: [..., D] vectors.
        fallback: [D] or broadcastable vector used where ``x`` is (near) zero.

    Returns:
        Tuple of the unit vectors [..., D] and a boolean validity mask [...].
    """
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    valid = sq > _TINY
    unit = x / jnp.sqrt(jnp.where(valid, sq, 1.0))
    if fallback is None:
        fallback = jnp.zeros_like(x)
    return jnp.where(valid, unit, fallback), valid[..., 0]


# ----------------------------------------------------------------------------------------------
# Quaternions (wxyz, Hamilton convention, as in MuJoCo).
# ----------------------------------------------------------------------------------------------


def quat_mul(q1: jax.Array, q2: jax.Array) -> jax.Array:
    """Hamilton product q1 * q2 (apply q2 first, then q1).

    Args:
        q1: [..., 4] quaternions (wxyz).
        q2: [..., 4] quaternions (wxyz).

    Returns:
        [..., 4] product quaternions.
    """
    w1, x1, y1, z1 = jnp.moveaxis(q1, -1, 0)
    w2, x2, y2, z2 = jnp.moveaxis(q2, -1, 0)
    return jnp.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=-1,
    )


def quat_conj(q: jax.Array) -> jax.Array:
    """Quaternion conjugate (the inverse for unit quaternions).

    Args:
        q: [..., 4] quaternions (wxyz).

    Returns:
        [..., 4] conjugated quaternions.
    """
    return q * jnp.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def quat_normalize(q: jax.Array) -> jax.Array:
    """Normalizes quaternions to unit length; a zero quaternion becomes the identity.

    Args:
        q: [..., 4] quaternions.

    Returns:
        [..., 4] unit quaternions.
    """
    identity = jnp.array([1.0, 0.0, 0.0, 0.0], dtype=q.dtype)
    return _safe_unit(q, identity)[0]


def quat_rotate(q: jax.Array, v: jax.Array) -> jax.Array:
    """Rotates vectors by unit quaternions.

    Args:
        q: [..., 4] unit quaternions (wxyz).
        v: [..., 3] vectors.

    Returns:
        [..., 3] rotated vectors.
    """
    w = q[..., :1]
    u = q[..., 1:]
    # v' = v + 2 w (u x v) + 2 u x (u x v): cheaper than forming q v q* or the matrix.
    uv = jnp.cross(u, v)
    return v + 2.0 * (w * uv + jnp.cross(u, uv))


def quat_inv_rotate(q: jax.Array, v: jax.Array) -> jax.Array:
    """Rotates vectors by the inverse of unit quaternions.

    Args:
        q: [..., 4] unit quaternions (wxyz).
        v: [..., 3] vectors.

    Returns:
        [..., 3] vectors rotated by q^-1.
    """
    return quat_rotate(quat_conj(q), v)


def quat_to_mat(q: jax.Array) -> jax.Array:
    """Converts unit quaternions to rotation matrices.

    Args:
        q: [..., 4] unit quaternions (wxyz).

    Returns:
        [..., 3, 3] rotation matrices R with R @ v == quat_rotate(q, v).
    """
    w, x, y, z = jnp.moveaxis(q, -1, 0)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        [1.0 - 2.0 * (yy + zz), 2.0 * (xy - wz), 2.0 * (xz + wy)],
        [2.0 * (xy + wz), 1.0 - 2.0 * (xx + zz), 2.0 * (yz - wx)],
        [2.0 * (xz - wy), 2.0 * (yz + wx), 1.0 - 2.0 * (xx + yy)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def mat_to_quat(mat: jax.Array) -> jax.Array:
    """Converts rotation matrices to unit quaternions with Shepperd's method.

    All four candidate formulas are evaluated and the one with the largest pivot is selected,
    which avoids the cancellation of the naive trace formula near 180 degree rotations.

    Args:
        mat: [..., 3, 3] rotation matrices.

    Returns:
        [..., 4] unit quaternions (wxyz) with w >= 0.
    """
    r00, r01, r02 = mat[..., 0, 0], mat[..., 0, 1], mat[..., 0, 2]
    r10, r11, r12 = mat[..., 1, 0], mat[..., 1, 1], mat[..., 1, 2]
    r20, r21, r22 = mat[..., 2, 0], mat[..., 2, 1], mat[..., 2, 2]
    trace = r00 + r11 + r22
    # Each candidate equals 4 * q_k * q for the pivot component k, so it only needs normalizing.
    cands = jnp.stack(
        [
            jnp.stack([1.0 + trace, r21 - r12, r02 - r20, r10 - r01], axis=-1),
            jnp.stack([r21 - r12, 1.0 + r00 - r11 - r22, r01 + r10, r02 + r20], axis=-1),
            jnp.stack([r02 - r20, r01 + r10, 1.0 - r00 + r11 - r22, r12 + r21], axis=-1),
            jnp.stack([r10 - r01, r02 + r20, r12 + r21, 1.0 - r00 - r11 + r22], axis=-1),
        ],
        axis=-2,
    )  # [..., 4 (candidate), 4 (wxyz)]
    pivot = jnp.argmax(jnp.stack([trace, r00, r11, r22], axis=-1), axis=-1)
    q = jnp.take_along_axis(cands, pivot[..., None, None], axis=-2)[..., 0, :]
    q = quat_normalize(q)
    return jnp.where(q[..., :1] < 0.0, -q, q)


def axis_angle_to_quat(axis: jax.Array, angle: jax.Array | float) -> jax.Array:
    """Builds quaternions from rotation axes and angles.

    Args:
        axis: [..., 3] rotation axes, not necessarily normalized. A zero axis yields the identity
            (with finite gradients).
        angle: [...] rotation angles in radians.

    Returns:
        [..., 4] unit quaternions (wxyz).
    """
    unit, valid = _safe_unit(axis)
    half = 0.5 * jnp.asarray(angle, dtype=unit.dtype)
    w = jnp.where(valid, jnp.cos(half), 1.0)
    xyz = unit * jnp.sin(half)[..., None]
    return jnp.concatenate([w[..., None], xyz], axis=-1)


def quat_to_axis_angle(q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Converts unit quaternions to axis-angle form.

    Args:
        q: [..., 4] unit quaternions (wxyz).

    Returns:
        Tuple of unit axes [..., 3] (x axis for the identity) and angles [...] in [0, pi].
    """
    # q and -q encode the same rotation; choosing w >= 0 puts the angle in [0, pi].
    q = jnp.where(q[..., :1] < 0.0, -q, q)
    vec = q[..., 1:]
    sin_half = _safe_norm(vec)
    angle = 2.0 * jnp.arctan2(sin_half, q[..., 0])
    fallback = jnp.array([1.0, 0.0, 0.0], dtype=q.dtype)
    axis, _ = _safe_unit(vec, fallback)
    return axis, angle


def quat_angle_between(q1: jax.Array, q2: jax.Array) -> jax.Array:
    """Rotation angle of the relative rotation q1^-1 q2.

    Args:
        q1: [..., 4] unit quaternions (wxyz).
        q2: [..., 4] unit quaternions (wxyz).

    Returns:
        [...] angles in [0, pi]; invariant to q -> -q for either input.
    """
    rel = quat_mul(quat_conj(q1), q2)
    # atan2 of (|sin|, |cos|) is better conditioned than arccos near 0 and handles the double
    # cover via the absolute value of w.
    return 2.0 * jnp.arctan2(_safe_norm(rel[..., 1:]), jnp.abs(rel[..., 0]))


def random_quat(key: jax.Array, shape: Sequence[int] = ()) -> jax.Array:
    """Samples rotations uniformly from SO(3) (Haar measure).

    Args:
        key: PRNG key.
        shape: Batch shape.

    Returns:
        [*shape, 4] unit quaternions (wxyz) with w >= 0.
    """
    # A normalized isotropic Gaussian in R^4 is uniform on S^3, which is uniform on SO(3).
    q = quat_normalize(jax.random.normal(key, (*tuple(shape), 4)))
    return jnp.where(q[..., :1] < 0.0, -q, q)


def random_axis_angle_quat(
    key: jax.Array, max_angle: float | jax.Array, shape: Sequence[int] = ()
) -> jax.Array:
    """Samples rotations with a uniform random axis and an angle uniform in [0, max_angle].

    Args:
        key: PRNG key.
        max_angle: Maximum rotation angle in radians.
        shape: Batch shape.

    Returns:
        [*shape, 4] unit quaternions (wxyz).
    """
    key_axis, key_angle = jax.random.split(key)
    shape = tuple(shape)
    axis = jax.random.normal(key_axis, (*shape, 3))
    angle = jax.random.uniform(key_angle, shape, maxval=1.0) * max_angle
    return axis_angle_to_quat(axis, angle)


# ----------------------------------------------------------------------------------------------
# Poses and point sets.
# ----------------------------------------------------------------------------------------------


def transform_points(pos: jax.Array, quat: jax.Array, points: jax.Array) -> jax.Array:
    """Maps body-frame points to the world frame.

    Args:
        pos: [..., 3] body positions.
        quat: [..., 4] body orientations (wxyz).
        points: [..., N, 3] points in the body frame.

    Returns:
        [..., N, 3] points in the world frame.
    """
    return quat_rotate(quat[..., None, :], points) + pos[..., None, :]


def inverse_transform_points(pos: jax.Array, quat: jax.Array, points: jax.Array) -> jax.Array:
    """Maps world-frame points into the body frame (inverse of ``transform_points``).

    Args:
        pos: [..., 3] body positions.
        quat: [..., 4] body orientations (wxyz).
        points: [..., N, 3] points in the world frame.

    Returns:
        [..., N, 3] points in the body frame.
    """
    return quat_inv_rotate(quat[..., None, :], points - pos[..., None, :])


def paired_points(current: jax.Array, target: jax.Array) -> jax.Array:
    """Pairs current and target keypoints, q_i = [p_i ; p_bar_i] (Dex4D Eq. 1).

    Args:
        current: [..., N, 3] current object keypoints.
        target: [..., N, 3] target object keypoints.

    Returns:
        [..., N, 6] paired points.
    """
    current, target = jnp.broadcast_arrays(current, target)
    return jnp.concatenate([current, target], axis=-1)


def mean_point_distance(
    current: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Mean Euclidean distance between corresponding points (Dex4D Eq. 4).

    Args:
        current: [..., N, 3] points.
        target: [..., N, 3] corresponding points.
        mask: Optional [..., N] boolean visibility; only visible points are averaged.

    Returns:
        [...] mean distances; exactly 0 (with finite gradients) when no point is visible.
    """
    dist = _safe_norm(current - target)  # [..., N]
    if mask is None:
        return jnp.mean(dist, axis=-1)
    weights = jnp.asarray(mask).astype(dist.dtype)
    count = jnp.sum(weights, axis=-1)
    total = jnp.sum(dist * weights, axis=-1)
    return jnp.where(count > 0.0, total / jnp.maximum(count, 1.0), 0.0)


def kabsch(
    src: jax.Array, dst: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Weighted least-squares rigid alignment: dst ~= R @ src + t.

    Degenerate inputs are handled without Python branches: if the weighted cross-covariance
    vanishes (nothing visible, one point, or all points identical) R is the identity and t the
    centroid difference (0 when nothing is visible). Collinear and coplanar inputs yield some
    proper rotation that is optimal (any rotation about the degenerate direction is).

    Args:
        src: [..., N, 3] source points.
        dst: [..., N, 3] destination points.
        mask: Optional [..., N] boolean visibility or non-negative float weights.

    Returns:
        Tuple of rotations R [..., 3, 3] (det +1) and translations t [..., 3].
    """
    src, dst = jnp.broadcast_arrays(src, dst)
    dtype = jnp.result_type(src.dtype, jnp.float32)
    src = src.astype(dtype)
    dst = dst.astype(dtype)
    if mask is None:
        weights = jnp.ones(src.shape[:-1], dtype)
    else:
        weights = jnp.broadcast_to(jnp.asarray(mask).astype(dtype), src.shape[:-1])
    w = weights[..., None]  # [..., N, 1]
    total = jnp.sum(weights, axis=-1)[..., None]  # [..., 1]
    visible = total > 0.0
    safe_total = jnp.where(visible, total, 1.0)
    src_c = jnp.where(visible, jnp.sum(w * src, axis=-2) / safe_total, 0.0)
    dst_c = jnp.where(visible, jnp.sum(w * dst, axis=-2) / safe_total, 0.0)
    src_0 = src - src_c[..., None, :]
    dst_0 = dst - dst_c[..., None, :]
    # H = sum_i w_i src_i dst_i^T, so that the optimum is R = V diag(1, 1, d) U^T.
    cov = jnp.einsum("...ni,...nj->...ij", w * src_0, dst_0)
    u, s, vt = jnp.linalg.svd(cov)
    v = jnp.swapaxes(vt, -1, -2)
    ut = jnp.swapaxes(u, -1, -2)
    # Flip the least significant singular direction if U V^T is a reflection. SVD sorts singular
    # values descending, so for collinear/coplanar input the fitted directions are unaffected.
    det = jnp.linalg.det(v @ ut)
    sign = jnp.where(det < 0.0, -1.0, 1.0).astype(dtype)
    diag = jnp.concatenate(
        [jnp.ones(sign.shape + (2,), dtype), sign[..., None]], axis=-1
    )  # [..., 3]
    rot = (v * diag[..., None, :]) @ ut
    # Float round-off leaves ~eps-relative noise in the centered points of a degenerate cloud, so
    # compare the covariance against the uncentered magnitude instead of against zero.
    scale = jnp.sum(weights * (jnp.sum(src * src, -1) + jnp.sum(dst * dst, -1)), axis=-1)
    eps = jnp.finfo(dtype).eps
    degenerate = s[..., 0] <= 100.0 * eps * eps * scale + jnp.finfo(dtype).tiny
    eye = jnp.broadcast_to(jnp.eye(3, dtype=dtype), rot.shape)
    rot = jnp.where(degenerate[..., None, None], eye, rot)
    trans = dst_c - jnp.einsum("...ij,...j->...i", rot, src_c)
    return rot, trans


def farthest_point_sampling(
    points: jax.Array, num_samples: int, start_index: int | jax.Array = 0
) -> jax.Array:
    """Greedy farthest point sampling (jit-able; ``num_samples`` must be static).

    Args:
        points: [N, 3] points.
        num_samples: Number of indices to select.
        start_index: Index of the first selected point.

    Returns:
        [num_samples] int32 indices; ties are broken towards the lowest index.
    """
    points = jnp.asarray(points, jnp.float32)
    start = jnp.asarray(start_index, jnp.int32)
    indices = jnp.zeros((num_samples,), jnp.int32).at[0].set(start)
    min_dist = jnp.full((points.shape[0],), jnp.inf, jnp.float32)

    def body(i: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        indices, min_dist = carry
        diff = points - points[indices[i - 1]]
        # Explicit sum order mirrors shapes.farthest_point_sampling_np: both pick the same indices.
        dist = diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] + diff[:, 2] * diff[:, 2]
        min_dist = jnp.minimum(min_dist, dist)
        indices = indices.at[i].set(jnp.argmax(min_dist).astype(jnp.int32))
        return indices, min_dist

    indices, _ = jax.lax.fori_loop(1, num_samples, body, (indices, min_dist))
    return indices
