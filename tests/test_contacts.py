"""Fingertip contact forces decoded from MJX against native MuJoCo's mj_contactForce."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from dex4d_jax import object_library, robot
from dex4d_jax.envs import contacts, objects, robot_scene

from helpers import native_fingertip_forces, pressed_into_index_pad


@pytest.mark.slow
def test_fingertip_forces_match_native_mujoco():
    """An object pressed 3 mm into the index pad: MJX's decoded force equals mj_contactForce's."""
    from mujoco import mjx

    scene = robot_scene.build_scene_objects(
        object_library.load_library("train", 1, 0, ("bottle",)))
    model, data = pressed_into_index_pad(scene)
    obj = model.body(robot.OBJECT_BODY).id
    expected = native_fingertip_forces(model, data)
    assert expected[0, 2] > 0.1  # the object pushes the index fingertip up

    # As ap2ap builds it: the scene model in MJX, its contact layout from mjx.make_data.
    scene_model = objects.put_model(scene.mj_model)
    decoder = contacts.FingertipContacts(scene.mj_model, mjx.make_data(scene_model), obj)
    mjx_model = scene.model_for(scene_model, jnp.asarray(0))
    mjx_data = mjx.make_data(mjx_model).replace(
        qpos=jnp.asarray(data.qpos, jnp.float32), qvel=jnp.zeros(model.nv),
        ctrl=jnp.asarray(data.ctrl, jnp.float32))
    mjx_data = jax.jit(mjx.forward)(mjx_model, mjx_data)
    forces = np.asarray(decoder.forces(mjx_data))
    np.testing.assert_allclose(forces, expected, atol=0.01, rtol=0.05)


def test_rejects_an_elliptic_cone():
    """The decoder reads pyramidal edges; any other cone raises instead of decoding nonsense."""
    from mujoco import mjx

    model = mujoco.MjModel.from_xml_path(str(robot.SCENE_XML))
    data = mjx.make_data(objects.put_model(model))
    model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    with pytest.raises(ValueError, match="pyramidal"):
        contacts.FingertipContacts(model, data, model.body(robot.OBJECT_BODY).id)
