"""Geometry against independent references: scipy's rotations and a brute-force solver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from dex4d_jax import geometry, shapes

RNG = np.random.default_rng(0)


def _wxyz(rot: Rotation) -> np.ndarray:
    xyzw = rot.as_quat()
    return np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)


def _scipy(q_wxyz: np.ndarray) -> Rotation:
    q = np.asarray(q_wxyz, np.float64)
    return Rotation.from_quat(np.concatenate([q[..., 1:], q[..., :1]], axis=-1))


def test_quaternion_ops_match_scipy():
    r1, r2 = Rotation.random(50, random_state=1), Rotation.random(50, random_state=2)
    q1, q2 = jnp.asarray(_wxyz(r1)), jnp.asarray(_wxyz(r2))
    v = RNG.normal(size=(50, 3))
    np.testing.assert_allclose(geometry.quat_to_mat(q1), r1.as_matrix(), atol=1e-5)
    np.testing.assert_allclose(geometry.quat_rotate(q1, v), r1.apply(v), atol=1e-5)
    np.testing.assert_allclose(geometry.quat_inv_rotate(q1, v), r1.inv().apply(v), atol=1e-5)
    prod = _scipy(np.asarray(geometry.quat_mul(q1, q2)))
    np.testing.assert_allclose(prod.as_matrix(), (r1 * r2).as_matrix(), atol=1e-5)
    back = _scipy(np.asarray(geometry.mat_to_quat(jnp.asarray(r1.as_matrix(), jnp.float32))))
    np.testing.assert_allclose(back.as_matrix(), r1.as_matrix(), atol=1e-5)
    angle = geometry.quat_angle_between(q1, q2)
    np.testing.assert_allclose(angle, (r1.inv() * r2).magnitude(), atol=1e-4)


def test_axis_angle_round_trip_matches_scipy():
    rotvec = RNG.normal(size=(40, 3))
    rotvec *= (RNG.uniform(0, np.pi, 40) / np.linalg.norm(rotvec, axis=-1))[:, None]
    angle = np.linalg.norm(rotvec, axis=-1)
    q = geometry.axis_angle_to_quat(jnp.asarray(rotvec), jnp.asarray(angle))
    np.testing.assert_allclose(_scipy(np.asarray(q)).as_rotvec(), rotvec, atol=1e-5)
    axis, ang = geometry.quat_to_axis_angle(q)
    np.testing.assert_allclose(np.asarray(axis) * np.asarray(ang)[:, None], rotvec, atol=1e-4)


def test_random_axis_angle_respects_max_angle():
    q = geometry.random_axis_angle_quat(jax.random.PRNGKey(0), 0.5, (1000,))
    angles = _scipy(np.asarray(q)).magnitude()
    assert angles.max() <= 0.5 + 1e-5 and angles.max() > 0.45


def test_transform_points_round_trip():
    pos = jnp.asarray(RNG.normal(size=3))
    quat = jnp.asarray(_wxyz(Rotation.random(random_state=3)))
    pts = jnp.asarray(RNG.normal(size=(20, 3)))
    world = geometry.transform_points(pos, quat, pts)
    np.testing.assert_allclose(world, _scipy(np.asarray(quat)).apply(pts) + pos, atol=1e-5)
    np.testing.assert_allclose(geometry.inverse_transform_points(pos, quat, world), pts, atol=1e-5)


def test_paired_points_and_mean_distance_by_hand():
    cur = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    tgt = jnp.array([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    pairs = geometry.paired_points(cur, tgt)
    assert pairs.shape == (3, 6)
    np.testing.assert_allclose(pairs[0], [0, 0, 0, 3, 4, 0])
    assert float(geometry.mean_point_distance(cur, tgt)) == pytest.approx((5 + 0 + 1) / 3)
    mask = jnp.array([True, False, True])
    assert float(geometry.mean_point_distance(cur, tgt, mask)) == pytest.approx(3.0)


def test_mean_distance_none_visible_is_zero_with_finite_grad():
    cur, tgt = jnp.ones((5, 3)), jnp.ones((5, 3))
    mask = jnp.zeros(5, bool)
    assert float(geometry.mean_point_distance(cur, tgt + 1, mask)) == 0.0
    grad = jax.grad(lambda c: geometry.mean_point_distance(c, tgt, mask))(cur)
    assert np.all(np.isfinite(grad))
    # Coincident points: the norm's gradient at 0 must not be NaN either.
    grad = jax.grad(lambda c: geometry.mean_point_distance(c, tgt))(cur)
    assert np.all(np.isfinite(grad))


def _brute_force_alignment(src, dst, weights):
    """Minimises the weighted squared error over rotation vectors with scipy (many starts)."""

    def cost(rotvec):
        rot = Rotation.from_rotvec(rotvec)
        moved = rot.apply(src)
        t = np.average(dst - moved, axis=0, weights=weights)
        return np.sum(weights * np.sum((moved + t - dst) ** 2, axis=-1))

    best = min((minimize(cost, x0, method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-14,
                                                                      maxiter=20000))
                for x0 in RNG.normal(size=(8, 3))), key=lambda r: r.fun)
    return best.fun, cost


@pytest.mark.parametrize("masked", [False, True])
def test_kabsch_matches_brute_force(masked):
    src = RNG.normal(size=(30, 3))
    rot = Rotation.random(random_state=4)
    dst = rot.apply(src) + np.array([0.3, -0.2, 0.5]) + 0.05 * RNG.normal(size=(30, 3))
    mask = RNG.uniform(size=30) < 0.6 if masked else np.ones(30, bool)
    r, t = geometry.kabsch(jnp.asarray(src), jnp.asarray(dst), jnp.asarray(mask) if masked else None)
    r, t = np.asarray(r, np.float64), np.asarray(t, np.float64)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    w = mask.astype(float)
    ours = np.sum(w * np.sum((src @ r.T + t - dst) ** 2, axis=-1))
    best, _ = _brute_force_alignment(src, dst, w)
    assert ours <= best + 1e-4


def test_kabsch_exact_and_reflection_free():
    src = RNG.normal(size=(10, 3))
    rot = Rotation.random(random_state=5)
    r, t = geometry.kabsch(jnp.asarray(src), jnp.asarray(rot.apply(src) + 1.0))
    np.testing.assert_allclose(r, rot.as_matrix(), atol=1e-4)
    np.testing.assert_allclose(t, np.ones(3), atol=1e-4)
    # A mirror image: the best proper rotation, never a reflection.
    r, _ = geometry.kabsch(jnp.asarray(src), jnp.asarray(src * np.array([1, 1, -1])))
    assert np.linalg.det(np.asarray(r)) == pytest.approx(1.0, abs=1e-5)


def test_kabsch_degenerate_inputs_are_finite_and_vmappable():
    line = jnp.asarray(np.outer(np.linspace(-1, 1, 8), [1.0, 2.0, 0.5]))
    cases = jnp.stack([line, jnp.zeros((8, 3)), jnp.ones((8, 3)), line + 1e-7])
    masks = jnp.array([[True] * 8, [True] * 8, [False] * 8, [True] + [False] * 7])
    r, t = jax.vmap(geometry.kabsch)(cases, cases + 0.1, masks)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(t))
    np.testing.assert_allclose(np.linalg.det(np.asarray(r)), 1.0, atol=1e-4)
    # The collinear case still maps its points onto the targets.
    np.testing.assert_allclose(np.asarray(line) @ np.asarray(r[0]).T + t[0], line + 0.1, atol=1e-4)
    grad = jax.grad(lambda x: jnp.sum(geometry.kabsch(x, x + 0.1)[0]))(line)
    assert np.all(np.isfinite(grad))


def test_farthest_point_sampling_line_and_numpy_agree():
    line = np.linspace(0.0, 1.0, 11)[:, None] * np.array([[1.0, 0.0, 0.0]])
    idx = np.asarray(geometry.farthest_point_sampling(jnp.asarray(line), 3, start_index=0))
    assert sorted(idx.tolist()) == [0, 5, 10]
    pts = RNG.normal(size=(500, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(geometry.farthest_point_sampling(jnp.asarray(pts), 32, start_index=7)),
        shapes.farthest_point_sampling_np(pts, 32, start_index=7))
