"""Student: point masking (SPEC section 6) and the action world model network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dex4d_jax.networks.student import StudentNetwork
from dex4d_jax.student import masking

RNG = np.random.default_rng(0)
J, A, P = 5, 4, 16


def _inputs(batch=(3,)):
    f = lambda *s: jnp.asarray(RNG.normal(size=(*batch, *s)), jnp.float32)  # noqa: E731
    visible = jnp.asarray(RNG.random(size=(*batch, P)) < 0.6)
    return f(J), f(J), f(A), f(P, 6), visible


def _student(arch, inputs, encoder="paired"):
    net = StudentNetwork(action_size=A, width=32, num_layers=2, num_heads=4,
                         point_hidden=(32, 32), arch=arch, encoder=encoder)
    params = net.init(jax.random.PRNGKey(0), *inputs)
    return jax.jit(lambda *x: net.apply(params, *x))


def _close(a, b):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_student_shapes_and_batch_dims(arch):
    inputs = _inputs((2, 3))
    out = _student(arch, inputs)(*inputs)
    assert out["action"].shape == (2, 3, A)
    assert out["next_qpos"].shape == (2, 3, J) and out["next_qvel"].shape == (2, 3, J)
    single = _student(arch, inputs)(*(x[1, 2] for x in inputs))
    for k in out:
        np.testing.assert_allclose(out[k][1, 2], single[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch,encoder", [("transformer", "paired"), ("mlp", "paired"),
                                          ("transformer", "decoupled"), ("transformer", "mlp")])
def test_student_ignores_hidden_points(arch, encoder):
    qpos, qvel, act, points, visible = _inputs()
    f = _student(arch, (qpos, qvel, act, points, visible), encoder)
    moved = jnp.where(visible[..., None], points, points + 100.0 * jnp.asarray(
        RNG.normal(size=points.shape), jnp.float32))
    _close(f(qpos, qvel, act, points, visible), f(qpos, qvel, act, moved, visible))
    # Visible points do matter.
    shifted = points.at[..., 0].add(1.0)
    out, out2 = f(qpos, qvel, act, points, visible), f(qpos, qvel, act, shifted, visible)
    assert np.abs(out["action"] - out2["action"]).max() > 1e-4


@pytest.mark.parametrize("arch,encoder", [("transformer", "paired"), ("mlp", "paired"),
                                          ("transformer", "decoupled")])
def test_student_invariant_to_joint_point_permutation(arch, encoder):
    qpos, qvel, act, points, visible = _inputs()
    f = _student(arch, (qpos, qvel, act, points, visible), encoder)
    perm = RNG.permutation(P)
    _close(f(qpos, qvel, act, points, visible),
           f(qpos, qvel, act, points[:, perm], visible[:, perm]))


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_student_all_hidden_is_finite(arch):
    qpos, qvel, act, points, visible = _inputs()
    f = _student(arch, (qpos, qvel, act, points, visible))
    out = f(qpos, qvel, act, points, jnp.zeros_like(visible))
    for v in out.values():
        assert np.all(np.isfinite(v))


def _object(n=128):
    return jnp.asarray(RNG.normal(size=(n, 3)) * [0.05, 0.03, 0.02], jnp.float32)


def test_plane_mask_exactly_num_keep_distinct_on_one_side():
    points = _object()
    many_side = few_side = 0
    masks = jax.jit(jax.vmap(masking.plane_mask, in_axes=(0, None)))
    indices, anchors, normals = masks(jax.random.split(jax.random.PRNGKey(1), 200), points)
    for idx, anchor, normal in zip(np.asarray(indices), np.asarray(anchors), np.asarray(normals)):
        assert idx.shape == (64,) and idx.dtype == np.int32
        assert len(set(idx.tolist())) == 64 and idx.min() >= 0 and idx.max() < 128
        signed = (np.asarray(points) - anchor) @ normal
        side = signed >= 0
        if side.sum() >= 64:
            many_side += 1
            assert side[idx].all()
        else:
            few_side += 1
            assert side[idx].sum() == side.sum()  # every kept-side point is kept
            # the filled points are the other-side points nearest the plane
            rest = np.setdiff1d(np.arange(128), idx)
            assert signed[idx].min() >= signed[rest].max() - 1e-7
    assert many_side > 10 and few_side > 10


def test_plane_mask_deterministic_per_key():
    points = _object()
    a = masking.plane_mask_indices(jax.random.PRNGKey(3), points)
    b = masking.plane_mask_indices(jax.random.PRNGKey(3), points)
    c = masking.plane_mask_indices(jax.random.PRNGKey(4), points)
    np.testing.assert_array_equal(a, b)
    assert set(np.asarray(a).tolist()) != set(np.asarray(c).tolist())


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_height_visibility_hide_rates(variant):
    points = jnp.asarray(RNG.normal(size=(64, 3)), jnp.float32)
    n = 20_000
    visible = jax.jit(jax.vmap(lambda k: masking.height_visibility(k, points, variant)))(
        jax.random.split(jax.random.PRNGKey(5), n))
    assert visible.dtype == jnp.bool_ and visible.shape == (n, 64)
    # Recover each draw's threshold level from the same key split as the implementation.
    low, high = masking.VARIANTS[variant]
    levels = jax.vmap(lambda k: jax.random.uniform(jax.random.split(k)[0], (),
                                                   minval=low, maxval=high))(
        jax.random.split(jax.random.PRNGKey(5), n))
    levels = np.asarray(levels)
    assert levels.min() >= low and levels.max() <= high
    assert abs(levels.mean() - (low + high) / 2) < 0.01
    z = np.asarray(points[:, 2])
    above = z[None, :] > np.quantile(z, levels)[:, None]
    hidden = ~np.asarray(visible)
    assert abs(hidden[above].mean() - 0.9) < 0.02
    assert abs(hidden[~above].mean() - 0.05) < 0.02
    # Fraction above tracks 1 - h.
    assert abs(above.mean() - (1 - (low + high) / 2)) < 0.03


def test_mask_paired_points_indices_noise_and_visibility():
    current = _object()
    target = current + jnp.array([0.1, 0.0, 0.05])
    paired = jnp.concatenate([current, target], axis=-1)
    indices = masking.plane_mask_indices(jax.random.PRNGKey(0), current)
    cfg = masking.MaskingConfig(noise_std=0.005)
    out, visible = jax.jit(masking.mask_paired_points, static_argnums=3)(
        jax.random.PRNGKey(7), paired, indices, cfg)
    assert out.shape == (64, 6) and visible.shape == (64,) and visible.dtype == jnp.bool_
    np.testing.assert_array_equal(out[:, 3:], target[indices])  # targets exact, same indices
    noise = np.asarray(out[:, :3] - current[indices])
    assert 0.003 < noise.std() < 0.007 and np.abs(noise).max() < 0.05  # same indices, noisy
    quiet, _ = masking.mask_paired_points(jax.random.PRNGKey(7), paired, indices,
                                          masking.MaskingConfig(noise_std=0.0))
    np.testing.assert_array_equal(quiet, paired[indices])


def test_student_without_joint_angles_and_residual_heads():
    """A zero-size joint-angle input (the wrench task) gets a learned token and an empty
    prediction; next-state heads add a change to the current state."""
    qpos, qvel, act, points, visible = _inputs()
    empty = qpos[..., :0]
    net = StudentNetwork(action_size=A, width=32, num_layers=2, num_heads=4,
                         point_hidden=(32, 32))
    params = net.init(jax.random.PRNGKey(0), empty, qvel, act, points, visible)
    assert "token" in params["params"]["embed_qpos"]
    out = net.apply(params, empty, qvel, act, points, visible)
    assert out["next_qpos"].shape == (3, 0) and np.all(np.isfinite(out["next_qvel"]))
    # Zero the velocity head: the prediction is then exactly "nothing changes".
    zeroed = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros_like(x) if "head_qvel" in jax.tree_util.keystr(p) else x, params)
    np.testing.assert_array_equal(net.apply(zeroed, empty, qvel, act, points, visible)
                                  ["next_qvel"], qvel)
    with pytest.raises(ValueError, match="last action of size"):
        net.apply(params, empty, qvel, act[..., :2], points, visible)
