"""Point encoders: invariance to point order, and what correspondence buys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dex4d_jax import geometry
from dex4d_jax.networks import point_encoders
from dex4d_jax.networks import ppo as point_ppo

RNG = np.random.default_rng(0)


def _encode(kind, pooling, points, seed=0):
    enc = point_encoders.PointEncoder(kind=kind, hidden=(32, 32), pooling=pooling)
    params = enc.init(jax.random.PRNGKey(seed), points)
    return lambda p: enc.apply(params, p)


@pytest.mark.parametrize("kind", ["paired", "decoupled"])
@pytest.mark.parametrize("pooling", point_encoders.POOLINGS)
def test_pointnets_invariant_to_joint_permutation(kind, pooling):
    points = jnp.asarray(RNG.normal(size=(3, 64, 6)), jnp.float32)
    perm = RNG.permutation(64)
    f = _encode(kind, pooling, points)
    np.testing.assert_allclose(f(points), f(points[:, perm]), rtol=1e-5, atol=1e-6)


def test_mlp_encoder_depends_on_order():
    points = jnp.asarray(RNG.normal(size=(2, 16, 6)), jnp.float32)
    f = _encode("mlp", "mean", points)
    assert not np.allclose(f(points), f(points[:, ::-1]), atol=1e-4)


def test_masked_pooling_ignores_hidden_points():
    feats = jnp.asarray(RNG.normal(size=(10, 4)), jnp.float32)
    mask = jnp.arange(10) < 6
    for pooling in point_encoders.POOLINGS:
        np.testing.assert_allclose(point_encoders.pool(feats, pooling, mask),
                                   point_encoders.pool(feats[:6], pooling), rtol=1e-6)
    np.testing.assert_array_equal(point_encoders.pool(feats, "mean_max", jnp.zeros(10, bool)), 0.0)


def _symmetric_sphere_points():
    """Points on a sphere closed under a quarter turn about z (so the set maps onto itself)."""
    base = RNG.normal(size=(16, 3))
    base /= np.linalg.norm(base, axis=-1, keepdims=True)
    quarter = np.asarray(geometry.axis_angle_to_quat(jnp.array([0.0, 0.0, 1.0]), np.pi / 2))
    sets = [base]
    for _ in range(3):
        sets.append(np.asarray(geometry.quat_rotate(jnp.asarray(quarter), sets[-1])))
    return jnp.asarray(np.concatenate(sets), jnp.float32), jnp.asarray(quarter)


def test_paired_encoding_tells_sphere_poses_apart_where_shape_only_cannot():
    points, quarter = _symmetric_sphere_points()
    turned = geometry.quat_rotate(quarter, points)  # the same point *set*, new correspondence
    at_goal = geometry.paired_points(points, points)
    to_turn = geometry.paired_points(points, turned)
    for pooling in point_encoders.POOLINGS:
        shape_only = _encode("decoupled", pooling, at_goal)
        np.testing.assert_allclose(shape_only(at_goal), shape_only(to_turn), atol=1e-5)
        paired = _encode("paired", pooling, at_goal)
        assert np.abs(paired(at_goal) - paired(to_turn)).max() > 1e-2


def test_policy_on_observation_is_permutation_invariant_and_brax_compatible():
    obs = {"state": jnp.asarray(RNG.normal(size=(4, 128 * 6 + 12)), jnp.float32),
           "privileged_state": jnp.asarray(RNG.normal(size=(4, 34)), jnp.float32)}
    nets = point_ppo.make_ppo_networks(
        {"state": (128 * 6 + 12,), "privileged_state": (34,)}, 6,
        point_hidden=(16, 16), policy_hidden=(32,), value_hidden=(32,),
        value_obs_key="privileged_state")
    pp = nets.policy_network.init(jax.random.PRNGKey(0))
    vp = nets.value_network.init(jax.random.PRNGKey(1))
    mean, std = nets.policy_network.apply(None, pp, obs)
    assert mean.shape == (4, 6) and std.shape == (4, 6)
    np.testing.assert_allclose(std, 0.8, rtol=1e-6)
    assert nets.value_network.apply(None, vp, obs).shape == (4,)
    perm = RNG.permutation(128)
    pts = obs["state"][:, :768].reshape(4, 128, 6)[:, perm].reshape(4, 768)
    shuffled = dict(obs, state=jnp.concatenate([pts, obs["state"][:, 768:]], axis=-1))
    np.testing.assert_allclose(nets.policy_network.apply(None, pp, shuffled)[0], mean,
                               rtol=1e-5, atol=1e-6)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="paired points"):
        _encode("paired", "mean", jnp.zeros((2, 8, 3)))
    with pytest.raises(ValueError, match="valid"):
        _encode("transformer", "mean", jnp.zeros((2, 8, 6)))
    with pytest.raises(ValueError, match="cannot hold"):
        point_ppo.split_observation(jnp.zeros((2, 100)), 128)
