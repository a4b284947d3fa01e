"""The methods of Table I as rollout controllers: a trained policy, NovaFlow and NovaFlow-CL.

Policies:
  student (JAX): 64 of the 128 keypoints, chosen at random per trial and kept all episode (the
    points a tracker follows), paired with their targets, masked by camera visibility, noisy.
  teacher (JAX): the environment's full privileged observation (exact points, no camera):
    an upper bound, not a deployable method.
  ONNX student: the same inputs as the JAX student, run on onnxruntime from the host.

Baselines on ap2ap_wrench (NovaFlow, arXiv 2510.08568, as Dex4D adapted it, SPEC section 7):
there is no grasp, the twist actuator holds the object at its frame origin, the "gripper",
whose position the controller knows as a robot knows its flange. The object's motion is the
rigid transform (R, t) from the observed current points to the observed target points, by
masked Kabsch over the visible pairs (`geometry.kabsch`).
  NovaFlow (open loop): one estimate when a waypoint starts, a straight path (constant twist,
    at most `speed_fraction` of the actuator's limits) executed to its end without looking.
  NovaFlow-CL: a new estimate at every step and a proportional twist towards it (the error
    closed in `gain_steps` control steps, clipped to the actuator's limits).
The robot baselines live in `robot_baselines.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dex4d_jax import geometry
from dex4d_jax.benchmark import rollout
from dex4d_jax.benchmark.rollout import Controller
from dex4d_jax.student.policy import StudentInputs


def _point_subset(keys: jax.Array, num_points: int, num_keep: int) -> jax.Array:
    """[B, K] random distinct point indices per trial."""
    return jax.vmap(lambda k: jax.random.permutation(k, num_points)[:num_keep])(keys)


def student_inputs(layout, obs, indices: jax.Array) -> StudentInputs:
    """The student's inputs from a benchmark Observation: the environment's joint parts and the
    observed points `indices` [B, K], paired and masked by visibility."""
    qpos, qvel, last_action, _ = layout.split(obs.env_obs)
    take = jax.vmap(lambda x, i: x[i])
    current, target = take(obs.current, indices), take(obs.target, indices)
    paired = geometry.paired_points(current, target)
    # Hidden points carry zeros (finite; the mask says they are not to be read).
    visible = take(obs.visible, indices)
    paired = jnp.where(visible[..., None], paired, 0.0)
    return StudentInputs(qpos, qvel, last_action, paired, visible)


def student_controller(policy, num_keep: int) -> Controller:
    """A JAX student (`student.policy.StudentPolicy`)."""
    def init(params, obs, keys):
        return _point_subset(keys, obs.current.shape[1], num_keep)

    def act(params, obs, indices, keys):
        return policy.act(params, student_inputs(policy.layout, obs, indices)), indices

    return Controller(init, act)


def teacher_controller(policy_fn) -> Controller:
    """A JAX teacher `policy_fn(params, batched env obs) -> action` on the privileged state."""
    def init(params, obs, keys):
        return ()

    def act(params, obs, carry, keys):
        return jnp.clip(policy_fn(params, obs.env_obs), -1.0, 1.0), carry

    return Controller(init, act)


def onnx_policy_fn(onnx_policy, layout, trials, seed: int):
    """A host policy for `rollout.make_rollout(policy_fn=...)`: an exported student on
    onnxruntime, fed the same inputs as `student_controller` (the same point subset per trial
    for the same trials and seed)."""
    num_keep = int(onnx_policy.info.sizes["points"])
    indices = _point_subset(rollout.policy_keys(rollout.trial_keys(trials, seed)),
                            layout.num_points, num_keep)

    @jax.jit
    def extract(obs, indices):
        x = student_inputs(layout, obs, indices)
        return {"joint_pos": x.qpos, "joint_vel": x.qvel, "last_action": x.last_action,
                "paired_points": x.points,
                "point_mask": x.visible}

    def policy_fn(obs):
        inputs = {k: np.asarray(v) for k, v in jax.device_get(extract(obs, indices)).items()}
        return onnx_policy(**inputs)["action"]

    return policy_fn


def _rotvec(rot: jax.Array) -> jax.Array:
    """Rotation vector (axis * angle, radians) of rotation matrices [..., 3, 3]."""
    quat = geometry.mat_to_quat(rot)
    quat = jnp.where(quat[..., :1] < 0, -quat, quat)
    sin = jnp.linalg.norm(quat[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * jnp.arctan2(sin, quat[..., :1])
    return quat[..., 1:] * jnp.where(sin > 1e-9, angle / jnp.maximum(sin, 1e-9), 2.0)


def estimate_motion(obs) -> tuple[jax.Array, jax.Array]:
    """Masked Kabsch from the observed current to the observed target points: R [B, 3, 3],
    t [B, 3] with target ~ R current + t (environment frame)."""
    return geometry.kabsch(obs.current, obs.target, obs.visible)


def _pivot_motion(obs, pivot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(displacement of the pivot [B, 3], rotation vector [B, 3]) that the estimated transform
    asks for: the pivot (the actuator's frame) goes to R pivot + t."""
    rot, trans = estimate_motion(obs)
    moved = jnp.einsum("bij,bj->bi", rot, pivot) + trans
    return moved - pivot, _rotvec(rot)


def _limits(env) -> tuple[float, float, float]:
    cfg = env.config
    return float(cfg.max_lin_speed), float(cfg.max_ang_speed), float(cfg.ctrl_dt)


def wrench_novaflow_cl(env, gain_steps: float = 3.0) -> Controller:
    """NovaFlow-CL on ap2ap_wrench: re-estimate every step, twist towards the estimate."""
    max_lin_speed, max_ang_speed, ctrl_dt = _limits(env)

    def init(params, obs, keys):
        return ()

    def act(params, obs, carry, keys):
        pivot = jax.vmap(env.object_pose)(obs.state)[0]
        dpos, rotvec = _pivot_motion(obs, pivot)
        lin = dpos / (gain_steps * ctrl_dt) / max_lin_speed
        ang = rotvec / (gain_steps * ctrl_dt) / max_ang_speed
        return jnp.clip(jnp.concatenate([lin, ang], -1), -1.0, 1.0), carry

    return Controller(init, act)


def wrench_novaflow(env, speed_fraction: float = 0.5) -> Controller:
    """NovaFlow (open loop) on ap2ap_wrench: one estimate per waypoint, then a constant twist
    for the planned number of steps, then stillness until the waypoint changes."""
    max_lin_speed, max_ang_speed, ctrl_dt = _limits(env)

    def plan(obs):
        pivot = jax.vmap(env.object_pose)(obs.state)[0]
        dpos, rotvec = _pivot_motion(obs, pivot)
        # Steps so that neither speed exceeds its fraction of the limit.
        need = jnp.maximum(jnp.linalg.norm(dpos, axis=-1) / (speed_fraction * max_lin_speed),
                           jnp.linalg.norm(rotvec, axis=-1) / (speed_fraction * max_ang_speed))
        steps = jnp.maximum(jnp.ceil(need / ctrl_dt), 1.0)
        lin = dpos / (steps[:, None] * ctrl_dt) / max_lin_speed
        ang = rotvec / (steps[:, None] * ctrl_dt) / max_ang_speed
        return jnp.concatenate([lin, ang], -1), steps

    def init(params, obs, keys):
        twist, steps = plan(obs)
        return twist, steps

    def act(params, obs, carry, keys):
        twist, left = carry
        new_twist, new_steps = plan(obs)
        replan = obs.changed
        twist = jnp.where(replan[:, None], new_twist, twist)
        left = jnp.where(replan, new_steps, left)
        action = jnp.where((left > 0)[:, None], twist, 0.0)
        return jnp.clip(action, -1.0, 1.0), (twist, left - 1.0)

    return Controller(init, act)
