"""Numpy rotations against MuJoCo: mju_quat2Mat, mju_mat2Quat, mju_axisAngle2Quat, mju_mulQuat."""

import mujoco
import numpy as np
import pytest

from dex4d_jax import rotations

RNG = np.random.default_rng(0)


def _unit_quats(num: int) -> np.ndarray:
    q = RNG.normal(size=(num, 4))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _half_turns(num: int) -> np.ndarray:
    """Quaternions [num, 4] of 180-degree rotations (w = 0), including the coordinate axes."""
    axes = RNG.normal(size=(num - 3, 3))
    axes = np.concatenate([np.eye(3), axes / np.linalg.norm(axes, axis=-1, keepdims=True)])
    return np.concatenate([np.zeros((num, 1)), axes], axis=-1)


def _mj_mat(q: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(q, np.float64))
    return mat.reshape(3, 3)


def _mj_quat(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, np.float64).reshape(-1))
    return quat


def test_quat_to_matrix_matches_mujoco_and_normalises():
    q = _unit_quats(200)
    want = np.stack([_mj_mat(qi) for qi in q])
    np.testing.assert_allclose(rotations.quat_to_matrix(q), want, atol=1e-12)
    # Unnormalised input gives the rotation of the unit quaternion.
    np.testing.assert_allclose(rotations.quat_to_matrix(3.0 * q), want, atol=1e-12)
    np.testing.assert_allclose(rotations.quat_to_matrix(q[0]), want[0], atol=1e-12)


def test_matrix_to_quat_matches_mujoco_including_half_turns():
    q = np.concatenate([_unit_quats(200), _half_turns(20)])
    mats = np.stack([_mj_mat(qi) for qi in q])
    got = rotations.matrix_to_quat(mats)
    want = np.stack([_mj_quat(m) for m in mats])
    # q and -q are the same rotation: compare up to sign, and check w >= 0 here.
    np.testing.assert_allclose(np.abs(np.sum(got * want, axis=-1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(got * q, axis=-1)), 1.0, atol=1e-12)
    assert np.all(got[:, 0] >= 0.0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-12)
    # Round trip through the matrix, including every 180-degree case.
    np.testing.assert_allclose(rotations.quat_to_matrix(got), mats, atol=1e-12)


def test_axis_angle_to_quat_matches_mujoco():
    axes = RNG.normal(size=(100, 3))
    angles = RNG.uniform(-2 * np.pi, 2 * np.pi, size=100)
    got = rotations.axis_angle_to_quat(axes, angles)
    want = np.zeros((100, 4))
    for i in range(100):
        unit = axes[i] / np.linalg.norm(axes[i])
        mujoco.mju_axisAngle2Quat(want[i], unit, angles[i])
    np.testing.assert_allclose(got, want, atol=1e-12)
    # One axis [3] with many angles [T] broadcasts to [T, 4].
    many = rotations.axis_angle_to_quat(axes[0], angles)
    assert many.shape == (100, 4)
    np.testing.assert_allclose(many[3], rotations.axis_angle_to_quat(axes[0], angles[3]))


def test_quat_multiply_matches_mujoco_and_composes_matrices():
    q1, q2 = _unit_quats(100), _unit_quats(100)
    got = rotations.quat_multiply(q1, q2)
    want = np.zeros((100, 4))
    for i in range(100):
        mujoco.mju_mulQuat(want[i], q1[i], q2[i])
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(rotations.quat_to_matrix(got),
                               rotations.quat_to_matrix(q1) @ rotations.quat_to_matrix(q2),
                               atol=1e-12)


def test_batched_shapes():
    q = _unit_quats(24).reshape(2, 3, 4, 4)
    mats = rotations.quat_to_matrix(q)
    assert mats.shape == (2, 3, 4, 3, 3)
    assert rotations.matrix_to_quat(mats).shape == (2, 3, 4, 4)
    assert rotations.quat_multiply(q, q[0]).shape == (2, 3, 4, 4)
    assert rotations.axis_angle_to_quat(RNG.normal(size=(2, 3, 3)), np.ones((2, 3))).shape == (
        2, 3, 4)
    np.testing.assert_allclose(mats[1, 2, 3], _mj_mat(q[1, 2, 3]), atol=1e-12)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="zero"):
        rotations.quat_to_matrix(np.zeros(4))
    with pytest.raises(ValueError, match="zero"):
        rotations.quat_to_matrix(np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        rotations.quat_to_matrix(np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        rotations.matrix_to_quat(np.eye(4))
    with pytest.raises(ValueError, match="axis"):
        rotations.axis_angle_to_quat(np.zeros(3), 1.0)
