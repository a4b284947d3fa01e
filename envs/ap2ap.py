"""`ap2ap`: Anypose-to-Anypose with the xArm6 + LEAP hand (SPEC sections 2, 4 and 5).

One library object per environment rests on the table; the robot must bring it to a goal pose
given by 128 paired points. The first goal is lifted into the air; once a goal has been held
(success for `hold_steps` consecutive control steps) the next one is sampled in place, without
reset. The curriculum of Table IV is a set of config values: `stage_config(stage)`.

Frames: positions are in the robot base frame (the world shifted down by the table height, so
z = 0 is the table top and the xArm's base sits at the origin). Quaternions are wxyz.

Action (22 numbers in [-1, 1], order of dex4d_jax.robot.JOINT_NAMES):
  arm  [0:6]   delta joint targets: target += arm_speed_scale * arm_delta_dt * a (clipped to the
               joint ranges); arm_delta_dt is 1/60 s as in the authors' code, at every stage.
  hand [6:22]  absolute joint targets, a = -1 .. 1 mapped linearly onto each joint's range.

Observation (`obs` is a dict; every value clipped to +-5 as in the authors' code):
  "state" (the teacher's, TEACHER_LAYOUT gives the slices):
     paired points [128 x 6] (current; target), joint angles [22], joint velocities [22], last
     action [22], joint torques [22] (fractions of each servo's force limit), fingertip states [4 x 13] (position, wxyz, linear and
     angular velocity), fingertip contact forces [4 x 3] (world frame, from the object), palm
     state [13], object state [13], goal relative to the object [7] (position still to go and
     the rotation to go), fingertip-to-object vectors [4 x 3], shape descriptor [6] (extents
     and principal spreads of the keypoints: our stand-in for UniDexGrasp's 64-D feature).
  "student_state": the first 834 entries of "state": paired points, joint angles, joint
     velocities, last action. The student's masking (SPEC section 6) picks from these points.

Reward (Table V; every term logged as reward/<name>, weights in `reward_weights`):
  goal      contact * (1.4 - 3 d)
  fingertip -0.5 * min(sum_j |fingertip_j - object|, 3)
  palm      -0.5 * min(|palm - object|, 0.5)
  bonus     contact * success * 5 / (1 + 10 d) + stay_success * 10
  curl      -0.001 * |hand joint angles|^2
  table     min(10 * (min_j fingertip_j height - 0.02), 0)   (0.62 m in the world)
  action    max(-0.01 * |a|^2, -0.5)
with contact = (sum of fingertip-to-object distances < 0.48 m) and (palm-to-object < 0.12 m),
success = d < 0.05 m, stay_success = success held `hold_steps` steps.

Domain randomization (Table VI), per environment and resampled at every reset, on with
`domain_randomization=True`: observation and action noise (white and per-episode
correlated), gravity, actuator stiffness and damping, joint limits, robot and object masses,
robot and object friction; and pushes of the object every `push_interval` seconds of simulated
time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from dex4d_jax.envs import base, contacts, objects, poses, robot_scene
from dex4d_jax.envs.ap2ap_config import (  # noqa: F401 (the environment's tables, here too)
    REWARD_TERMS,
    SETTING_RANGES,
    STAGE3_WEIGHTS,
    STAGE12_WEIGHTS,
    STAGES,
    default_config,
    stage_config,
)
from ml_collections import config_dict
from mujoco import mjx
from mujoco.mjx._src import support as mjx_support

from dex4d_jax import geometry, object_library, robot, scene_models, shapes

NUM_POINTS = 128
# Object workspace (base frame): reset poses lie around CENTER; goals stay in this box.
CENTER = robot.WORKSPACE_CENTER
WORKSPACE_LOW = np.array([0.30, -0.15, 0.0])
WORKSPACE_HIGH = np.array([0.60, 0.15, 0.30])
# Initial hand position (Table IV): "low" lowers the grasp-ready hand as far as it can while
# every robot collider stays RESET_CLEARANCE above the object's highest keypoint; "high" starts
# HIGH_HAND_LIFT higher still. The arm poses come from robot_scene.arm_ladder: palm lifts,
# robot_scene.LIFT_STEP apart, solved once by inverse kinematics (palm orientation kept).
HIGH_HAND_LIFT = 0.12
RESET_CLEARANCE = 0.02

# Sizes of the observation parts, in order (TEACHER_LAYOUT holds their slices).
_PARTS = (("points", NUM_POINTS * 6), ("qpos", robot.NUM_JOINTS), ("qvel", robot.NUM_JOINTS),
          ("last_action", robot.NUM_JOINTS), ("torque", robot.NUM_JOINTS),
          ("fingertip_state", 4 * 13), ("fingertip_force", 4 * 3), ("palm_state", 13),
          ("object_state", 13), ("goal", 7), ("fingertip_to_object", 4 * 3), ("shape", 6))
TEACHER_LAYOUT = {}
_offset = 0
for _name, _size in _PARTS:
    TEACHER_LAYOUT[_name] = slice(_offset, _offset + _size)
    _offset += _size
TEACHER_SIZE = _offset
STUDENT_SIZE = TEACHER_LAYOUT["last_action"].stop


class Ap2ap(base.MjxEnv):
    """Move a library object from any pose to any pose with the xArm6 + LEAP hand."""

    def __init__(self, config: config_dict.ConfigDict | None = None,
                 library: object_library.ObjectLibrary | None = None,
                 scene_items: tuple[scene_models.StaticItem, ...] = ()):
        """Builds the batched MJX model.

        Args:
          config: settings (`default_config()` when None).
          library: objects in the ROBOT_SLOTS layout replacing the library that `split`,
            `num_objects`, `object_seed` and `families` choose (the benchmark's YCB stand-ins).
          scene_items: fixed items on the table (world frame); they collide with the object
            only and block camera rays.
        """
        config = config or default_config()
        objects.require_impl(config.impl)  # before any compile: warp-lang installed?
        if config.hand_init not in ("low", "high"):
            raise ValueError(f"hand_init must be 'low' or 'high', got {config.hand_init!r}")
        if library is None:
            library = object_library.load_library(config.split, config.num_objects,
                                                  config.object_seed, tuple(config.families))
        self._scene = robot_scene.build_scene_objects(
            library, contact_limits=scene_models.ContactLimits(config.max_contact_points,
                                                               config.max_geom_pairs),
            scene_items=tuple(scene_items))
        mj_model = self._scene.mj_model
        super().__init__(config, mj_model)
        self._mjx_model = objects.put_model(mj_model, config.impl)
        if config.impl == "warp":
            self._init_data = mjx.make_data(mj_model, device=jax.local_devices()[0],
                                            impl="warp", **warp_sizes(mj_model, config))
        else:
            self._init_data = mjx.make_data(self._mjx_model, device=jax.local_devices()[0])
        self._keypoints = jnp.asarray(self._scene.keypoints)
        self._support = jnp.asarray(self._scene.support)
        self._shape = jnp.asarray(shapes.shape_descriptors(self._scene.keypoints))
        self._base = jnp.asarray(robot.BASE_POS, jnp.float32)
        self._center = jnp.asarray(CENTER, jnp.float32)

        key = mj_model.key(robot.GRASP_READY_KEY)
        lifts = np.arange(0.0, robot_scene.MAX_LIFT + 1e-9, robot_scene.LIFT_STEP)
        arms, lowest = robot_scene.arm_ladder(mj_model, key.qpos, lifts)
        self._arm_ladder = jnp.asarray(arms)
        self._ladder_lowest = jnp.asarray(lowest)
        self._ladder_extra = (round(HIGH_HAND_LIFT / robot_scene.LIFT_STEP)
                              if config.hand_init == "high" else 0)
        self._init_hand = jnp.asarray(key.qpos[robot.NUM_ARM: robot.NUM_JOINTS], jnp.float32)
        ranges = np.stack([mj_model.joint(n).range for n in robot.JOINT_NAMES])
        self._joint_low = jnp.asarray(ranges[:, 0], jnp.float32)
        self._joint_high = jnp.asarray(ranges[:, 1], jnp.float32)
        # Joint torques are observed as fractions of each servo's force limit.
        self._force_limit = jnp.asarray(mj_model.actuator_forcerange[:, 1], jnp.float32)

        self._fingertip_sites = np.array([mj_model.site(s).id for s in robot.FINGERTIP_SITES])
        self._palm_site = mj_model.site(robot.PALM_SITE).id
        self._object_body = mj_model.body(robot.OBJECT_BODY).id
        self._object_qpos = robot.NUM_JOINTS  # object free joint: qpos[22:29], qvel[22:28]
        self._contacts = contacts.FingertipContacts(mj_model, self._init_data,
                                                    self._object_body)

        # Which bodies and geoms are the robot's (for mass and friction randomization).
        body_root = mj_model.body_rootid
        robot_root = mj_model.body(robot.BASE_BODY).id
        self._robot_bodies = jnp.asarray(body_root == robot_root)
        self._object_bodies = jnp.asarray(np.arange(mj_model.nbody) == self._object_body)
        geom_body = mj_model.geom_bodyid
        self._robot_geoms = jnp.asarray(body_root[geom_body] == robot_root)
        self._object_geoms = jnp.asarray(geom_body == self._object_body)
        self._robot_joints = np.arange(robot.NUM_JOINTS)

        self._push_steps = base.whole_steps(config.randomization.push_interval, config.ctrl_dt,
                                            "push_interval", "ctrl_dt")

    # ------------------------------------------------------------------------------------------
    # Properties.
    # ------------------------------------------------------------------------------------------

    @property
    def student_layout(self) -> base.StudentLayout:
        """The student's inputs: points, joint angles, velocities, last action."""
        return base.StudentLayout("student_state", TEACHER_LAYOUT["points"],
                                  TEACHER_LAYOUT["qpos"], TEACHER_LAYOUT["qvel"],
                                  TEACHER_LAYOUT["last_action"])

    @property
    def deploy_info(self) -> dict:
        """What a deployed policy must know about this task (stored in exported ONNX files):
        joint order, the action mapping (arm deltas at `arm_speed_scale * arm_delta_dt` per
        control step, hand absolute over the joint ranges), joint limits, control rate, and the
        points' frame (the robot base frame: world shifted down by the table height)."""
        cfg = self._config
        low, high = np.asarray(self._joint_low), np.asarray(self._joint_high)
        return {
            "joint_names": list(robot.JOINT_NAMES),
            "action_mapping": {"kind": "arm_delta_hand_absolute", "num_arm": robot.NUM_ARM,
                               "arm_step": float(cfg.arm_speed_scale * cfg.arm_delta_dt),
                               "arm_speed_scale": float(cfg.arm_speed_scale),
                               "arm_delta_dt": float(cfg.arm_delta_dt),
                               "joint_low": low.tolist(), "joint_high": high.tolist()},
            "control_frequency_hz": 1.0 / float(cfg.ctrl_dt),
            "points_origin_in_world": robot.BASE_POS.tolist(),
            "success_threshold": float(cfg.success_threshold),
            "hold_steps": int(cfg.hold_steps),
        }

    @property
    def action_size(self) -> int:
        """22 joint commands (arm deltas, hand absolute targets)."""
        return robot.NUM_JOINTS

    @property
    def scene(self) -> robot_scene.SceneObjects:
        """The object library and its batched model fields."""
        return self._scene

    @property
    def keypoints(self) -> jax.Array:
        """[num_objects, 128, 3] keypoints in each object's frame."""
        return self._keypoints

    @property
    def push_steps(self) -> int:
        """Control steps between pushes of the object."""
        return self._push_steps

    # ------------------------------------------------------------------------------------------
    # Models: the environment's object, plus its domain randomization.
    # ------------------------------------------------------------------------------------------

    def _sample_randomization(self, key: jax.Array) -> dict:
        """Per-episode physics and noise parameters (zeros / ones when randomization is off)."""
        r = self._config.randomization
        m = self._mj_model
        keys = jax.random.split(key, 12)

        def uniform(k, bounds, shape=()):
            return jax.random.uniform(k, shape, minval=bounds[0], maxval=bounds[1])

        body_scale = jnp.where(self._robot_bodies,
                               uniform(keys[0], r.robot_mass_scale, (m.nbody,)), 1.0)
        body_scale = jnp.where(self._object_bodies,
                               uniform(keys[1], r.object_mass_scale), body_scale)
        friction_scale = jnp.where(self._robot_geoms, uniform(keys[2], r.robot_friction_scale), 1.0)
        friction_scale = jnp.where(self._object_geoms,
                                   uniform(keys[3], r.object_friction_scale), friction_scale)
        params = {
            "body_mass_scale": body_scale,
            "friction_scale": friction_scale,
            "stiffness_scale": uniform(keys[4], r.stiffness_scale, (m.nu,)),
            "damping_scale": uniform(keys[5], r.damping_scale, (m.nu,)),
            "joint_limit_offset": r.joint_limit_std * jax.random.normal(
                keys[6], (robot.NUM_JOINTS, 2)),
            "gravity_offset": r.gravity_std * jax.random.normal(keys[7], (3,)),
            "obs_white": uniform(keys[8], (0.0, r.obs_white)),
            "obs_offset": uniform(keys[9], (0.0, r.obs_correlated)) * jax.random.normal(
                jax.random.fold_in(keys[9], 1), (TEACHER_SIZE,)),
            "action_white": uniform(keys[10], (0.0, r.action_white)),
            "action_offset": uniform(keys[11], (0.0, r.action_correlated)) * jax.random.normal(
                jax.random.fold_in(keys[11], 1), (robot.NUM_JOINTS,)),
        }
        if not self._config.domain_randomization:  # nominal physics, no noise
            params = {k: (jnp.ones_like(v) if k.endswith("scale") else jnp.zeros_like(v))
                      for k, v in params.items()}
        return params

    def episode_model(self, info: dict) -> mjx.Model:
        """The MJX model of one environment: its object and its randomized physics."""
        model = self._scene.model_for(self._mjx_model, info["object_id"])
        dr = info["randomization"]
        mass = dr["body_mass_scale"]
        kp = dr["stiffness_scale"]
        kd = dr["damping_scale"]
        gain = model.actuator_gainprm.at[:, 0].multiply(kp)
        bias = model.actuator_biasprm.at[:, 1].multiply(kp).at[:, 2].multiply(kd)
        damping = model.dof_damping.at[: robot.NUM_JOINTS].multiply(kd)
        jnt_range = model.jnt_range.at[: robot.NUM_JOINTS].add(dr["joint_limit_offset"])
        friction = model.geom_friction.at[:, 0].multiply(dr["friction_scale"])
        return model.tree_replace({
            "body_mass": model.body_mass * mass,
            "body_inertia": model.body_inertia * mass[:, None],
            "actuator_gainprm": gain,
            "actuator_biasprm": bias,
            "dof_damping": damping,
            "jnt_range": jnt_range,
            "geom_friction": friction,
            "opt.gravity": model.opt.gravity + dr["gravity_offset"],
        })

    # ------------------------------------------------------------------------------------------
    # Brax API.
    # ------------------------------------------------------------------------------------------

    def reset(self, rng: jax.Array) -> base.State:
        """A random object at a random pose on the table, the robot ready, a lifted goal."""
        cfg = self._config
        rng, key_obj, key_pose, key_goal, key_hand, key_dr = jax.random.split(rng, 6)
        object_id = jax.random.randint(key_obj, (), 0, self._scene.num_objects)
        support = self._support[object_id]
        pos, quat = poses.reset_pose(key_pose, support, self._center, cfg.reset_xy_range,
                                     cfg.reset_stable_ratio)
        goal_pos, goal_quat = poses.first_goal(key_goal, quat, self._center,
                                               cfg.first_goal_xy_range, cfg.first_goal_height,
                                               cfg.first_goal_max_angle)
        return self._reset_at(rng, key_hand, key_dr, object_id, pos, quat, goal_pos, goal_quat)

    def reset_to(self, rng: jax.Array, object_id: jax.Array, pos: jax.Array, quat: jax.Array,
                 goal_pos: jax.Array, goal_quat: jax.Array) -> base.State:
        """The episode start with a chosen object, pose and goal (what `reset` samples); the
        robot starts as in `reset` (hand position of `hand_init`, hand noise, randomization).

        Args:
          rng: key of the episode's randomness.
          object_id: index into the scene's objects.
          pos, quat: [3] object position (base frame, metres) and [4] wxyz orientation.
          goal_pos, goal_quat: the first goal, same frames.
        """
        rng, key_hand, key_dr = jax.random.split(rng, 3)
        return self._reset_at(rng, key_hand, key_dr, object_id, pos, quat, goal_pos, goal_quat)

    def _reset_at(self, rng, key_hand, key_dr, object_id, pos, quat, goal_pos, goal_quat):
        cfg = self._config
        hand = self._init_hand + jax.random.uniform(
            key_hand, (robot.NUM_HAND,), minval=-cfg.hand_init_noise, maxval=cfg.hand_init_noise)
        joints = jnp.clip(jnp.concatenate([self.initial_arm(pos, quat, object_id), hand]),
                          self._joint_low, self._joint_high)
        qpos = jnp.concatenate([joints, pos + self._base, quat])
        info = {
            "rng": rng,
            "object_id": object_id,
            "goal_pos": goal_pos,
            "goal_quat": goal_quat,
            "last_action": jnp.zeros(robot.NUM_JOINTS),
            "target": joints,
            "hold_count": jnp.zeros((), jnp.int32),
            "first_goal": jnp.ones(()),
            "step": jnp.zeros((), jnp.int32),
            "randomization": self._sample_randomization(key_dr),
        }
        model = self.episode_model(info)
        data = self._init_data.replace(qpos=qpos, qvel=jnp.zeros(self._mj_model.nv), ctrl=joints)
        # Kinematics only (no collision): the observation needs site poses, and velocities and
        # contact forces are zero at rest.
        data = mjx.com_pos(model, mjx.kinematics(model, data))
        quantities = self._quantities(model, data, info)
        zero = jnp.zeros(())
        metrics = {
            "distance": quantities["distance"],
            "success": zero,
            "stay_success": zero,
            "goal_reached": zero,
            "first_goal_reached": zero,
            "contact": zero,
            "too_far": zero,
            "push": zero,
            "unstable": zero,
            **{f"reward/{name}": zero for name in REWARD_TERMS},
        }
        key_noise = jax.random.fold_in(rng, 7)
        obs = self._observation(quantities, info, key_noise)
        return base.State(data, obs, zero, zero, metrics, info)

    def step(self, state: base.State, action: jax.Array) -> base.State:
        """One control step: targets from the action, physics, reward, goal bookkeeping."""
        cfg = self._config
        info = dict(state.info)
        dr = info["randomization"]
        rng, key_act, key_push, key_goal, key_obs = jax.random.split(info["rng"], 5)
        action = jnp.clip(action, -1.0, 1.0)
        noisy = action + dr["action_offset"] + dr["action_white"] * jax.random.normal(
            key_act, action.shape)
        noisy = jnp.clip(noisy, -1.0, 1.0)
        target = self._targets(info["target"], noisy)

        model = self.episode_model(info)
        data = state.pipeline_state.replace(ctrl=target)
        push = self._push_due(info["step"])
        data = data.replace(qvel=jnp.where(push, self._pushed_qvel(key_push, data), data.qvel))
        data = self.physics_step(model, data)
        qpos = data.qpos.at[self._object_qpos + 3: self._object_qpos + 7].set(
            geometry.quat_normalize(data.qpos[self._object_qpos + 3: self._object_qpos + 7]))
        data = data.replace(qpos=qpos)

        q = self._quantities(model, data, info)
        distance = q["distance"]
        contact = (jnp.sum(q["fingertip_distance"]) < cfg.contact_fingertip_sum) & (
            q["palm_distance"] < cfg.contact_palm)
        success = distance < cfg.success_threshold
        hold_count = jnp.where(success, info["hold_count"] + 1, 0)
        held = hold_count >= cfg.hold_steps
        rewards = reward_terms(distance, contact, success, held, q["fingertip_distance"],
                               q["palm_distance"], data.qpos[robot.NUM_ARM: robot.NUM_JOINTS],
                               q["fingertip_height"], action)
        reward = sum(cfg.reward_weights[k] * rewards[k] for k in REWARD_TERMS)

        # A held goal is replaced in place by the next one, without reset.
        next_pos, next_quat = poses.next_goal(
            key_goal, self._support[info["object_id"]], info["goal_pos"], info["goal_quat"],
            jnp.asarray(WORKSPACE_LOW, jnp.float32), jnp.asarray(WORKSPACE_HIGH, jnp.float32),
            cfg.next_goal_pos_range, cfg.next_goal_max_angle, self._center, cfg.reset_xy_range,
            cfg.goal_reset_stable_ratio)
        first_goal_reached = held * info["first_goal"]
        info.update(
            rng=rng,
            goal_pos=jnp.where(held, next_pos, info["goal_pos"]),
            goal_quat=jnp.where(held, next_quat, info["goal_quat"]),
            first_goal=jnp.where(held, 0.0, info["first_goal"]),
            hold_count=jnp.where(held, 0, hold_count),
            last_action=action,
            target=target,
            step=info["step"] + 1,
        )
        too_far = (distance >= cfg.too_far_threshold) & (cfg.too_far_threshold > 0)
        # MJX can blow up on rare deep contacts: end such an episode rather than learn on NaN.
        unstable = ~(jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
                     & (jnp.max(jnp.abs(data.qvel)) < 1e3))
        if cfg.impl == "warp":
            # Warp drops the contacts past its buffer, shared by the whole batch (`nacon` counts
            # them all): physics without them is not the scene's, so every episode ends.
            unstable = unstable | (data._impl.nacon[0] > data._impl.naconmax)
        done = (too_far | unstable).astype(jnp.float32)
        reward = jnp.where(unstable, 0.0, reward)
        # Observe the goal the policy must pursue next (the object has not moved since).
        q = dict(q, target_points=self._points(info["goal_pos"], info["goal_quat"],
                                               info["object_id"]))
        obs = self._observation(q, info, key_obs)
        obs = jax.tree.map(lambda x: jnp.where(unstable, 0.0, x), obs)
        metrics = dict(state.metrics)
        metrics.update({
            "distance": jnp.where(unstable, 0.0, distance),
            "success": success.astype(jnp.float32),
            "stay_success": held.astype(jnp.float32),
            "goal_reached": held.astype(jnp.float32),
            "first_goal_reached": first_goal_reached.astype(jnp.float32),
            "contact": contact.astype(jnp.float32),
            "too_far": too_far.astype(jnp.float32),
            "push": push.astype(jnp.float32),
            "unstable": unstable.astype(jnp.float32),
            **{f"reward/{name}": jnp.where(unstable, 0.0, rewards[name])
               for name in REWARD_TERMS},
        })
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done,
                             metrics=metrics, info=info)

    # ------------------------------------------------------------------------------------------
    # Pieces of the step.
    # ------------------------------------------------------------------------------------------

    def initial_arm(self, pos: jax.Array, quat: jax.Array, object_id: jax.Array) -> jax.Array:
        """The arm joints of the initial hand position over an object at (pos, quat).

        "low": the lowest palm lift whose colliders clear the object's highest keypoint by
        RESET_CLEARANCE; "high": HIGH_HAND_LIFT above that.
        """
        top = jnp.max(self._points(pos, quat, object_id)[:, 2])
        clear = self._ladder_lowest >= top + RESET_CLEARANCE
        index = jnp.where(jnp.any(clear), jnp.argmax(clear), len(self._ladder_lowest) - 1)
        index = jnp.minimum(index + self._ladder_extra, len(self._ladder_lowest) - 1)
        return self._arm_ladder[index]

    def _targets(self, target: jax.Array, action: jax.Array) -> jax.Array:
        """Servo targets: arm deltas at the stage's speed, hand absolute over the joint ranges."""
        cfg = self._config
        arm = target[: robot.NUM_ARM] + cfg.arm_speed_scale * cfg.arm_delta_dt * action[
            : robot.NUM_ARM]
        low, high = self._joint_low[robot.NUM_ARM:], self._joint_high[robot.NUM_ARM:]
        hand = low + 0.5 * (action[robot.NUM_ARM:] + 1.0) * (high - low)
        return jnp.clip(jnp.concatenate([arm, hand]), self._joint_low, self._joint_high)

    def _push_due(self, step: jax.Array) -> jax.Array:
        """Whether the object is pushed before control step `step` (every push_interval s)."""
        on = self._config.domain_randomization
        return jnp.asarray(on) & ((step + 1) % self._push_steps == 0)

    def _pushed_qvel(self, key: jax.Array, data: mjx.Data) -> jax.Array:
        """qvel with the object's xy velocity and angular velocity set to random pushes."""
        r = self._config.randomization
        key_lin, key_ang = jax.random.split(key)
        lin = jax.random.uniform(key_lin, (2,), minval=-r.push_linear, maxval=r.push_linear)
        ang = jax.random.uniform(key_ang, (3,), minval=-r.push_angular, maxval=r.push_angular)
        i = self._object_qpos
        quat = data.qpos[i + 3: i + 7]
        # The free joint's angular velocity is in the body frame.
        dof = robot.NUM_JOINTS
        return data.qvel.at[dof: dof + 2].set(lin).at[dof + 3: dof + 6].set(
            geometry.quat_inv_rotate(quat, ang))

    def _points(self, pos: jax.Array, quat: jax.Array, object_id: jax.Array) -> jax.Array:
        return geometry.transform_points(pos, quat, self._keypoints[object_id])

    def _quantities(self, model: mjx.Model, data: mjx.Data, info: dict) -> dict:
        """Everything the observation and reward read, in the base frame."""
        i = self._object_qpos
        obj_pos = data.qpos[i: i + 3] - self._base
        obj_quat = data.qpos[i + 3: i + 7]
        obj_lin = data.qvel[robot.NUM_JOINTS: robot.NUM_JOINTS + 3]
        obj_ang = geometry.quat_rotate(obj_quat, data.qvel[robot.NUM_JOINTS + 3:])
        current = self._points(obj_pos, obj_quat, info["object_id"])
        target = self._points(info["goal_pos"], info["goal_quat"], info["object_id"])

        def site_state(site):
            pos = data.site_xpos[site]
            body = self._mj_model.site_bodyid[site]
            jacp, jacr = mjx_support.jac(model, data, pos, body)
            quat = geometry.mat_to_quat(data.site_xmat[site])
            return jnp.concatenate([pos - self._base, quat, data.qvel @ jacp, data.qvel @ jacr])

        fingertips = jnp.stack([site_state(s) for s in self._fingertip_sites])
        palm = site_state(self._palm_site)
        fingertip_pos = fingertips[:, :3]
        palm_pos = palm[:3]
        return {
            "current_points": current,
            "target_points": target,
            "distance": geometry.mean_point_distance(current, target),
            "qpos": data.qpos[: robot.NUM_JOINTS],
            "qvel": data.qvel[: robot.NUM_JOINTS],
            "torque": data.actuator_force / self._force_limit,
            "fingertip_state": fingertips,
            "fingertip_force": self._contacts.forces(data),
            "palm_state": palm,
            "object_state": jnp.concatenate([obj_pos, obj_quat, obj_lin, obj_ang]),
            "fingertip_to_object": obj_pos - fingertip_pos,
            "fingertip_distance": jnp.linalg.norm(obj_pos - fingertip_pos, axis=-1),
            "palm_distance": jnp.linalg.norm(obj_pos - palm_pos),
            "fingertip_height": fingertip_pos[:, 2],
        }

    def observe(self, state: base.State) -> dict[str, jax.Array]:
        """The observation of `state` for the goal now in `state.info` (after a caller, such as
        the benchmark, replaced the goal); observation noise, when on, is drawn afresh."""
        info = state.info
        model = self.episode_model(info)
        q = self._quantities(model, state.pipeline_state, info)
        return self._observation(q, info, jax.random.fold_in(info["rng"], 11))

    def object_pose(self, state: base.State) -> tuple[jax.Array, jax.Array]:
        """The object's position ([3], base frame, metres) and orientation ([4], wxyz)."""
        i = self._object_qpos
        qpos = state.pipeline_state.qpos
        return qpos[i: i + 3] - self._base, qpos[i + 3: i + 7]

    def _observation(self, q: dict, info: dict, key: jax.Array) -> dict[str, jax.Array]:
        obj_pos, obj_quat = q["object_state"][:3], q["object_state"][3:7]
        to_go = geometry.quat_mul(info["goal_quat"], geometry.quat_conj(obj_quat))
        to_go = jnp.where(to_go[:1] < 0, -to_go, to_go)  # one of the double cover
        parts = {
            "points": geometry.paired_points(q["current_points"], q["target_points"]).reshape(-1),
            "qpos": q["qpos"],
            "qvel": q["qvel"],
            "last_action": info["last_action"],
            "torque": q["torque"],
            "fingertip_state": q["fingertip_state"].reshape(-1),
            "fingertip_force": q["fingertip_force"].reshape(-1),
            "palm_state": q["palm_state"],
            "object_state": q["object_state"],
            "goal": jnp.concatenate([info["goal_pos"] - obj_pos, to_go]),
            "fingertip_to_object": q["fingertip_to_object"].reshape(-1),
            "shape": self._shape[info["object_id"]],
        }
        state = jnp.concatenate([parts[name] for name, _ in _PARTS])
        dr = info["randomization"]
        noise = dr["obs_offset"] + dr["obs_white"] * jax.random.normal(key, state.shape)
        # The last action is the policy's own output: no sensor noise on it.
        noise = noise.at[TEACHER_LAYOUT["last_action"]].set(0.0)
        clip = self._config.obs_clip
        state = jnp.clip(state + noise, -clip, clip)
        return {"state": state, "student_state": state[:STUDENT_SIZE]}


def warp_sizes(mj_model, config: config_dict.ConfigDict) -> dict:
    """make_data's buffer sizes for MJX's warp implementation (None: warp's own guess).

    naconmax: contacts of all environments together (`warp_naconmax`; default one
    environment's `max_contact_points`); njmax: constraint rows per environment (`warp_njmax`;
    default 4 per contact, the pyramidal cone with condim 3, plus one per limited joint).
    """
    cap = config.max_contact_points
    naconmax = config.warp_naconmax if config.warp_naconmax > 0 else (cap if cap > 0 else None)
    rows = 4 * cap + int(np.sum(mj_model.jnt_limited)) if cap > 0 else None
    njmax = config.warp_njmax if config.warp_njmax > 0 else rows
    return {"naconmax": naconmax, "njmax": njmax}


def reward_terms(distance, contact, success, held, fingertip_distance, palm_distance,
                 hand_qpos, fingertip_height, action) -> dict[str, jax.Array]:
    """The unweighted terms of Table V (see the module docstring), each a scalar."""
    return {
        "goal": contact * (1.4 - 3.0 * distance),
        "fingertip": -0.5 * jnp.minimum(jnp.sum(fingertip_distance), 3.0),
        "palm": -0.5 * jnp.minimum(palm_distance, 0.5),
        "bonus": contact * success * 5.0 / (1.0 + 10.0 * distance) + held * 10.0,
        "curl": -0.001 * jnp.sum(hand_qpos**2),
        "table": jnp.minimum(
            10.0 * (jnp.min(fingertip_height) - (robot.FINGERTIP_MIN_HEIGHT - robot.TABLE_HEIGHT)),
            0.0),
        "action": jnp.maximum(-0.01 * jnp.sum(action**2), -0.5),
    }
