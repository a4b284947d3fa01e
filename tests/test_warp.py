"""MJX's warp implementation: the `ap2ap` setting `impl="warp"`.

docs/training.md "MJX's warp implementation". The clear error without warp-lang runs
everywhere; where warp-lang is installed, warp is compared with the JAX implementation and
native MuJoCo on the CPU, one world or two.

Tolerances come from measurements on this CPU (float32 MJX against float64 MuJoCo): 60
physics steps of objects dropped 1 cm agree with the JAX implementation to 9e-7 in qpos with
two worlds, 7e-6 with eight (bench/mjx_warp.py; tolerance 1e-5);
a control step whose servos saturate agrees with native MuJoCo to 2e-7 (tolerance 1e-4), where
the JAX implementation is 1e-2 off (its implicitfast derivative keeps a clamped servo's damping);
fingertip forces agree with mj_contactForce to 3e-6 N (tolerance 1e-3 N).
"""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from dex4d_jax.envs import ap2ap, contacts, objects, robot_scene
from mujoco import mjx

from dex4d_jax import envs, object_library, robot, wrappers

from helpers import native_fingertip_forces, pressed_into_index_pad

ROLLOUT_TOL = 1e-5  # qpos, warp vs JAX implementation, resting scene
NATIVE_TOL = 1e-4  # qpos, warp vs native MuJoCo, one control step with saturated servos
FORCE_TOL = 1e-3  # newtons, decoded fingertip force vs mj_contactForce


def test_warp_without_warp_lang_is_a_clear_error(monkeypatch):
    """impl="warp" without warp-lang fails at construction, naming the install command."""
    from mujoco.mjx import warp as mjx_warp

    monkeypatch.setattr(mjx_warp, "WARP_INSTALLED", False)
    with pytest.raises(ImportError, match="pip install mujoco-warp warp-lang"):
        envs.load("ap2ap", impl="warp", num_objects=1)
    with pytest.raises(ValueError, match="impl"):
        envs.load("ap2ap", impl="cpp", num_objects=1)


def _scene(num_objects=2):
    return robot_scene.build_scene_objects(
        object_library.load_library("train", num_objects, 0, ("bottle",)))


def test_warp_rollout_matches_jax_per_world_objects():
    """Warp and the JAX implementation agree over 60 physics steps, two worlds under vmap.

    Each world holds its own object, dropped 1 cm onto the table below the grasp-ready hand.
    """
    pytest.importorskip("warp")
    scene = _scene()
    m = scene.mj_model
    qpos = jnp.asarray(np.stack([robot_scene.grasp_ready_qpos(scene, i, lift=0.01)
                                 for i in range(2)]), jnp.float32)
    ids = jnp.arange(2)
    out = {}
    for impl in ("jax", "warp"):
        model = objects.put_model(m, impl)
        init = (mjx.make_data(m, impl="warp", naconmax=64, njmax=150) if impl == "warp"
                else mjx.make_data(model))

        def rollout(object_id, q, model=model, init=init):
            one = scene.model_for(model, object_id)
            data = init.replace(qpos=q, ctrl=q[:robot.NUM_JOINTS])
            return jax.lax.scan(lambda d, _: (mjx.step(one, d), None), data, None, 60)[0]

        out[impl] = np.asarray(jax.jit(jax.vmap(rollout))(ids, qpos).qpos)
    assert np.abs(out["jax"][0] - out["jax"][1]).max() > 1e-3  # the worlds differ
    z = out["warp"][:, robot.NUM_JOINTS + 2]
    assert np.all(np.abs(z - np.asarray(qpos)[:, robot.NUM_JOINTS + 2] + 0.01) < 2e-3)  # landed
    np.testing.assert_allclose(out["warp"], out["jax"], atol=ROLLOUT_TOL)


def test_warp_env_step_matches_native_mujoco():
    """An ap2ap control step through warp equals native MuJoCo's; batches run wrapped.

    The step (4 physics steps) moves the arm targets far enough to saturate servos. Two
    environments then run through the training wrappers, with and without enough contacts.
    """
    pytest.importorskip("warp")
    config = ap2ap.default_config()
    config.num_objects, config.domain_randomization, config.impl = 2, False, "warp"
    config.warp_naconmax = 2 * config.max_contact_points
    env = envs.load("ap2ap", config)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    action = jnp.asarray(np.random.default_rng(0).uniform(-0.3, 0.3, robot.NUM_JOINTS),
                         jnp.float32)
    stepped = jax.jit(env.step)(state, action)
    native = env.scene.native_model(int(state.info["object_id"]))
    native.opt.timestep = config.sim_dt
    data = mujoco.MjData(native)
    data.qpos[:] = np.asarray(state.pipeline_state.qpos)
    data.ctrl[:] = np.asarray(stepped.info["target"])
    for _ in range(env.n_substeps):
        mujoco.mj_step(native, data)
    forcerange = native.actuator_forcerange[:, 1]
    assert np.any(np.abs(data.actuator_force) >= forcerange - 1e-6)  # a servo saturates
    np.testing.assert_allclose(np.asarray(stepped.pipeline_state.qpos), data.qpos, atol=NATIVE_TOL)

    # Two environments through the training wrappers, episodes of 2 steps (auto-reset).
    final, done, unstable, _ = _wrapped_run(env)
    assert np.asarray(done).sum() > 0  # an auto-reset happened
    assert not np.asarray(unstable).any()
    assert final.pipeline_state._impl.contact__dist.shape == (config.warp_naconmax,)
    assert np.all(np.isfinite(np.asarray(final.obs["state"])))

    # A contact buffer of one contact for two environments: after a step that found more,
    # warp has dropped contacts, and every episode ends as unstable.
    config.warp_naconmax = 1
    _, _, unstable, nacon = _wrapped_run(envs.load("ap2ap", config))
    overflow = np.asarray(nacon) > 1
    assert overflow.any()
    np.testing.assert_array_equal(np.asarray(unstable), np.repeat(overflow[:, None], 2, 1))


def _wrapped_run(env, num_envs=2, steps=3):
    wrapped = wrappers.wrap_for_training(env, episode_length=2)

    @jax.jit
    def run(key):
        state = wrapped.reset(jax.random.split(key, num_envs))

        def body(state, action):
            state = wrapped.step(state, action)
            return state, (state.done, state.metrics["unstable"],
                           state.pipeline_state._impl.nacon[0])

        return jax.lax.scan(body, state, jnp.zeros((steps, num_envs, robot.NUM_JOINTS)))

    final, (done, unstable, nacon) = run(jax.random.PRNGKey(1))
    return final, done, unstable, nacon


def test_warp_fingertip_forces_match_native_mujoco():
    """Fingertip forces decoded from warp's constraint rows equal mj_contactForce's.

    The object is pressed 3 mm into the index pad in world 1 of 2 (world 0: lifted clear).
    """
    pytest.importorskip("warp")
    scene = _scene(1)
    model, data = pressed_into_index_pad(scene)
    obj = model.body(robot.OBJECT_BODY).id
    i = robot.NUM_JOINTS
    expected = native_fingertip_forces(model, data)[0]
    assert expected[2] > 0.1

    warp_model = scene.model_for(objects.put_model(scene.mj_model, "warp"), jnp.asarray(0))
    init = mjx.make_data(scene.mj_model, impl="warp", naconmax=64, njmax=150)
    decoder = contacts.FingertipContacts(scene.mj_model, init, obj)
    q = jnp.asarray(data.qpos, jnp.float32)

    def forces(q):
        d = init.replace(qpos=q, qvel=jnp.zeros(model.nv), ctrl=jnp.asarray(data.ctrl))
        return decoder.forces(mjx.forward(warp_model, d))

    out = np.asarray(jax.jit(jax.vmap(forces))(jnp.stack([q.at[i + 2].add(0.5), q])))
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1, 0], expected, atol=FORCE_TOL)
    np.testing.assert_allclose(out[1, 1:], 0.0, atol=FORCE_TOL)
