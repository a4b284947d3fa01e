"""Tests of dex4d_jax.benchmark.visibility: which points a camera sees, checked against mj_ray.

Occlusion by other geoms and by the object itself, agreement with native mujoco.mj_ray,
batching over trials, and fresh kinematics after a step.

One tiny scene (a floor plane, a mocap box "wall", a free sphere "ball"; no contacts, no
gravity), one module fixture, and every call padded to one point count so that the visibility
function compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from dex4d_jax.benchmark import visibility

SCENE = """
<mujoco model="visibility">
  <option timestep="0.01" gravity="0 0 0"><flag contact="disable"/></option>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="wall" mocap="true" pos="0 0 0.3">
      <geom name="wall" type="box" size="0.05 0.05 0.05"/>
    </body>
    <body name="ball" pos="0.3 0.3 0.2">
      <freejoint/>
      <geom name="ball" type="sphere" size="0.05"/>
    </body>
  </worldbody>
</mujoco>
"""
CAMERA = np.array([-1.0, 0.0, 0.6])
WALL = np.array([0.0, 0.0, 0.3])
BALL = np.array([0.3, 0.3, 0.2])
RADIUS = 0.05
NUM_PADDED = 64  # every call tests this many points (one compile)


@pytest.fixture(scope="module")
def scene():
    """The native and MJX models and the jitted functions every test shares."""
    mj_model = mujoco.MjModel.from_xml_string(SCENE)
    model = mjx.put_model(mj_model)
    return {
        "mj_model": mj_model,
        "model": model,
        "kinematics": jax.jit(mjx.kinematics),
        "step": jax.jit(mjx.step),
        "visible": jax.jit(visibility.visible_points),
    }


def make_data(scene, ball=BALL, wall=WALL, qvel=None):
    """MJX data with the ball at `ball`, the wall at `wall` and current kinematics."""
    qpos = np.concatenate([ball, [1.0, 0.0, 0.0, 0.0]])
    data = mjx.make_data(scene["model"]).replace(
        qpos=jnp.asarray(qpos, jnp.float32),
        qvel=jnp.zeros(6) if qvel is None else jnp.asarray(qvel, jnp.float32),
        mocap_pos=jnp.asarray(wall, jnp.float32)[None],
    )
    return scene["kinematics"](scene["model"], data)


def visible(scene, data, points, model=None):
    """visible_points for [N <= NUM_PADDED, 3] points, padded to one shape, as numpy."""
    points = np.asarray(points, np.float32)
    padded = np.concatenate([points, np.repeat(points[:1], NUM_PADDED - len(points), 0)])
    model = scene["model"] if model is None else model
    return np.asarray(scene["visible"](model, data, jnp.asarray(CAMERA), padded))[:len(points)]


def native_visible(scene, qpos, wall, points, tolerance=visibility.DEFAULT_TOLERANCE):
    """The same rule with native MuJoCo: mj_kinematics, then one mj_ray per point (float64)."""
    mj_model = scene["mj_model"]
    mj_data = mujoco.MjData(mj_model)
    mj_data.qpos[:] = qpos
    mj_data.mocap_pos[0] = wall
    mujoco.mj_kinematics(mj_model, mj_data)
    geomid = np.zeros(1, np.int32)
    result = []
    for point in np.asarray(points, np.float64):
        length = np.linalg.norm(point - CAMERA)
        hit = mujoco.mj_ray(mj_model, mj_data, CAMERA, (point - CAMERA) / length, None, True, -1,
                            geomid)
        result.append(hit < 0 or hit >= length - tolerance)
    return np.array(result)


def sphere_ring(center, angle, num=16):
    """[num, 3] points of the ball's surface at `angle` (rad) from its pole facing the camera."""
    axis = (CAMERA - center) / np.linalg.norm(CAMERA - center)
    side = np.cross(axis, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    up = np.cross(axis, side)
    phi = np.linspace(0.0, 2.0 * np.pi, num, endpoint=False)[:, None]
    ring = np.cos(angle) * axis + np.sin(angle) * (np.cos(phi) * side + np.sin(phi) * up)
    return center + RADIUS * ring


def test_a_box_hides_what_is_behind_it(scene):
    """A point behind the wall is hidden until the wall moves; points in front are seen."""
    axis = (WALL - CAMERA) / np.linalg.norm(WALL - CAMERA)
    behind, in_front = WALL + 0.3 * axis, WALL - 0.3 * axis
    near_face = CAMERA + axis * (np.linalg.norm(WALL - CAMERA) - 0.05 / axis[0])  # x = -0.05
    points = [behind, in_front, near_face]
    np.testing.assert_array_equal(visible(scene, make_data(scene), points), [False, True, True])
    # The wall moved aside: the same point behind is seen.
    aside = make_data(scene, wall=[0.0, 0.5, 0.3])
    np.testing.assert_array_equal(visible(scene, aside, points), [True, True, True])


def test_an_object_hides_its_own_far_side(scene):
    """The ball's near side is seen, its far side is not; grazing rays see their point."""
    axis = (CAMERA - BALL) / np.linalg.norm(CAMERA - BALL)
    silhouette = np.arccos(RADIUS / np.linalg.norm(CAMERA - BALL))  # angle of the tangent rays
    points = np.concatenate([
        [BALL + RADIUS * axis, BALL - RADIUS * axis],  # near pole, far pole
        sphere_ring(BALL, silhouette),  # grazing rays
        sphere_ring(BALL, silhouette - 0.1),  # just in front of the silhouette
        sphere_ring(BALL, silhouette + 0.3),  # just behind it
    ])
    result = visible(scene, make_data(scene), points)
    np.testing.assert_array_equal(result[:2], [True, False])
    assert result[2:18].all(), "the tangent ray touches the ball at the point itself"
    assert result[18:34].all()
    assert not result[34:].any()


def test_a_point_at_the_camera_is_visible(scene):
    """A zero-length ray sees its point (no NaN direction)."""
    assert visible(scene, make_data(scene), [CAMERA]).all()


def test_agrees_with_native_mj_ray(scene):
    """50 points on the ball and around it: the same verdicts as native mj_ray."""
    rng = np.random.default_rng(0)
    ball, wall = np.array([0.1, 0.05, 0.25]), np.array([-0.3, 0.0, 0.35])
    directions = rng.normal(size=(25, 3))
    on_ball = ball + RADIUS * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    in_space = rng.uniform([-0.5, -0.3, -0.1], [0.5, 0.3, 0.5], size=(25, 3))
    points = np.concatenate([on_ball, in_space])
    result = visible(scene, make_data(scene, ball=ball, wall=wall), points)
    expected = native_visible(scene, np.concatenate([ball, [1, 0, 0, 0]]), wall, points)
    np.testing.assert_array_equal(result, expected)
    # The sample holds both outcomes, on the ball and off it.
    assert 0 < expected[:25].sum() < 25 and 0 < expected[25:].sum() < 25


def test_vmap_over_trials_with_per_trial_model_fields(scene):
    """The benchmark's call: data and the object's geom sizes batched, the camera shared."""
    model = scene["model"]
    balls = np.array([BALL, [0.25, 0.25, 0.25]])
    sizes = jnp.stack([model.geom_size, model.geom_size.at[2, 0].set(0.08)])
    datas = [make_data(scene, ball=b) for b in balls]
    points = np.stack([sphere_ring(b, a, NUM_PADDED // 2) for b in balls for a in (0.6, 2.0)])
    points = points.reshape(2, NUM_PADDED, 3)

    model_axes = jax.tree.map(lambda _: None, model).replace(geom_size=0)
    batched_fn = jax.jit(jax.vmap(visibility.visible_points, in_axes=(model_axes, 0, None, 0)))
    batched = np.asarray(batched_fn(model.replace(geom_size=sizes),
                                    jax.tree.map(lambda *x: jnp.stack(x), *datas),
                                    jnp.asarray(CAMERA), jnp.asarray(points, jnp.float32)))
    for i in range(2):
        single = visible(scene, datas[i], points[i], model.replace(geom_size=sizes[i]))
        np.testing.assert_array_equal(batched[i], single)
    # The bigger ball of trial 1 hides its own points (they lie inside it), unlike trial 0's.
    assert batched[0, :NUM_PADDED // 2].all() and not batched[1].any()


def test_after_a_step_visibility_needs_fresh_kinematics(scene):
    """mjx.step leaves the geoms where they were before the step; mjx.kinematics moves them."""
    away = (BALL - CAMERA) / np.linalg.norm(BALL - CAMERA)
    moving = make_data(scene, qvel=np.concatenate([5.0 * away, [0.0, 0.0, 3.0]]))  # 5 cm a step
    stepped = scene["step"](scene["model"], moving)
    qpos = np.asarray(stepped.qpos, np.float64)
    center = qpos[:3]
    points = np.concatenate([[center - RADIUS * away, center + RADIUS * away],
                             sphere_ring(center, 1.0)])
    fresh = scene["kinematics"](scene["model"], stepped)
    result = visible(scene, fresh, points)
    np.testing.assert_array_equal(result, native_visible(scene, qpos, WALL, points))
    assert result[0] and not result[1]
    # Without the refresh the ball is tested one step back, 5 cm nearer the camera, and hides
    # the near pole it has moved to.
    assert not visible(scene, stepped, points[:1])[0]


@pytest.mark.parametrize("camera_shape, points_shape", [
    ((3,), (4, 2)), ((3,), (3,)), ((3,), (2, 4, 3)), ((2,), (4, 3)), ((1, 3), (4, 3)),
])
def test_wrong_shapes_raise(scene, camera_shape, points_shape):
    """Points not [N, 3] or a camera not [3] raise ValueError."""
    data = mjx.make_data(scene["model"])
    with pytest.raises(ValueError, match="must be"):
        visibility.visible_points(scene["model"], data, jnp.zeros(camera_shape),
                                  jnp.ones(points_shape))
