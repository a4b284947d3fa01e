"""The benchmark's damped-least-squares IK (dex4d_jax/benchmark/ik.py) against native MuJoCo.

One batched solve is compiled once (iterations traced, so the few-iteration warm starts reuse
it) and one batched site pose and Jacobian; every test calls them with BATCH trials.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from dex4d_jax import robot
from dex4d_jax.benchmark import ik

BATCH = 16


@pytest.fixture(scope="module")
def setup():
    """The robot scene (native and MJX), the grasp-ready template and the compiled functions."""
    mj_model = mujoco.MjModel.from_xml_path(str(robot.SCENE_XML))
    key_qpos = mj_model.key(robot.GRASP_READY_KEY).qpos.copy()
    model = mjx.put_model(mj_model)
    data = mjx.make_data(model).replace(qpos=jnp.asarray(key_qpos, jnp.float32))
    # site, target_pos, target_quat and start batched; iterations traced but shared.
    solve = jax.jit(jax.vmap(ik.solve_ik, in_axes=(None, None, 0, 0, 0, 0, None)))

    def pose_and_jacobian(model, data, site_id, arm_qpos):
        pos, quat = ik.site_pose(model, data, site_id, arm_qpos)
        return pos, quat, ik.site_jacobian(model, data, site_id, arm_qpos)[2]

    jacobian = jax.jit(jax.vmap(pose_and_jacobian, in_axes=(None, None, 0, 0)))
    sites = np.array([mj_model.site(robot.FLANGE_SITE).id, mj_model.site(robot.PALM_SITE).id]
                     * (BATCH // 2))
    ranges = robot.joint_ranges(mj_model)[: robot.NUM_ARM]
    return dict(mj_model=mj_model, key_qpos=key_qpos, model=model, data=data, solve=solve,
                jacobian=jacobian, sites=sites, ranges=ranges)


def _native_poses(setup, arms: np.ndarray, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native mj_kinematics site positions [B, 3] and quaternions [B, 4] (world frame)."""
    mj_model = setup["mj_model"]
    mj_data = mujoco.MjData(mj_model)
    positions, quats = [], []
    for arm, site in zip(arms, sites, strict=True):
        mj_data.qpos[:] = setup["key_qpos"]
        mj_data.qpos[: robot.NUM_ARM] = arm
        mujoco.mj_kinematics(mj_model, mj_data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, mj_data.site_xmat[site])
        positions.append(mj_data.site_xpos[site].copy())
        quats.append(quat)
    return np.array(positions), np.array(quats)


def _angle_between(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """[B] rotation angles (radians) between wxyz quaternions."""
    norms = np.linalg.norm(q1, axis=-1) * np.linalg.norm(q2, axis=-1)
    dot = np.abs(np.sum(q1 * q2, axis=-1)) / norms
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def _random_arms(setup, spread: float, seed: int) -> np.ndarray:
    """[BATCH, 6] arms uniform within `spread` radians of grasp-ready, inside the ranges."""
    ranges = setup["ranges"]
    noise = np.random.default_rng(seed).uniform(-spread, spread, (BATCH, robot.NUM_ARM))
    return np.clip(setup["key_qpos"][: robot.NUM_ARM] + noise, ranges[:, 0], ranges[:, 1])


def _solve(setup, target_pos, target_quat, starts, iterations: int) -> ik.IKResult:
    result = setup["solve"](setup["model"], setup["data"], setup["sites"],
                            np.asarray(target_pos, np.float32), np.asarray(target_quat, np.float32),
                            np.asarray(starts, np.float32), iterations)
    return jax.tree.map(np.asarray, result)


def _inside_ranges(setup, qpos: np.ndarray) -> bool:
    ranges = setup["ranges"]
    return bool(np.all((qpos >= ranges[:, 0] - 1e-6) & (qpos <= ranges[:, 1] + 1e-6)))


def test_reachable_poses_converge_and_match_native_kinematics(setup):
    """Flange and palm poses of random arms near grasp-ready, solved from the grasp-ready arm."""
    targets = _random_arms(setup, 0.5, seed=0)
    target_pos, target_quat = _native_poses(setup, targets, setup["sites"])
    starts = np.tile(setup["key_qpos"][: robot.NUM_ARM], (BATCH, 1))
    assert np.abs(targets - starts).max() > 0.4  # the solver has work to do

    result = _solve(setup, target_pos, target_quat, starts, 100)

    assert np.all(result.pos_error < 1e-3), result.pos_error
    assert np.all(result.rot_error < 1e-2), result.rot_error
    assert np.all(result.reachable)
    assert _inside_ranges(setup, result.qpos)
    # The returned joints reach the targets in native MuJoCo too (MJX and native agree).
    achieved_pos, achieved_quat = _native_poses(setup, result.qpos, setup["sites"])
    np.testing.assert_array_less(np.linalg.norm(achieved_pos - target_pos, axis=-1), 1e-3)
    np.testing.assert_array_less(_angle_between(achieved_quat, target_quat), 1e-2)


def test_unreachable_poses_are_flagged_with_finite_outputs(setup):
    """Targets 1.5 m from the base end unreachable, finite and inside the joint ranges."""
    angles = np.linspace(0.0, 2.0 * np.pi, BATCH, endpoint=False)
    heights = np.where(np.arange(BATCH) % 2 == 0, 0.0, 0.5)
    directions = np.stack([np.cos(angles), np.sin(angles), heights], axis=-1)
    target_pos = robot.BASE_POS + 1.5 * directions / np.linalg.norm(directions, axis=-1,
                                                                       keepdims=True)
    target_quat = np.random.default_rng(1).normal(size=(BATCH, 4))
    target_quat /= np.linalg.norm(target_quat, axis=-1, keepdims=True)
    starts = np.tile(setup["key_qpos"][: robot.NUM_ARM], (BATCH, 1))

    result = _solve(setup, target_pos, target_quat, starts, 100)

    for leaf in result:
        assert np.all(np.isfinite(leaf))
    assert not np.any(result.reachable)
    assert np.all(result.pos_error > 0.3)  # the xArm6 + hand reaches about 0.9 m
    assert _inside_ranges(setup, result.qpos)


def test_jax_jacobian_equals_mj_jac_site(setup):
    """site_jacobian's autodiff Jacobian and site_pose equal native mj_jacSite and kinematics."""
    mj_model, sites = setup["mj_model"], setup["sites"]
    ranges = setup["ranges"]
    arms = np.random.default_rng(2).uniform(ranges[:, 0], ranges[:, 1], (BATCH, robot.NUM_ARM))
    arms[0] = setup["key_qpos"][: robot.NUM_ARM]

    pos, quat, jac = jax.tree.map(np.asarray, setup["jacobian"](
        setup["model"], setup["data"], sites, arms.astype(np.float32)))

    mj_data = mujoco.MjData(mj_model)
    jacp, jacr = np.zeros((3, mj_model.nv)), np.zeros((3, mj_model.nv))
    for i, (arm, site) in enumerate(zip(arms, sites, strict=True)):
        mj_data.qpos[:] = setup["key_qpos"]
        mj_data.qpos[: robot.NUM_ARM] = arm
        mujoco.mj_forward(mj_model, mj_data)
        mujoco.mj_jacSite(mj_model, mj_data, jacp, jacr, site)
        np.testing.assert_allclose(jac[i, :3], jacp[:, : robot.NUM_ARM], atol=1e-4)
        np.testing.assert_allclose(jac[i, 3:], jacr[:, : robot.NUM_ARM], atol=1e-4)
        np.testing.assert_allclose(pos[i], mj_data.site_xpos[site], atol=1e-5)
        native_quat = np.zeros(4)
        mujoco.mju_mat2Quat(native_quat, mj_data.site_xmat[site])
        assert _angle_between(quat[i], native_quat) < 1e-3


def test_few_warm_started_iterations_reduce_the_error(setup):
    """The closed-loop use: from joints 0.1 rad off a target's, each iteration cuts the error."""
    targets = _random_arms(setup, 0.5, seed=3)
    target_pos, target_quat = _native_poses(setup, targets, setup["sites"])
    starts = targets + np.random.default_rng(4).uniform(-0.1, 0.1, targets.shape)
    starts = np.clip(starts, setup["ranges"][:, 0], setup["ranges"][:, 1])

    results = [_solve(setup, target_pos, target_quat, starts, k) for k in range(4)]

    for before, after in zip(results[:-1], results[1:], strict=True):
        # Monotone up to float32 rounding of an already converged trial.
        assert np.all(after.pos_error <= before.pos_error + 1e-6)
        assert np.all(after.rot_error <= before.rot_error + 1e-5)
    assert np.all(results[1].pos_error < 0.5 * results[0].pos_error)
    assert np.all(results[3].reachable)
