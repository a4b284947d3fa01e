"""`ap2ap_wrench` and the registry: jitted reset/step, determinism, goals, reward by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dex4d_jax import envs, geometry, object_families, scene_models, wrappers
from dex4d_jax.envs import ap2ap_wrench, objects


@pytest.fixture(scope="module")
def env():
    return envs.load("ap2ap_wrench", num_objects=5)


@pytest.fixture(scope="module")
def batched(env):
    """Jitted, vmapped reset and step through the training wrappers (compiled once)."""
    wrapped = wrappers.wrap_for_training(env, episode_length=20)
    return wrapped, jax.jit(wrapped.reset), jax.jit(wrapped.step)


def test_registry_lists_valid_names_and_keys():
    assert "ap2ap_wrench" in envs.ALL_ENVS
    with pytest.raises(ValueError, match="ap2ap_wrench"):
        envs.load("ap2ap_hand")
    with pytest.raises(KeyError, match="success_threshold"):
        envs.load("ap2ap_wrench", success_treshold=0.1)
    cfg = envs.apply_overrides(envs.get_default_config("ap2ap_wrench"),
                               {"reward_weights__bonus": 2.0})
    assert cfg.reward_weights.bonus == 2.0


def test_brax_api_and_sizes(env):
    assert env.action_size == 6
    assert env.observation_size == {"state": (128 * 6 + 12,), "privileged_state": (34,)}
    assert env.mj_model.nq == 7 and env.n_substeps == 2


def test_reset_and_step_are_finite_and_deterministic(batched):
    wrapped, reset, step = batched
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (8, 6), minval=-1.0, maxval=1.0)
    runs = []
    for _ in range(2):
        state = reset(keys)
        for _ in range(25):  # crosses the episode end: auto-reset included
            state = step(state, actions)
        runs.append(state)
    for leaf in jax.tree.leaves(runs[0].obs) + [runs[0].reward]:
        assert np.all(np.isfinite(leaf))
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    other = reset(jax.random.split(jax.random.PRNGKey(5), 8))
    assert not np.allclose(other.obs["state"], reset(keys).obs["state"])


def test_reset_rests_on_table_and_lifts_goal(env, batched):
    _, reset, _ = batched
    state = reset(jax.random.split(jax.random.PRNGKey(0), 64))
    qpos = np.asarray(state.pipeline_state.qpos)
    ids = np.asarray(state.info["object_id"])
    kp = np.asarray(env.keypoints)[ids]
    world = np.asarray(geometry.transform_points(jnp.asarray(qpos[:, :3]),
                                                 jnp.asarray(qpos[:, 3:]), jnp.asarray(kp)))
    # The lowest keypoint is at (or just above) the table top: the object rests on it.
    lowest = world[..., 2].min(-1) - ap2ap_wrench.TABLE_HEIGHT
    assert np.all(lowest > -1e-4) and np.all(lowest < 0.01)
    goal_z = np.asarray(state.info["goal_pos"])[:, 2]
    assert np.all(goal_z >= 0.1) and np.all(goal_z <= 0.2)
    assert len(set(ids.tolist())) > 1  # different objects in one batch


def test_paired_points_and_reward_by_hand(env):
    state = env.reset(jax.random.PRNGKey(1))
    pairs = state.obs["state"][:768].reshape(128, 6)
    d = float(jnp.mean(jnp.linalg.norm(pairs[:, :3] - pairs[:, 3:], axis=-1)))
    assert float(state.metrics["distance"]) == pytest.approx(d, rel=1e-5)
    action = jnp.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    nxt = jax.jit(env.step)(state, action)
    d1 = float(nxt.metrics["distance"])
    success = d1 < env.config.success_threshold
    expected = (1.4 - 3 * d1) + success * 5 / (1 + 10 * d1) - 0.01 * 0.25
    assert float(nxt.reward) == pytest.approx(expected, abs=1e-5)
    assert float(nxt.metrics["reward/action"]) == pytest.approx(-0.0025)
    # The commanded twist moved the object 0.5 * 0.3 m/s * 0.05 s along x (no contact in x).
    dx = float(nxt.pipeline_state.qpos[0] - state.pipeline_state.qpos[0])
    assert dx == pytest.approx(0.5 * env.config.max_lin_speed * env.dt, rel=0.05)


def test_held_goal_is_replaced_in_place(env):
    """Put the object on its goal: after `hold_steps` steps a new goal appears, no reset."""
    state = env.reset(jax.random.PRNGKey(2))
    goal = jnp.concatenate([state.info["goal_pos"] + jnp.array([0, 0, 0.6]),
                            state.info["goal_quat"]])
    state = state.replace(pipeline_state=state.pipeline_state.replace(qpos=goal))
    step = jax.jit(env.step)
    reached = []
    for _ in range(env.config.hold_steps):
        state = step(state, jnp.zeros(6))
        reached.append(float(state.metrics["goal_reached"]))
    assert reached[-1] == 1.0 and sum(reached) == 1.0
    assert float(state.metrics["first_goal_reached"]) == 1.0
    assert float(state.reward) > 10.0  # stay-success bonus
    new_goal = state.info["goal_pos"] + jnp.array([0, 0, 0.6])
    assert not np.allclose(new_goal, goal[:3])
    assert float(state.info["first_goal"]) == 0.0


def test_objects_are_deterministic_and_unknown_families_fail():
    slots = scene_models.WRENCH_SLOT_KINDS
    a = object_families.make_object_set(objects.WRENCH_FAMILIES, 5, 7, slots)
    b = object_families.make_object_set(objects.WRENCH_FAMILIES, 5, 7, slots)
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x.primitives, y.primitives, strict=True):
            np.testing.assert_array_equal(p.size, q.size)
    with pytest.raises(ValueError, match="valid"):
        object_families.make_object("teapot", np.random.default_rng(0), "teapot_0", slots)
