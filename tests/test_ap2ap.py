"""The AP2AP environment on the robot: rewards, goals, terminations, randomization, pushes.

The pure pieces (reward terms, stage tables, action mapping) are checked by hand without a
compile. The environment tests share two compiled environments (module fixtures): stage 1 with
randomization on, as training uses it, and stage 2 with randomization off, as evaluation does,
each called with one batch size (B) so that reset and step compile once per environment.
"""

import jax
import mujoco
import jax.numpy as jnp
import numpy as np
import pytest

from dex4d_jax import envs, geometry, robot
from dex4d_jax.envs import ap2ap, robot_scene

NUM_OBJECTS = 8
# Every batched call uses this many environments: each batch size is another MJX compile of
# reset and step (tens of seconds each on a CPU), so the tests share one.
B = 8


# ----------------------------------------------------------------------------------------------
# Pure functions and configuration: no MJX compile.
# ----------------------------------------------------------------------------------------------


def _terms(**kw):
    args = dict(distance=0.04, contact=True, success=True, held=False,
                fingertip_distance=jnp.array([0.1, 0.1, 0.1, 0.1]), palm_distance=0.08,
                hand_qpos=jnp.zeros(16), fingertip_height=jnp.array([0.05, 0.05, 0.05, 0.05]),
                action=jnp.zeros(22))
    args.update(kw)
    return {k: float(v) for k, v in ap2ap.reward_terms(**args).items()}


def test_reward_terms_by_hand():
    t = _terms()
    assert t["goal"] == pytest.approx(1.4 - 3 * 0.04)
    assert t["bonus"] == pytest.approx(5 / (1 + 10 * 0.04))
    assert t["fingertip"] == pytest.approx(-0.5 * 0.4)
    assert t["palm"] == pytest.approx(-0.5 * 0.08)
    assert t["curl"] == 0.0 and t["table"] == 0.0 and t["action"] == 0.0
    # Contact gates the goal term and the success bonus, not the stay bonus.
    t = _terms(contact=False, held=True)
    assert t["goal"] == 0.0 and t["bonus"] == pytest.approx(10.0)
    t = _terms(held=True)
    assert t["bonus"] == pytest.approx(5 / 1.4 + 10.0)
    # No success: no success bonus.
    assert _terms(distance=0.2, success=False)["bonus"] == 0.0
    # Clips: fingertip sum at 3 m, palm at 0.5 m, action at -0.5.
    assert _terms(fingertip_distance=jnp.full(4, 2.0))["fingertip"] == pytest.approx(-1.5)
    assert _terms(palm_distance=2.0)["palm"] == pytest.approx(-0.25)
    assert _terms(action=jnp.full(22, 0.5))["action"] == pytest.approx(-0.01 * 22 * 0.25)
    assert _terms(action=jnp.ones(22) * 2)["action"] == pytest.approx(-0.5)
    # Curl: -0.001 |theta|^2.
    assert _terms(hand_qpos=jnp.full(16, 0.5))["curl"] == pytest.approx(-0.001 * 16 * 0.25)
    # Table: the lowest fingertip 1 cm above the table top is 1 cm below 0.62 m.
    low = jnp.array([0.05, 0.01, 0.08, 0.3])
    assert _terms(fingertip_height=low)["table"] == pytest.approx(10 * (0.01 - 0.02))


def test_stage_tables():
    assert ap2ap.STAGES.keys() == {1, 2, 3}
    s1, s2, s3 = (ap2ap.stage_config(s) for s in (1, 2, 3))
    assert (s1.too_far_threshold, s2.too_far_threshold, s3.too_far_threshold) == (0.3, 0.0, 0.0)
    assert (s1.goal_reset_stable_ratio, s2.goal_reset_stable_ratio) == (0.1, 0.2)
    assert (s1.arm_speed_scale, s2.arm_speed_scale, s3.arm_speed_scale) == (10.0, 1.5, 1.5)
    assert s1.ctrl_dt == pytest.approx(1 / 30) and s3.ctrl_dt == pytest.approx(1 / 5)
    assert s1.families == ("bottle",) and len(s3.families) > 1
    assert (s1.hand_init, s3.hand_init) == ("low", "high")
    w = s3.reward_weights
    assert (w.goal, w.fingertip, w.palm, w.bonus, w.curl, w.table, w.action) == (
        1, 0, 0, 1, 10, 1, 5)
    assert set(s1.reward_weights.to_dict().values()) == {1.0}
    with pytest.raises(ValueError, match="valid: 1, 2, 3"):
        ap2ap.stage_config(4)


def test_observation_layout():
    assert ap2ap.TEACHER_LAYOUT["points"] == slice(0, 768)
    assert ap2ap.STUDENT_SIZE == 768 + 3 * 22
    assert ap2ap.TEACHER_SIZE == 768 + 4 * 22 + 52 + 12 + 13 + 13 + 7 + 12 + 6


# ----------------------------------------------------------------------------------------------
# The compiled environment.
# ----------------------------------------------------------------------------------------------


class Compiled:
    """An environment with its jitted, vmapped reset and step."""

    def __init__(self, env):
        self.env = env
        self.reset = jax.jit(jax.vmap(env.reset))
        self.step = jax.jit(jax.vmap(env.step))
        self.model_fields = jax.jit(jax.vmap(lambda info: _fields(env.episode_model(info))))


def _fields(model):
    return {"body_mass": model.body_mass, "gravity": model.opt.gravity,
            "friction": model.geom_friction[:, 0], "kp": model.actuator_gainprm[:, 0],
            "kv": -model.actuator_biasprm[:, 2], "damping": model.dof_damping[:22],
            "jnt_range": model.jnt_range}


@pytest.fixture(scope="module")
def train_env():
    return Compiled(envs.load("ap2ap", num_objects=NUM_OBJECTS))


@pytest.fixture(scope="module")
def eval_env():
    config = ap2ap.stage_config(2)
    config.num_objects = NUM_OBJECTS
    config.domain_randomization = False
    return Compiled(envs.load("ap2ap", config))


def _keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def _set_object(state, env_index, pos, quat):
    """Places env `env_index`'s object at a base-frame pose, at rest."""
    i = robot.NUM_JOINTS
    data = state.pipeline_state
    qpos = data.qpos.at[env_index, i:i + 3].set(jnp.asarray(pos) + robot.BASE_POS)
    qpos = qpos.at[env_index, i + 3:i + 7].set(jnp.asarray(quat))
    qvel = data.qvel.at[env_index].set(0.0)
    return state.replace(pipeline_state=data.replace(qpos=qpos, qvel=qvel))


def _info(state, **updates):
    info = dict(state.info)
    info.update(updates)
    return state.replace(info=info)


@pytest.mark.slow
def test_reward_terms_match_the_state(eval_env):
    """Every logged term equals its value recomputed from the stepped physics by hand."""
    env = eval_env.env
    state = eval_env.reset(_keys(B))
    mj = env.mj_model
    palm_site = mj.site(robot.PALM_SITE).id
    palm = np.asarray(state.pipeline_state.site_xpos[0, palm_site]) - robot.BASE_POS
    up = np.array([1.0, 0.0, 0.0, 0.0])
    # Env 0: object just under the palm (contact) with the goal at its pose, held 29 steps.
    # Env 1: object far from the hand on the table, goal at its pose (success, no contact).
    # Env 2: the goal 20 cm above the object (no success).
    poses = [(palm - np.array([0.0, 0.0, 0.07]), up), (np.array([0.55, 0.12, 0.05]), up),
             (np.array([0.45, -0.1, 0.05]), up)]
    for k, (pos, quat) in enumerate(poses):
        state = _set_object(state, k, pos, quat)
    # (Environments 3 and up keep their own reset and are not checked.)
    goal_pos = state.info["goal_pos"].at[:3].set(jnp.asarray(np.stack([p for p, _ in poses])))
    goal_pos = goal_pos.at[2, 2].add(0.2)
    hold = jnp.zeros(B, jnp.int32).at[0].set(env.config.hold_steps - 1)
    goal_quat = state.info["goal_quat"].at[:3].set(jnp.asarray(np.stack([up] * 3)))
    state = _info(state, goal_pos=goal_pos, goal_quat=goal_quat, hold_count=hold)
    action = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (B, 22)), jnp.float32)
    # Hold the arm still and the hand where it is so the object is not knocked away.
    action = action.at[:, :6].set(0.0)
    out = eval_env.step(state, action)
    out = jax.tree.map(lambda x: x[:3], out)  # the three built states
    m = {k: np.asarray(v) for k, v in out.metrics.items()}
    goal_pos, hold, action = goal_pos[:3], hold[:3], action[:3]

    data = out.pipeline_state
    i = robot.NUM_JOINTS
    obj = np.asarray(data.qpos[:, i:i + 3]) - robot.BASE_POS
    quat = np.asarray(data.qpos[:, i + 3:i + 7])
    tips = np.stack([np.asarray(data.site_xpos[:, mj.site(s).id]) for s in robot.FINGERTIP_SITES],
                    axis=1) - robot.BASE_POS
    palm = np.asarray(data.site_xpos[:, mj.site(robot.PALM_SITE).id]) - robot.BASE_POS
    ids = np.asarray(out.info["object_id"])
    # The goal that was pursued during the step (env 0's is replaced after its hold).
    keypoints = np.asarray(env.keypoints)[ids]
    current = np.stack([np.asarray(geometry.transform_points(obj[k], quat[k], keypoints[k]))
                        for k in range(3)])
    target = np.stack([np.asarray(geometry.transform_points(np.asarray(goal_pos[k]), up,
                                                            keypoints[k])) for k in range(3)])
    d = np.linalg.norm(current - target, axis=-1).mean(-1)
    tip_d = np.linalg.norm(tips - obj[:, None], axis=-1)
    palm_d = np.linalg.norm(palm - obj, axis=-1)
    contact = (tip_d.sum(-1) < 0.48) & (palm_d < 0.12)
    success = d < 0.05
    held = success & (np.asarray(hold) + 1 >= env.config.hold_steps)
    hand = np.asarray(data.qpos[:, 6:22])
    expected = {
        "goal": contact * (1.4 - 3 * d),
        "fingertip": -0.5 * np.minimum(tip_d.sum(-1), 3),
        "palm": -0.5 * np.minimum(palm_d, 0.5),
        "bonus": contact * success * 5 / (1 + 10 * d) + held * 10,
        "curl": -0.001 * (hand**2).sum(-1),
        "table": np.minimum(10 * (tips[..., 2].min(-1) - 0.02), 0),
        "action": np.maximum(-0.01 * (np.asarray(action) ** 2).sum(-1), -0.5),
    }
    np.testing.assert_allclose(m["distance"], d, atol=1e-5)
    for name, value in expected.items():
        np.testing.assert_allclose(m[f"reward/{name}"], value, atol=1e-4, err_msg=name)
    # The states exercise what they were built for.
    assert list(contact) == [True, False, False] and list(success) == [True, True, False]
    assert list(m["stay_success"]) == [1.0, 0.0, 0.0]
    weights = env.config.reward_weights
    total = sum(weights[k] * expected[k] for k in ap2ap.REWARD_TERMS)
    np.testing.assert_allclose(np.asarray(out.reward), total, atol=1e-4)


@pytest.mark.slow
def test_goal_resampled_in_place_after_hold(eval_env):
    env = eval_env.env
    state = eval_env.reset(_keys(B, seed=1))
    i = robot.NUM_JOINTS
    # Goal at the object's current (resting) pose, held for all but one step.
    obj = state.pipeline_state.qpos[:, i:i + 7]
    state = _info(state, goal_pos=obj[:, :3] - robot.BASE_POS, goal_quat=obj[:, 3:],
                  hold_count=jnp.full(8, env.config.hold_steps - 1, jnp.int32))
    hold_still = jnp.zeros((8, 22)).at[:, 6:].set(
        (2 * (state.info["target"][:, 6:] - env._joint_low[6:])
         / (env._joint_high[6:] - env._joint_low[6:]) - 1))
    out = eval_env.step(state, hold_still)
    m = out.metrics
    held = np.asarray(m["stay_success"]) == 1
    assert held.sum() >= 6, np.asarray(m["distance"])  # a resting object hardly moves in 1/30 s
    assert np.all(np.asarray(m["first_goal_reached"])[held] == 1)
    assert np.all(np.asarray(out.info["first_goal"])[held] == 0)
    assert np.all(np.asarray(out.info["hold_count"])[held] == 0)
    assert np.all(np.asarray(out.done) == 0)  # no reset
    # The object is where it was: the new goal was set in place, the episode goes on.
    moved = np.linalg.norm(np.asarray(out.pipeline_state.qpos[:, i:i + 3] - obj[:, :3]), axis=-1)
    assert moved.max() < 0.01
    old_pos, new_pos = np.asarray(state.info["goal_pos"]), np.asarray(out.info["goal_pos"])
    changed = np.linalg.norm(new_pos - old_pos, axis=-1) > 1e-6
    assert np.all(changed[held])
    # In place: within next_goal_pos_range per axis of the held goal, or a resting pose.
    near = np.all(np.abs(new_pos - old_pos) <= env.config.next_goal_pos_range + 1e-6, axis=-1)
    resting = np.abs(new_pos[:, 0] - ap2ap.CENTER[0]) <= env.config.reset_xy_range + 1e-6
    assert np.all((near | resting)[held])
    # The observation already shows the new goal's target points.
    points = np.asarray(out.obs["state"][:, :768]).reshape(8, 128, 6)
    keypoints = np.asarray(env.keypoints)[np.asarray(out.info["object_id"])]
    k = int(np.argmax(held))
    target = geometry.transform_points(new_pos[k], out.info["goal_quat"][k], keypoints[k])
    np.testing.assert_allclose(points[k, :, 3:], np.asarray(target), atol=1e-5)


@pytest.mark.slow
def test_too_far_reset_in_stage_1_only(train_env, eval_env):
    for compiled, expect in ((train_env, 1.0), (eval_env, 0.0)):
        state = compiled.reset(_keys(B, seed=2))
        far = state.info["goal_pos"].at[:, 2].set(0.29).at[:, 0].add(0.3)  # d >= 0.3 m
        state = _info(state, goal_pos=far)
        out = compiled.step(state, jnp.zeros((B, 22)))
        assert np.all(np.asarray(out.metrics["distance"]) >= 0.3)
        assert np.all(np.asarray(out.done) == expect)
        assert np.all(np.asarray(out.metrics["too_far"]) == expect)


@pytest.mark.slow
def test_randomized_fields_differ_and_stay_in_range(train_env, eval_env):
    env = train_env.env
    r = env.config.randomization
    state = train_env.reset(_keys(B, seed=3))
    fields = {k: np.asarray(v) for k, v in train_env.model_fields(state.info).items()}
    nominal = {k: np.asarray(v) for k, v in
               eval_env.model_fields(eval_env.reset(_keys(B, seed=3)).info).items()}
    mj = env.mj_model
    robot_bodies = mj.body_rootid == mj.body(robot.BASE_BODY).id
    ratio = fields["body_mass"][:, robot_bodies] / mj.body_mass[robot_bodies]
    assert ratio.min() >= r.robot_mass_scale[0] and ratio.max() <= r.robot_mass_scale[1]
    assert np.ptp(ratio[:, 3]) > 0.2  # differs across environments
    kp = fields["kp"] / mj.actuator_gainprm[:, 0]
    # Damping: the arm servos' kv and every robot joint's passive damping (the LEAP servos
    # have no kv; their damping is the joints').
    kv = fields["kv"][:, :6] / -mj.actuator_biasprm[:6, 2]
    damping = fields["damping"] / mj.dof_damping[:22]
    for scale, bounds in ((kp, r.stiffness_scale), (kv, r.damping_scale),
                          (damping, r.damping_scale)):
        assert scale.min() >= bounds[0] and scale.max() <= bounds[1] and np.ptp(scale[:, 0]) > 0
    robot_geoms = robot_bodies[mj.geom_bodyid] & (mj.geom_contype > 0)
    friction = fields["friction"][:, robot_geoms] / mj.geom_friction[robot_geoms, 0]
    assert friction.min() >= r.robot_friction_scale[0] - 1e-6
    assert friction.max() <= r.robot_friction_scale[1] + 1e-6 and np.ptp(friction[:, 0]) > 0
    gravity = fields["gravity"] - mj.opt.gravity
    assert np.ptp(gravity[:, 2]) > 0 and np.abs(gravity).max() < 6 * r.gravity_std
    limits = fields["jnt_range"][:, :22] - mj.jnt_range[:22]
    assert 0 < np.abs(limits).max() < 6 * r.joint_limit_std
    # Object masses are the library's, scaled per environment.
    ids = np.asarray(state.info["object_id"])
    obj = mj.body(robot.OBJECT_BODY).id
    obj_ratio = fields["body_mass"][:, obj] / np.asarray(env.scene.library.mass)[ids]
    assert obj_ratio.min() >= 0.5 - 1e-6 and obj_ratio.max() <= 1.5 + 1e-6
    # Noise scales are per environment and within Table VI's ranges.
    dr = {k: np.asarray(v) for k, v in state.info["randomization"].items()}
    assert 0 <= dr["obs_white"].min() and dr["obs_white"].max() <= r.obs_white
    assert 0 <= dr["action_white"].min() and dr["action_white"].max() <= r.action_white
    assert np.ptp(dr["obs_white"]) > 0 and np.ptp(dr["action_offset"][:, 0]) > 0
    # Evaluation (randomization off): nominal physics everywhere.
    np.testing.assert_allclose(nominal["kp"], np.broadcast_to(mj.actuator_gainprm[:, 0],
                                                             nominal["kp"].shape))
    np.testing.assert_allclose(nominal["gravity"], np.broadcast_to(mj.opt.gravity, (B, 3)))
    robot_mass = nominal["body_mass"][:, robot_bodies]
    np.testing.assert_allclose(robot_mass, np.broadcast_to(mj.body_mass[robot_bodies],
                                                           robot_mass.shape))


@pytest.mark.slow
def test_long_rollout_pushes_determinism_and_no_nan(train_env):
    """125 random-action steps at 30 Hz: a push at 4 s (step 120), nothing NaN, reproducible."""
    env = train_env.env
    assert env.push_steps == 120
    keys = _keys(B, seed=4)
    runs = []
    for length in (125, 10):  # the second run repeats the start of the first
        state = train_env.reset(keys)
        pushes, finite = [], True
        rng = np.random.default_rng(0)
        for t in range(length):
            action = jnp.asarray(rng.uniform(-1, 1, (B, 22)), jnp.float32)
            state = train_env.step(state, action)
            pushes.append(np.asarray(state.metrics["push"]))
            finite &= bool(np.isfinite(np.asarray(state.obs["state"])).all())
            finite &= bool(np.isfinite(np.asarray(state.reward)).all())
            if t == 9:
                early = np.asarray(state.pipeline_state.qpos)
        runs.append((np.stack(pushes), finite, early))
        if length == 125:
            unstable = np.asarray(state.metrics["unstable"])
    pushes, finite, qpos = runs[0]
    assert finite and np.all(unstable == 0)
    # Pushed exactly at the 120th control step (4 s of simulated time), in every environment.
    assert np.all(pushes[119] == 1) and pushes.sum() == B
    # Reset and step are deterministic for a key.
    np.testing.assert_array_equal(qpos, runs[1][2])


@pytest.mark.slow
def test_observation_contents(train_env):
    env = train_env.env
    state = train_env.reset(_keys(B, seed=5))
    obs = np.asarray(state.obs["state"])
    assert obs.shape == (B, ap2ap.TEACHER_SIZE)
    np.testing.assert_array_equal(np.asarray(state.obs["student_state"]), obs[:, :834])
    # The paired points are the keypoints at the object's pose and at the goal (plus sensor
    # noise of at most a few mm).
    i = robot.NUM_JOINTS
    data = state.pipeline_state
    k = np.asarray(env.keypoints)[np.asarray(state.info["object_id"])]
    for e in range(B):
        current = geometry.transform_points(data.qpos[e, i:i + 3] - robot.BASE_POS,
                                            data.qpos[e, i + 3:i + 7], k[e])
        target = geometry.transform_points(state.info["goal_pos"][e], state.info["goal_quat"][e],
                                           k[e])
        pairs = obs[e, :768].reshape(128, 6)
        np.testing.assert_allclose(pairs[:, :3], np.asarray(current), atol=0.01)
        np.testing.assert_allclose(pairs[:, 3:], np.asarray(target), atol=0.01)
    layout = ap2ap.TEACHER_LAYOUT
    np.testing.assert_allclose(obs[:, layout["qpos"]], np.asarray(data.qpos[:, :22]), atol=0.01)
    # The first goal is in the air, the object on the table.
    assert np.all(np.asarray(state.info["goal_pos"][:, 2]) >= env.config.first_goal_height[0])


def test_action_mapping():
    """Arm: delta targets at the stage's speed; hand: absolute over the joint ranges."""
    for stage, speed in ((1, 10.0), (2, 1.5)):
        config = ap2ap.stage_config(stage)
        config.num_objects = NUM_OBJECTS
        env = envs.load("ap2ap", config)
        target = jnp.concatenate([env._arm_ladder[0], env._init_hand])
        action = jnp.zeros(22).at[0].set(1.0).at[1].set(-0.5).at[6].set(-1.0).at[7].set(1.0)
        out = np.asarray(env._targets(target, action))
        np.testing.assert_allclose(out[0] - float(target[0]), speed / 60, atol=1e-6)
        np.testing.assert_allclose(out[1] - float(target[1]), -0.5 * speed / 60, atol=1e-6)
        np.testing.assert_allclose(out[2:6], np.asarray(target[2:6]))
        low, high = np.asarray(env._joint_low), np.asarray(env._joint_high)
        assert out[6] == pytest.approx(low[6]) and out[7] == pytest.approx(high[7])
        np.testing.assert_allclose(out[8:], 0.5 * (low[8:] + high[8:]), atol=1e-6)
        # Control at 30 Hz on a 1/120 s physics step: 4 substeps.
        assert env.n_substeps == 4
    config = ap2ap.stage_config(3)
    config.num_objects = NUM_OBJECTS
    env = envs.load("ap2ap", config)
    assert env.n_substeps == 24 and env.push_steps == 20  # 5 Hz; a push every 4 s
    # Initial hand position: "low" just clears the object, "high" (stage 3) is 12 cm higher
    # with the same palm orientation.
    low_env = envs.load("ap2ap", num_objects=NUM_OBJECTS)
    model = env.mj_model
    data = mujoco.MjData(model)
    palm = model.site(robot.PALM_SITE).id
    upright = jnp.array([1.0, 0.0, 0.0, 0.0])
    pos = jnp.array([0.45, 0.0, 0.06])
    poses = []
    for e in (low_env, env):
        mujoco.mj_resetDataKeyframe(model, data, model.key(robot.GRASP_READY_KEY).id)
        data.qpos[:6] = np.asarray(e.initial_arm(pos, upright, 0))
        mujoco.mj_forward(model, data)
        poses.append((data.site_xpos[palm].copy(), data.site_xmat[palm].copy(),
                      robot_scene.lowest_robot_point(model, data) - robot.TABLE_HEIGHT))
    np.testing.assert_allclose(poses[1][0] - poses[0][0], [0, 0, ap2ap.HIGH_HAND_LIFT], atol=1e-3)
    np.testing.assert_allclose(poses[1][1], poses[0][1], atol=1e-3)
    top = float(jnp.max(low_env._points(pos, upright, 0)[:, 2]))
    assert top + ap2ap.RESET_CLEARANCE <= poses[0][2] <= top + ap2ap.RESET_CLEARANCE + 0.011


@pytest.mark.slow
def test_reset_robot_clears_the_object(train_env):
    """No reset starts with the robot inside the object (checked in native MuJoCo)."""
    env = train_env.env
    states = [train_env.reset(_keys(B, seed=6 + 100 * i)) for i in range(6)]  # 48 resets
    qpos = np.concatenate([np.asarray(s.pipeline_state.qpos) for s in states])
    ids = np.concatenate([np.asarray(s.info["object_id"]) for s in states])
    worst = 0.0
    for k in range(len(ids)):
        model = env.scene.native_model(int(ids[k]))
        data = mujoco.MjData(model)
        data.qpos[:] = qpos[k]
        mujoco.mj_forward(model, data)
        obj = model.body(robot.OBJECT_BODY).id
        for c in data.contact[: data.ncon]:
            bodies = {model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2]}
            if obj in bodies and 0 not in bodies:
                worst = min(worst, c.dist)
    assert worst > -1e-3, f"robot and object overlap by {-1000 * worst:.1f} mm at reset"
