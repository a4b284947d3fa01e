"""NovaFlow and NovaFlow-CL on the robot (ap2ap): grasp, lock the fingers, move the arm by IK.

The baselines of Table I (SPEC section 7; NovaFlow, arXiv 2510.08568, as Dex4D adapted it) on
the xArm6 + LEAP hand, as `rollout.Controller`s that run inside the jitted rollout, batched over
trials. Three phases per trial:

  1. Grasp. A robot policy (`grasp_controller`) acts until the first waypoint (the lift) has
     been reached (obs.waypoint > 0). Without one, a scripted grasp (`scripted grasp` below).
  2. Lock. The hand's joint targets freeze at their values when the grasp phase ends.
  3. Motion. The object's rigid motion (R, t) from the observed current to the observed target
     points (masked Kabsch, `methods.estimate_motion`). The hand is taken to be rigidly
     attached to the object, so the flange should go from its pose (p_f, R_f) (forward
     kinematics of the measured arm joints) to (R p_f + t, R R_f); damped least squares IK
     (`ik.solve_ik`, MJX kinematics, Jacobians from JAX) gives the arm joints.
       NovaFlow (open loop): when the grasp phase ends and whenever the waypoint changes, one
         estimate and one full IK solve (`plan_iterations`), then a straight joint-space path
         from the current joint targets to the solution at `max_joint_speed` (the joint that
         moves most sets the duration), executed to its end without looking; then stillness
         until the next waypoint.
       NovaFlow-CL: every control step a new estimate, a few IK iterations
         (`ik_iterations`, warm-started from the previous step's solution) and a delta action
         towards the solution (at most `max_joint_speed`).

Scripted grasp (no robot policy given; the results table must say so). A perception-based
approximation of a power grasp from above (`envs/robot_scene.power_grasp_plan` plans the same
grasp from the object's exact geometry): at the first control step it reads only the camera's
*visible observed* points (noisy), their centroid (xy) and a high quantile of their heights
(the object's top; it rests on the table, so its height too). It keeps the grasp-ready palm
orientation (palm down, fingers along +x) and runs time-indexed phases (control steps; seconds
from `Settings`, stretched when the arm is slower than `reference_arm_speed`; 128 of the
400 steps at 30 Hz):
  approach  1.5 s  the palm moves in a straight line to above the object: the object's centroid
                   at `grasp_offset_palm` from the palm site (where power_grasp_plan puts an
                   upright apple, cup or brick), the hand's lowest collider `pregrasp_clearance`
                   above the object's top (the hand starts on the reset ladder's rung just clear
                   of the object, a few cm of travel; up to ~30 cm from the highest rung).
  descend   0.75 s the palm goes straight down until the open hand's lowest collider is
                   `table_clearance` above the table (or the palm `palm_clearance` above the
                   object's top, whichever is higher).
  close     1.0 s  the flexing joints (each finger's mcp, pip, dip; the thumb's mcp, ipl) go to
                   `close_fraction` of the way to their upper limits in the first 0.75 s (the
                   others keep their angles), while the palm keeps descending, at most
                   `descent_speed`, as far as the closing hand's lowest collider (measured on the
                   robot's own kinematics) stays `table_clearance` above the table: fingers that
                   curl up let the palm come closer to a low object. power_grasp_plan's
                   closing time; the last 0.25 s let the servos settle on the object.
  lift      1.0 s  the palm rises straight up by `lift` in the first 0.8 s, then holds (slow
                   enough for the caged object to follow; about the first waypoints' lift).
Arm motion: every step, a few IK iterations on the palm site (warm-started from the current
joint targets) towards the commanded palm pose, and the delta action towards the solution.

Frames and units: the observation's points and every position here are in the robot base frame
(the environment's frame: the world shifted down by the table height, z = 0 on the table top),
metres; IK works in the world frame (base frame + robot.BASE_POS); quaternions wxyz; joints in
radians. Action: 22 numbers in [-1, 1]; arm [0:6] delta joint targets
(target += arm_speed_scale * arm_delta_dt * a), hand [6:22] absolute over each joint's range.

What is read: the observed (noisy, visible-masked) points, the current waypoint index and its
change flag, and proprioception from `obs.state` (joint angles, the servo targets, the robot's
own kinematics and collider shapes through the MJX model and data). Nothing about the object's
true pose or shape; the IK template data carries the object's pose only because it is one
mjx.Data, and the robot's sites do not depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dex4d_jax import geometry, robot
from dex4d_jax.benchmark import ik, methods
from dex4d_jax.benchmark.rollout import Controller

# The joints that close the hand, towards their upper limits (envs/robot_scene.py's
# _GRASP_FLEX_JOINTS): each finger's mcp, pip and dip, the thumb's mcp and ipl.
GRASP_FLEX_JOINTS = ("if_mcp", "if_pip", "if_dip", "mf_mcp", "mf_pip", "mf_dip",
                     "rf_mcp", "rf_pip", "rf_dip", "th_mcp", "th_ipl")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings of the robot baselines (`robot_novaflow(**settings)` overrides any field).

    Grasp phase (scripted): phase durations in seconds at `reference_arm_speed`; positions in
    metres. Motion phase: IK iterations and the arm's speed.
    """

    # Seconds of each scripted phase (see the module docstring for what each does and why).
    approach_seconds: float = 1.5
    descend_seconds: float = 0.75
    close_seconds: float = 1.0
    lift_seconds: float = 1.0
    # rad/s the phases' timing assumes of the arm; a slower arm (ap2ap stage 3: 0.125 rad/s)
    # stretches every phase by reference / its speed.
    reference_arm_speed: float = 1.0
    # Object centroid relative to the palm site at the grasp (palm frame x, y; metres):
    # power_grasp_plan's placement of the upright YCB apple, cup_e and foam brick
    # (0.059-0.062, 0.013-0.015).
    grasp_offset_palm: tuple = (0.06, 0.015)
    # The open hand's lowest collider above the object's top before the descent.
    pregrasp_clearance: float = 0.03
    # The hand's lowest collider above the table top (the arm sags 4-7 mm below its targets).
    table_clearance: float = 0.015
    # The palm (its site is the underside of its colliders) above the object's top.
    palm_clearance: float = 0.01
    # Quantile of the visible points' heights taken as the object's top (robust to the noise).
    top_quantile: float = 0.9
    # Fraction of the way from the open hand to the flexing joints' upper limits: 0.65 is
    # power_grasp_plan's (first touch plus a 1 rad squeeze) for the apple, cup_e and brick.
    # Neither 0.65 nor 1.0 held the apple in our trials (it rolls out past the thumb); both
    # held the brick.
    close_fraction: float = 0.65
    # m/s the palm may descend while the hand closes.
    descent_speed: float = 0.1
    # Metres the palm rises in the lift phase.
    lift: float = 0.10
    # IK iterations per control step (scripted grasp, NovaFlow-CL).
    ik_iterations: int = 5
    # IK iterations of NovaFlow's one solve per waypoint.
    plan_iterations: int = 100
    # rad/s, the fastest any arm joint moves in the motion phase (a grasped object must follow).
    max_joint_speed: float = 0.6


class GraspSchedule(NamedTuple):
    """Control step at which each scripted phase ends (exclusive).

    `lift` is the grasp phase's length: the motion phase starts at step `lift`.
    """

    approach: int
    descend: int
    close: int
    lift: int


def grasp_schedule(config, settings: Settings) -> GraspSchedule:
    """The scripted grasp's phase ends from an ap2ap config (ctrl_dt, arm speed) and settings."""
    ctrl_dt = float(config.ctrl_dt)
    arm_speed = float(config.arm_speed_scale) * float(config.arm_delta_dt) / ctrl_dt  # rad/s
    stretch = max(1.0, settings.reference_arm_speed / arm_speed)
    ends, end = [], 0
    for seconds in (settings.approach_seconds, settings.descend_seconds, settings.close_seconds,
                    settings.lift_seconds):
        end += max(1, math.ceil(seconds * stretch / ctrl_dt - 1e-9))
        ends.append(end)
    return GraspSchedule(*ends)


class ScriptedGrasp(NamedTuple):
    """The scripted grasp's per-trial plan and state (base frame, metres).

    start: [B, 3] palm position at the first step (its commanded pose); xy: [B, 2] palm xy of
    the grasp; z_pre: [B] palm height above the object; z_floor: [B] lowest palm height the
    object's top allows; z_palm: [B] the palm height commanded last in descend/close;
    hand_open: [B, 16] hand targets at the first step.
    """

    start: jax.Array
    xy: jax.Array
    z_pre: jax.Array
    z_floor: jax.Array
    z_palm: jax.Array
    hand_open: jax.Array


class Carry(NamedTuple):
    """A robot baseline's state across control steps.

    grasp: ScriptedGrasp, or the grasp policy's carry; grasping: [B] bool, still in the grasp
    phase; hand_lock: [B, 16] the locked hand's actions; q_goal: [B, 6] NovaFlow: the path's
    end, NovaFlow-CL: the last IK solution (radians); q_start: [B, 6] the path's start;
    steps: [B] the path's length and done: [B] steps taken on it (control steps).
    """

    grasp: Any
    grasping: jax.Array
    hand_lock: jax.Array
    q_goal: jax.Array
    q_start: jax.Array
    steps: jax.Array
    done: jax.Array


def _smoothstep(u: jax.Array) -> jax.Array:
    u = jnp.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _half_height_fn(mj_model: mujoco.MjModel, geoms: np.ndarray):
    """`fn(geom_xmat [G, 3, 3]) -> [G]`: how far each geom reaches below its centre (metres).

    Exact for boxes, capsules and spheres (the LEAP hand's colliders are boxes), the bounding
    sphere otherwise.
    """
    kind = mj_model.geom_type[geoms]
    size = jnp.asarray(mj_model.geom_size[geoms], jnp.float32)
    rbound = jnp.asarray(mj_model.geom_rbound[geoms], jnp.float32)
    is_box = jnp.asarray(kind == mujoco.mjtGeom.mjGEOM_BOX)
    is_capsule = jnp.asarray(kind == mujoco.mjtGeom.mjGEOM_CAPSULE)
    is_sphere = jnp.asarray(kind == mujoco.mjtGeom.mjGEOM_SPHERE)

    def fn(xmat):
        axis_z = jnp.abs(xmat[:, 2, :])  # [G, 3] |world z| along each geom axis
        box = jnp.sum(axis_z * size, axis=-1)
        capsule = axis_z[:, 2] * size[:, 1] + size[:, 0]
        return jnp.where(is_box, box, jnp.where(is_capsule, capsule,
                                                jnp.where(is_sphere, size[:, 0], rbound)))

    return fn


def _visible_top_and_centroid(points: jax.Array, visible: jax.Array, quantile: float,
                              fallback_xy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Centroid xy [2] and top height [] of one trial's visible observed points [N, 3].

    Nothing visible: the workspace centre and a 5 cm tall object.
    """
    count = jnp.sum(visible)
    weights = visible.astype(points.dtype)
    centroid = jnp.sum(points[:, :2] * weights[:, None], axis=0) / jnp.maximum(count, 1)
    heights = jnp.sort(jnp.where(visible, points[:, 2], -jnp.inf))[::-1]  # highest first
    rank = jnp.floor((1.0 - quantile) * jnp.maximum(count - 1, 0)).astype(jnp.int32)
    top = heights[rank]
    seen = count > 0
    return jnp.where(seen, centroid, fallback_xy), jnp.where(seen, top, 0.05)


def robot_novaflow(env, closed_loop: bool, grasp_controller: Controller | None = None,
                   **settings) -> Controller:
    """NovaFlow (open loop) or NovaFlow-CL on the ap2ap robot environment.

    Args:
      env: the benchmark's ap2ap environment (built from
        `rollout.env_arguments(..., "ap2ap", ...)`).
      closed_loop: True for NovaFlow-CL (re-estimate and re-solve every step), False for
        NovaFlow (one estimate and one planned path per waypoint).
      grasp_controller: a robot policy Controller that grasps and lifts; it acts until the
        first waypoint has been reached. None: the scripted, perception-based grasp (the module
        docstring), which a results table must name as such.
      **settings: overrides of `Settings` fields.

    Returns:
      A Controller: init(params, obs, keys) -> Carry; act(params, obs, carry, keys) ->
      (action [B, 22] in [-1, 1], Carry). `params` are the grasp policy's (ignored without one).
    """
    cfg = Settings(**settings)
    config = env.config
    ctrl_dt = float(config.ctrl_dt)
    arm_step = float(config.arm_speed_scale) * float(config.arm_delta_dt)  # rad per step at a=1
    # The motion phase's largest action: max_joint_speed as a fraction of the arm's step.
    motion_limit = min(1.0, cfg.max_joint_speed * ctrl_dt / arm_step)
    schedule = grasp_schedule(config, cfg)
    scripted = grasp_controller is None

    mj_model = env.mj_model
    palm_site = mj_model.site(robot.PALM_SITE).id
    flange_site = mj_model.site(robot.FLANGE_SITE).id
    ranges = robot.joint_ranges(mj_model)
    hand_low = jnp.asarray(ranges[robot.NUM_ARM:, 0], jnp.float32)
    hand_high = jnp.asarray(ranges[robot.NUM_ARM:, 1], jnp.float32)
    flex = np.zeros(robot.NUM_HAND, bool)
    flex[[robot.HAND_JOINTS.index(n) for n in GRASP_FLEX_JOINTS]] = True
    flex = jnp.asarray(flex)
    hand_geoms = np.flatnonzero(((mj_model.geom_contype & robot.HAND_COLLISION_BIT) != 0)
                                & robot.robot_geoms(mj_model))
    half_height = _half_height_fn(mj_model, hand_geoms)
    # The grasp-ready palm orientation (world frame), kept through the scripted grasp.
    data = mujoco.MjData(mj_model)
    data.qpos[:] = mj_model.key(robot.GRASP_READY_KEY).qpos
    mujoco.mj_kinematics(mj_model, data)
    palm_quat = np.zeros(4)
    mujoco.mju_mat2Quat(palm_quat, data.site_xmat[palm_site])
    palm_quat = jnp.asarray(palm_quat, jnp.float32)
    palm_mat = geometry.quat_to_mat(palm_quat)
    offset_world = palm_mat[:2, :2] @ jnp.asarray(cfg.grasp_offset_palm, jnp.float32)
    base = jnp.asarray(robot.BASE_POS, jnp.float32)
    center = jnp.asarray(env.workspace_center, jnp.float32)

    def models(obs):
        return jax.vmap(env.episode_model)(obs.state.info)

    def solve(obs, site, pos_base, quat, q0, iterations):
        """[B, 6] IK solutions for site poses (base frame positions [B, 3], quats [B, 4])."""
        def one(model, data, pos, q, start):
            return ik.solve_ik(model, data, site, pos + base, q, start,
                               iterations=iterations).qpos
        return jax.vmap(one)(models(obs), obs.state.pipeline_state, pos_base, quat, q0)

    def arm_action(q_des, target_arm, limit):
        return jnp.clip((q_des - target_arm) / arm_step, -limit, limit)

    def hand_action(hand_target):
        return jnp.clip(2.0 * (hand_target - hand_low) / (hand_high - hand_low) - 1.0, -1.0, 1.0)

    def lowest_hand_point(obs):
        """[B] world z of the hand's lowest collider, minus the palm site's z (metres)."""
        data = obs.state.pipeline_state
        reach = jax.vmap(half_height)(data.geom_xmat[:, hand_geoms])
        low = data.geom_xpos[:, hand_geoms, 2] - reach
        return jnp.min(low, axis=-1) - data.site_xpos[:, palm_site, 2]

    # ---- Scripted grasp --------------------------------------------------------------------

    def grasp_init(obs) -> ScriptedGrasp:
        targets = obs.state.info["target"]
        pos, _ = jax.vmap(ik.site_pose, in_axes=(0, 0, None, 0))(
            models(obs), obs.state.pipeline_state, palm_site, targets[:, : robot.NUM_ARM])
        start = pos - base
        centroid, top = jax.vmap(_visible_top_and_centroid, in_axes=(0, 0, None, None))(
            obs.current, obs.visible, cfg.top_quantile, center)
        below = lowest_hand_point(obs)  # < 0: the open hand reaches below the palm site
        z_floor = top + cfg.palm_clearance
        z_pre = jnp.maximum(top + cfg.pregrasp_clearance - below, z_floor)
        z_down = jnp.maximum(cfg.table_clearance - below, z_floor)
        return ScriptedGrasp(start, centroid - offset_world, z_pre, z_floor,
                             jnp.minimum(z_down, z_pre), targets[:, robot.NUM_ARM:])

    def grasp_act(obs, plan: ScriptedGrasp) -> tuple[jax.Array, ScriptedGrasp]:
        t = obs.step.astype(jnp.float32)
        a_end, d_end, c_end, _ = (float(x) for x in schedule)
        pre = jnp.concatenate([plan.xy, plan.z_pre[:, None]], -1)
        # approach: straight line from the start to above the object.
        u = _smoothstep(t / a_end)
        pos = plan.start + u * (pre - plan.start)
        # descend: straight down to the open hand's lowest allowed height.
        u = _smoothstep((t - a_end) / (d_end - a_end))
        z_desc = plan.z_pre + u * (plan.z_palm - plan.z_pre)
        # close: lower the palm as far as the closing hand's lowest collider allows.
        z_allowed = jnp.maximum(cfg.table_clearance - lowest_hand_point(obs), plan.z_floor)
        z_close = jnp.minimum(plan.z_palm, jnp.maximum(z_allowed,
                                                       plan.z_palm - cfg.descent_speed * ctrl_dt))
        in_descend = (t >= a_end) & (t < d_end)
        in_close = (t >= d_end) & (t < c_end)
        z_palm = jnp.where(in_close, z_close, plan.z_palm)
        # lift: straight up from where the close left the palm.
        u = _smoothstep((t - c_end) / (0.8 * (schedule.lift - c_end)))
        z_lift = plan.z_palm + cfg.lift * u
        z = jnp.where(in_descend, z_desc, jnp.where(in_close, z_palm, z_lift))
        pos = jnp.where(t < a_end, pos, jnp.concatenate([plan.xy, z[:, None]], -1))

        targets = obs.state.info["target"]
        target_arm = targets[:, : robot.NUM_ARM]
        batch = target_arm.shape[0]
        q_des = solve(obs, palm_site, pos, jnp.broadcast_to(palm_quat, (batch, 4)), target_arm,
                      cfg.ik_iterations)
        s = cfg.close_fraction * _smoothstep((t - d_end) / (0.75 * (c_end - d_end)))
        closed = jnp.where(flex, hand_high, plan.hand_open)
        hand = plan.hand_open + s * (closed - plan.hand_open)
        action = jnp.concatenate([arm_action(q_des, target_arm, 1.0), hand_action(hand)], -1)
        return action, plan._replace(z_palm=z_palm)

    # ---- Motion phase ------------------------------------------------------------------------

    def flange_goal(obs, q_start, iterations):
        """[B, 6] arm joints that move the flange as the estimated object motion asks."""
        rot, trans = methods.estimate_motion(obs)
        data = obs.state.pipeline_state
        pos, quat = jax.vmap(ik.site_pose, in_axes=(0, 0, None, 0))(
            models(obs), data, flange_site, data.qpos[:, : robot.NUM_ARM])
        pos = pos - base
        goal_pos = jnp.einsum("bij,bj->bi", rot, pos) + trans
        goal_quat = geometry.quat_mul(geometry.mat_to_quat(rot), quat)
        return solve(obs, flange_site, goal_pos, goal_quat, q_start, iterations)

    def motion(obs, carry: Carry, started):
        """The arm action [B, 6] of the motion phase and the updated path fields."""
        target_arm = obs.state.info["target"][:, : robot.NUM_ARM]
        moving = ~carry.grasping
        if closed_loop:
            warm = jnp.where(started[:, None], target_arm, carry.q_goal)
            q_goal = jax.lax.cond(jnp.any(moving),
                                  lambda: flange_goal(obs, warm, cfg.ik_iterations),
                                  lambda: carry.q_goal)
            return arm_action(q_goal, target_arm, motion_limit), carry._replace(q_goal=q_goal)
        replan = moving & (started | obs.changed)
        q_new = jax.lax.cond(jnp.any(replan),
                             lambda: flange_goal(obs, target_arm, cfg.plan_iterations),
                             lambda: carry.q_goal)
        per_step = motion_limit * arm_step
        steps_new = jnp.maximum(jnp.ceil(jnp.max(jnp.abs(q_new - target_arm), -1) / per_step),
                                1.0)
        q_goal = jnp.where(replan[:, None], q_new, carry.q_goal)
        q_start = jnp.where(replan[:, None], target_arm, carry.q_start)
        steps = jnp.where(replan, steps_new, carry.steps)
        done = jnp.where(replan, 0.0, carry.done) + 1.0
        frac = jnp.minimum(done / steps, 1.0)[:, None]
        q_path = q_start + frac * (q_goal - q_start)
        action = arm_action(q_path, target_arm, motion_limit)
        return action, carry._replace(q_goal=q_goal, q_start=q_start, steps=steps, done=done)

    # ---- The controller ------------------------------------------------------------------------

    def init(params, obs, keys):
        batch = obs.current.shape[0]
        grasp = grasp_init(obs) if scripted else grasp_controller.init(params, obs, keys)
        target_arm = obs.state.info["target"][:, : robot.NUM_ARM]
        zeros = jnp.zeros(batch)
        return Carry(grasp, jnp.ones(batch, bool), jnp.zeros((batch, robot.NUM_HAND)),
                     target_arm, target_arm, zeros, zeros)

    def act(params, obs, carry: Carry, keys):
        targets = obs.state.info["target"]
        if scripted:
            grasping = carry.grasping & (obs.step < schedule.lift)
        else:
            grasping = carry.grasping & (obs.waypoint <= 0)
        started = carry.grasping & ~grasping
        hand_lock = jnp.where(started[:, None], hand_action(targets[:, robot.NUM_ARM:]),
                              carry.hand_lock)
        carry = carry._replace(grasping=grasping, hand_lock=hand_lock)

        def grasp_branch():
            if scripted:
                return grasp_act(obs, carry.grasp)
            return grasp_controller.act(params, obs, carry.grasp, keys)

        def idle_branch():
            return jnp.zeros_like(targets), carry.grasp

        grasp_action, grasp_carry = jax.lax.cond(jnp.any(grasping), grasp_branch, idle_branch)
        arm, carry = motion(obs, carry._replace(grasp=grasp_carry), started)
        action = jnp.where(grasping[:, None], grasp_action,
                           jnp.concatenate([arm, carry.hand_lock], -1))
        return jnp.clip(action, -1.0, 1.0), carry

    return Controller(init, act)
