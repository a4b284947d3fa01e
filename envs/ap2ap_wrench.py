"""`ap2ap_wrench`: Anypose-to-Anypose with the object moved directly by a bounded twist.

The CPU-scale diagnostic task of SPEC section 10. It keeps the object side of the real AP2AP
contract (128 paired points, goals first lifted then sampled in place, reward on point
distances, success held for a number of steps) and replaces the arm and hand by a bounded 6-D
velocity command applied to the object's free joint, as a stiff gripper would. It exists so the
whole pipeline can be learned and tested on a laptop CPU in minutes; it is not a substitute for
the arm-and-hand task.

Observation (flat, `obs_size = 128 * 6 + 12`):
  [0 : 768]    paired points `[p_i ; p_bar_i]` (current, target), table frame, point-major
  [768 : 771]  object linear velocity (world frame)
  [771 : 774]  object angular velocity (world frame)
  [774 : 780]  last action
Values are clipped to +-5, as in the authors' code. This vector is `obs["state"]`;
`obs["privileged_state"]` (34 numbers: object and goal poses in the table frame, the position
and rotation still to go, velocities, last action, d_t) is for an asymmetric critic.

Action: 6 numbers in [-1, 1]: linear velocity (x `max_lin_speed`) and angular velocity
(x `max_ang_speed`), both in the world frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict
from mujoco import mjx

from dex4d_jax import config_checks, geometry, object_families, scene_models, shapes
from dex4d_jax.envs import base, objects, poses

NUM_POINTS = 128
TABLE_HEIGHT = 0.6
# Position goals stay inside this box (table frame, metres) so they are reachable and in view.
WORKSPACE_LOW = np.array([-0.15, -0.15, 0.0])
WORKSPACE_HIGH = np.array([0.15, 0.15, 0.3])


def default_config() -> config_dict.ConfigDict:
    """Default configuration of `ap2ap_wrench`."""
    return config_dict.create(
        ctrl_dt=0.05,
        sim_dt=0.025,
        episode_length=100,
        # Objects: a procedural set, one drawn per episode.
        families=objects.WRENCH_FAMILIES,
        num_objects=20,
        object_seed=0,
        # Action scale.
        max_lin_speed=0.3,  # m/s
        max_ang_speed=2.0,  # rad/s
        **poses.sampling_config(goal_reset_stable_ratio=0.2),
        # Success: mean point distance below the threshold; held for `hold_steps` steps.
        success_threshold=0.02,
        hold_steps=10,
        # Termination when d_t exceeds this (stage-1 "too far" reset); <= 0 disables it.
        too_far_threshold=0.0,
        obs_clip=5.0,
        reward_weights=config_dict.create(goal=1.0, bonus=1.0, action=1.0),
    )


# Declared ranges of the settings (dex4d_jax/config_checks.py), checked before anything runs.
SETTING_RANGES = {
    **poses.SAMPLING_RANGES,
    "ctrl_dt": config_checks.positive(),
    "sim_dt": config_checks.positive(),
    "episode_length": config_checks.at_least(1),
    "families": config_checks.OneOf(object_families.FAMILIES, many=True),
    "num_objects": config_checks.at_least(1),
    "object_seed": config_checks.Range(integer=True),
    "max_lin_speed": config_checks.positive(),
    "max_ang_speed": config_checks.positive(),
    "success_threshold": config_checks.positive(),
    "hold_steps": config_checks.at_least(1),
    "too_far_threshold": config_checks.Range(),
    "obs_clip": config_checks.positive(),
}


class Ap2apWrench(base.MjxEnv):
    """Move a procedural object from any pose to any pose with a bounded twist."""

    def __init__(self, config: config_dict.ConfigDict | None = None,
                 object_set: list[objects.ObjectSpec] | None = None,
                 scene_items: tuple[scene_models.StaticItem, ...] = ()):
        """Builds the batched MJX model.

        Args:
          config: settings (`default_config()` when None).
          object_set: objects in the WRENCH_SLOT_KINDS layout that replace the procedural set
            of `families`, `num_objects`, `object_seed` (the benchmark's task objects).
          scene_items: fixed items on the table (world frame); they collide with the object
            and block camera rays.
        """
        config = config or default_config()
        xml_path = base.mjcf_path("ap2ap_wrench.xml")
        with open(xml_path) as f:
            self._xml = f.read()
        if object_set is None:
            object_set = object_families.make_object_set(
                tuple(config.families), config.num_objects, config.object_seed,
                scene_models.WRENCH_SLOT_KINDS)
        self._objects = list(object_set)

        def scene():
            spec = scene_models.as_spec(self._xml)
            scene_models.add_static_items(spec, scene_items, contype=1, conaffinity=1)
            return spec

        mj_model, self._object_fields = objects.batched_object_fields(scene, self._objects)
        super().__init__(config, mj_model)
        self._mjx_model = objects.put_model(mj_model)
        self._init_data = mjx.make_data(self._mjx_model, device=jax.local_devices()[0])
        self._keypoints = jnp.asarray(
            np.stack([shapes.object_keypoints(o.primitives, NUM_POINTS, 4000, seed=i)
                      for i, o in enumerate(self._objects)])
        )
        self._support = jnp.asarray(np.stack([objects.support_points(o) for o in self._objects]))
        self._table = jnp.array([0.0, 0.0, TABLE_HEIGHT])
        self._center = jnp.zeros(2)  # the workspace centre, table frame

    # ------------------------------------------------------------------------------------------
    # Properties.
    # ------------------------------------------------------------------------------------------

    @property
    def action_size(self) -> int:
        """Twist: 3 linear and 3 angular components."""
        return 6

    @property
    def student_layout(self) -> base.StudentLayout:
        """The student's inputs. The wrench has no joints: its "joint velocities" are the
        object's twist it commands (linear, angular; 6), and there are no joint angles (the
        object's pose would give away what the masked points hide)."""
        n = NUM_POINTS * 6
        return base.StudentLayout("state", slice(0, n), slice(n, n), slice(n, n + 6),
                                  slice(n + 6, n + 12))

    @property
    def deploy_info(self) -> dict:
        """What a deployed policy must know about this task (stored in exported ONNX files).

        The "joints" are the commanded twist's components; points are in the table frame
        (world shifted down by the table height)."""
        cfg = self._config
        return {
            "joint_names": ["lin_x", "lin_y", "lin_z", "ang_x", "ang_y", "ang_z"],
            "action_mapping": {"kind": "twist", "frame": "world",
                               "max_lin_speed": float(cfg.max_lin_speed),
                               "max_ang_speed": float(cfg.max_ang_speed)},
            "control_frequency_hz": 1.0 / float(cfg.ctrl_dt),
            "points_origin_in_world": [0.0, 0.0, TABLE_HEIGHT],
            "success_threshold": float(cfg.success_threshold),
            "hold_steps": int(cfg.hold_steps),
        }

    @property
    def objects(self) -> list[objects.ObjectSpec]:
        """The object set, indexed by `state.info['object_id']`."""
        return self._objects

    @property
    def keypoints(self) -> jax.Array:
        """[num_objects, 128, 3] keypoints in each object's frame."""
        return self._keypoints

    # ------------------------------------------------------------------------------------------
    # Pose sampling.
    # ------------------------------------------------------------------------------------------

    def _reset_pose(self, key, object_id):
        cfg = self._config
        return poses.reset_pose(key, self._support[object_id], self._center, cfg.reset_xy_range,
                                cfg.reset_stable_ratio)

    def _first_goal(self, key, quat):
        cfg = self._config
        return poses.first_goal(key, quat, self._center, cfg.first_goal_xy_range,
                                cfg.first_goal_height, cfg.first_goal_max_angle)

    def _next_goal(self, key, object_id, goal_pos, goal_quat):
        cfg = self._config
        return poses.next_goal(key, self._support[object_id], goal_pos, goal_quat,
                               jnp.asarray(WORKSPACE_LOW), jnp.asarray(WORKSPACE_HIGH),
                               cfg.next_goal_pos_range, cfg.next_goal_max_angle, self._center,
                               cfg.reset_xy_range, cfg.goal_reset_stable_ratio)

    # ------------------------------------------------------------------------------------------
    # Brax API.
    # ------------------------------------------------------------------------------------------

    def reset(self, rng: jax.Array) -> base.State:
        """Places a random object at a random pose on the table and samples a lifted goal."""
        rng, key_obj, key_pose, key_goal = jax.random.split(rng, 4)
        object_id = jax.random.randint(key_obj, (), 0, len(self._objects))
        pos, quat = self._reset_pose(key_pose, object_id)
        goal_pos, goal_quat = self._first_goal(key_goal, quat)
        return self.reset_to(rng, object_id, pos, quat, goal_pos, goal_quat)

    def reset_to(self, rng: jax.Array, object_id: jax.Array, pos: jax.Array, quat: jax.Array,
                 goal_pos: jax.Array, goal_quat: jax.Array) -> base.State:
        """The episode start with a chosen object, pose and goal (what `reset` samples).

        Args:
          rng: key of the episode's later randomness (goals sampled in place).
          object_id: index into `objects`.
          pos, quat: [3] object position (table frame, metres) and [4] wxyz orientation.
          goal_pos, goal_quat: the first goal, same frames.
        """
        qpos = jnp.concatenate([pos + self._table, quat])
        # No forward pass: the observation reads qpos, and mjx.step recomputes the kinematics.
        data = self._init_data.replace(qpos=qpos, qvel=jnp.zeros(6))
        info = {
            "rng": rng,
            "object_id": object_id,
            "goal_pos": goal_pos,
            "goal_quat": goal_quat,
            "last_action": jnp.zeros(6),
            "hold_count": jnp.zeros((), jnp.int32),
            "first_goal": jnp.ones(()),
        }
        current, target = self._current_points(data, info), self._target_points(info)
        distance = geometry.mean_point_distance(current, target)
        zero = jnp.zeros(())
        metrics = {
            "distance": distance,
            "success": (distance < self._config.success_threshold).astype(jnp.float32),
            "goal_reached": zero,
            "first_goal_reached": zero,
            **{f"reward/{name}": zero for name in self._config.reward_weights},
        }
        obs = self._observation(data, info, current, target)
        return base.State(data, obs, zero, zero, metrics, info)

    def step(self, state: base.State, action: jax.Array) -> base.State:
        """Applies the twist for `ctrl_dt`, scores the new pose and moves on a held goal."""
        cfg = self._config
        info = dict(state.info)
        action = jnp.clip(action, -1.0, 1.0)
        lin = action[:3] * cfg.max_lin_speed
        ang = action[3:] * cfg.max_ang_speed

        def qvel_fn(data):
            # The free joint's angular velocity is expressed in the body frame.
            return jnp.concatenate([lin, geometry.quat_inv_rotate(data.qpos[3:7], ang)])

        model = objects.object_model(self._mjx_model, self._object_fields, info["object_id"])
        data = self.physics_step(model, state.pipeline_state, qvel_fn)
        data = data.replace(qpos=data.qpos.at[3:7].set(geometry.quat_normalize(data.qpos[3:7])))

        current, target = self._current_points(data, info), self._target_points(info)
        distance = geometry.mean_point_distance(current, target)
        success = distance < cfg.success_threshold
        hold_count = jnp.where(success, info["hold_count"] + 1, 0)
        held = hold_count >= cfg.hold_steps

        rewards = {
            "goal": 1.4 - 3.0 * distance,
            "bonus": success * 5.0 / (1.0 + 10.0 * distance) + held * 10.0,
            "action": jnp.maximum(-0.01 * jnp.sum(action**2), -0.5),
        }
        reward = sum(cfg.reward_weights[k] * v for k, v in rewards.items())

        # A held goal is replaced in place by the next one, without reset.
        rng, key_goal = jax.random.split(info["rng"])
        next_pos, next_quat = self._next_goal(key_goal, info["object_id"], info["goal_pos"],
                                              info["goal_quat"])
        info["rng"] = rng
        info["goal_pos"] = jnp.where(held, next_pos, info["goal_pos"])
        info["goal_quat"] = jnp.where(held, next_quat, info["goal_quat"])
        first_goal_reached = held * info["first_goal"]
        info["first_goal"] = jnp.where(held, 0.0, info["first_goal"])
        info["hold_count"] = jnp.where(held, 0, hold_count)
        info["last_action"] = action

        if cfg.too_far_threshold > 0:
            done = (distance >= cfg.too_far_threshold).astype(jnp.float32)
        else:
            done = jnp.zeros(())
        # Observe the goal the policy must pursue next (the object has not moved since).
        target = self._target_points(info)
        obs = self._observation(data, info, current, target)
        # Update rather than replace: wrappers (Brax's EvalWrapper) add their own entries.
        metrics = dict(state.metrics)
        metrics.update({
            "distance": distance,
            "success": success.astype(jnp.float32),
            "goal_reached": held.astype(jnp.float32),
            "first_goal_reached": first_goal_reached.astype(jnp.float32),
            **{f"reward/{name}": rewards[name] for name in cfg.reward_weights},
        })
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done,
                             metrics=metrics, info=info)

    # ------------------------------------------------------------------------------------------
    # Observation.
    # ------------------------------------------------------------------------------------------

    def episode_model(self, info: dict) -> mjx.Model:
        """The MJX model of one environment (its object)."""
        return objects.object_model(self._mjx_model, self._object_fields, info["object_id"])

    def observe(self, state: base.State) -> dict[str, jax.Array]:
        """The observation of `state` for the goal now in `state.info` (after a caller, such as
        the benchmark, replaced the goal)."""
        data, info = state.pipeline_state, state.info
        return self._observation(data, info, self._current_points(data, info),
                                 self._target_points(info))

    def object_pose(self, state: base.State) -> tuple[jax.Array, jax.Array]:
        """The object's position ([3], table frame, metres) and orientation ([4], wxyz)."""
        qpos = state.pipeline_state.qpos
        return qpos[:3] - self._table, qpos[3:7]

    def _current_points(self, data: mjx.Data, info: dict) -> jax.Array:
        """The object's keypoints at its current pose, table frame, [128, 3]."""
        keypoints = self._keypoints[info["object_id"]]
        return geometry.transform_points(data.qpos[:3] - self._table, data.qpos[3:7], keypoints)

    def _target_points(self, info: dict) -> jax.Array:
        """The object's keypoints at the goal pose, table frame, [128, 3]."""
        keypoints = self._keypoints[info["object_id"]]
        return geometry.transform_points(info["goal_pos"], info["goal_quat"], keypoints)

    def _observation(self, data, info, current, target) -> dict[str, jax.Array]:
        quat = data.qpos[3:7]
        ang_world = geometry.quat_rotate(quat, data.qvel[3:6])
        state = jnp.concatenate([
            geometry.paired_points(current, target).reshape(-1),
            data.qvel[:3],
            ang_world,
            info["last_action"],
        ])
        pos = data.qpos[:3] - self._table
        to_go = geometry.quat_mul(info["goal_quat"], geometry.quat_conj(quat))
        to_go = jnp.where(to_go[:1] < 0, -to_go, to_go)  # one of the double cover
        privileged = jnp.concatenate([
            pos, quat, info["goal_pos"], info["goal_quat"], info["goal_pos"] - pos, to_go,
            data.qvel[:3], ang_world, info["last_action"],
            geometry.mean_point_distance(current, target)[None],
        ])
        clip = self._config.obs_clip
        return {"state": jnp.clip(state, -clip, clip),
                "privileged_state": jnp.clip(privileged, -clip, clip)}
