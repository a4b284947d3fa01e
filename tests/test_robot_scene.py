"""The scene with per-environment objects: fields, resting heights, MJX batches."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from PIL import Image

from dex4d_jax import geometry, object_library, robot, rotations, scene_models, shapes
from dex4d_jax.envs import objects, robot_scene

from helpers import run_cli, run_headless, skip_without_gl

_UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])
_ON_SIDE = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0])  # 90 deg about x
_SETTLE_STEPS = 120  # 1 s of physics
_BESIDE_HAND = (0.5, 0.15)  # clear of the grasp-ready hand


@pytest.fixture(scope="module")
def library():
    """One object of every training family."""
    families = object_library.TRAIN_FAMILIES
    return object_library.build_library("train", num_objects=len(families), seed=3,
                                        families=families)


@pytest.fixture(scope="module")
def scene(library):
    return robot_scene.build_scene_objects(library)


def test_fields_follow_the_library(library, scene):
    for name, value in scene.fields.items():  # the batched fields are the compiled models'
        np.testing.assert_allclose(value[2], getattr(scene.native_model(2), name), atol=1e-6)
    body = scene.mj_model.body(robot.OBJECT_BODY).id
    np.testing.assert_allclose(scene.fields["body_mass"][:, body], library.mass, rtol=1e-5)
    np.testing.assert_allclose(scene.fields["body_ipos"][:, body], library.com, atol=1e-6)
    geom = scene.mj_model.geom(scene_models.ROBOT_SLOT_GEOMS[0]).id
    box_a = library.present[:, 0]
    np.testing.assert_allclose(scene.fields["geom_size"][box_a, geom], library.size[box_a, 0],
                               atol=1e-6)
    # Everything outside the object is identical from one object to the next.
    others = np.setdiff1d(np.arange(scene.mj_model.nbody), [0, body])
    assert np.ptp(np.asarray(scene.fields["body_mass"])[:, others], axis=0).max() == 0.0


def test_every_family_rests_at_its_predicted_height(library, scene):
    """Native MuJoCo: drop each object 1 cm upright and on its side, and let it settle."""
    for k in range(scene.num_objects):
        model = scene.native_model(k)
        for quat in (_UPRIGHT, _ON_SIDE):
            data = mujoco.MjData(model)
            mujoco.mj_resetDataKeyframe(model, data, model.key(robot.GRASP_READY_KEY).id)
            data.qpos[:] = robot_scene.grasp_ready_qpos(scene, k, _BESIDE_HAND, quat, lift=0.01)
            for _ in range(_SETTLE_STEPS):
                mujoco.mj_step(model, data)
            # An object may tip over into another resting pose (a mug on its side rolls onto
            # its handle): the prediction is for the orientation it settles in.
            final_quat = data.qpos[robot.NUM_JOINTS + 3:]
            expected = robot_scene.rest_height(scene.support[k], final_quat)
            name = f"{library.names[k]} {quat}"
            assert abs(data.qpos[robot.NUM_JOINTS + 2] - expected) < 2e-3, name
            assert np.abs(data.qvel[robot.NUM_JOINTS:]).max() < 0.05, name


def test_support_points_give_the_lowest_surface_point(library, scene):
    """No surface point lies below the predicted bottom, and dense samples come close to it."""
    rng = np.random.default_rng(0)
    for k in range(scene.num_objects):
        quat = np.asarray(geometry.random_quat(jax.random.PRNGKey(k)))
        points = shapes.sample_compound_surface(library.spec(k).primitives, 20000, rng)
        lowest = (points @ rotations.quat_to_matrix(quat).T)[:, 2].min()
        bottom = robot.TABLE_HEIGHT - robot_scene.rest_height(scene.support[k], quat)
        assert -1e-6 <= lowest - bottom < 2e-3, library.names[k]


@pytest.mark.slow
def test_mjx_batch_holds_different_objects_that_rest_at_their_heights(library, scene):
    """One vmapped MJX batch (the scene's contact caps on): every training family dropped 1 cm
    upright and on its side settles at its predicted height, as in native MuJoCo above."""
    ids = np.repeat(np.arange(scene.num_objects), 2)
    quats = [(_UPRIGHT, _ON_SIDE)[i % 2] for i in range(len(ids))]
    qpos0 = np.stack([robot_scene.grasp_ready_qpos(scene, k, _BESIDE_HAND, q, lift=0.01)
                      for k, q in zip(ids, quats, strict=True)])
    rollout = jax.jit(robot_scene.batched_rollout(scene, _SETTLE_STEPS))
    final = rollout(jnp.asarray(ids), jnp.asarray(qpos0))
    qpos, qvel = final.qpos, final.qvel
    assert scene.contact_limits == scene_models.CONTACT_LIMITS
    # The environments hold different objects: their slot geoms differ in size.
    slots = [scene.mj_model.geom(g).id for g in scene_models.ROBOT_SLOT_GEOMS]
    models = jax.vmap(scene.model_for, (None, 0))(objects.put_model(scene.mj_model),
                                                  jnp.asarray(ids[::2]))
    assert len({tuple(np.round(np.asarray(m).ravel(), 5))
                for m in models.geom_size[:, slots]}) == scene.num_objects
    for env, k in enumerate(ids):
        name = f"{library.names[k]} {quats[env]}"
        expected = robot_scene.rest_height(scene.support[k], np.asarray(qpos[env, -4:]))
        assert abs(float(qpos[env, robot.NUM_JOINTS + 2]) - expected) < 2e-3, name
        assert float(jnp.abs(qvel[env, robot.NUM_JOINTS:]).max()) < 0.05, name
        # The robot holds its pose meanwhile (servo sag under gravity stays small).
        np.testing.assert_allclose(qpos[env, :robot.NUM_ARM], qpos0[env, :robot.NUM_ARM],
                                   atol=0.02)


def test_cli_scene_describes_the_model_and_rejects_bad_input(capsys):
    def run(*argv):
        return run_cli(capsys, "scene", *argv)

    code, out = run("--object", "apple")
    assert code == 0
    assert "22 actuators" in out and " ".join(robot.JOINT_NAMES) in out and "apple" in out
    code, out = run("--object", "teapot")
    assert code == 2 and "no object 'teapot'" in out and "mug" in out
    code, out = run("--collision", "everything")
    assert code == 2 and "hand_self" in out


def test_cli_scene_renders_both_cameras(tmp_path):
    skip_without_gl()
    out = tmp_path / "scene.png"
    result = run_headless(
        """
        import sys
        from dex4d_jax.experiments import cli
        sys.exit(cli.main(["scene", "--object", "mug", "--render", sys.argv[1]]))
    """,
        str(out),
    )
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert image.shape == (480, 1280, 3)
    # The orange object shows in both views.
    orange = (image[..., 0] > 150) & (image[..., 1] < 120) & (image[..., 2] < 80)
    assert orange[:, :640].sum() > 100 and orange[:, 640:].sum() > 100


def test_arm_ladder_raises_the_palm_straight_up():
    """Each rung lifts the grasp-ready palm by its lift and keeps its orientation."""
    model = mujoco.MjModel.from_xml_path(str(robot.SCENE_XML))
    qpos = model.key(robot.GRASP_READY_KEY).qpos.copy()
    lifts = np.array([0.0, 0.05, 0.1])
    arms, lowest = robot_scene.arm_ladder(model, qpos, lifts)
    assert arms.shape == (3, robot.NUM_ARM) and lowest.shape == (3,)
    assert arms.dtype == lowest.dtype == np.float32
    data = mujoco.MjData(model)
    palm = model.site(robot.PALM_SITE).id
    poses = []
    for arm in arms:
        data.qpos[:] = qpos
        data.qpos[:robot.NUM_ARM] = arm
        mujoco.mj_forward(model, data)
        poses.append((data.site_xpos[palm].copy(), data.site_xmat[palm].copy()))
    for (pos, mat), lift in zip(poses, lifts, strict=True):
        np.testing.assert_allclose(pos - poses[0][0], [0.0, 0.0, lift], atol=1e-4)
        np.testing.assert_allclose(mat, poses[0][1], atol=1e-4)
    np.testing.assert_allclose(np.diff(lowest), np.diff(lifts), atol=2e-3)
