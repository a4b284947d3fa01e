"""The closed loop on the robot computer: tracked points -> paired points -> policy -> commands.

Every control tick (`Controller.tick`):

1. The point source gives the tracked current points (world frame, [N, 3]) with their
   visibility and a timestamp. Stale (older than `max_age_s`) or empty (fewer than
   `min_visible` visible points) tracking stops the robot where it is (`robot.hold()`); after
   `patience` such ticks in a row the run ends.
2. `d_t` is the mean distance between current and target points over the points visible in
   both (Eq. 4); when it falls below the threshold the target moves to the next frame of the
   3D point track, until the last (`GoalAdvancer`).
3. At most `num_points` (64) points visible in both frames are paired `[p_i ; p_bar_i]` in the
   policy's point frame, the rest of the slots hidden; which points fill the slots is a fixed
   per-run order, so a point keeps its slot while it stays visible (`PointSelector`).
4. The policy's action becomes commands (`ActionMapper`: arm joint targets integrate the arm
   deltas, hand targets map the absolute actions onto the joint ranges; or a twist), which
   `SafetyGuard` clamps to the joint limits and bounds per tick.

Nothing here imports JAX: numpy and onnxruntime (through deploy.policy) only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dex4d_jax.deploy.policy import OnnxPolicy, PolicyInfo

# ----------------------------------------------------------------------------------------------
# Interfaces a robot and a tracker implement.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RobotState:
    """What the policy reads from the robot: joint positions and velocities (policy order)."""

    joint_pos: np.ndarray
    joint_vel: np.ndarray


@dataclasses.dataclass
class PointFrame:
    """One tracker reading: points [N, 3] in the world frame, visible [N] bool, timestamp (s)."""

    points: np.ndarray
    visible: np.ndarray
    timestamp: float


class Robot(Protocol):
    """A robot the runtime drives. `deploy.sim` has native-MuJoCo ones.

    A real xArm6 + LEAP hand plugs in here: `observe` reads the 22 joint positions and
    velocities in `dex4d_jax.robot.JOINT_NAMES` order (xArm SDK joint states in radians; the
    LEAP hand's Dynamixel positions mapped to the MJCF's joint angles; the motor order of the
    LEAP hand is `robot.LEAP_MOTOR_IDS`), `command` sends 22 position targets (xArm servo mode,
    `set_servo_angle_j`, and the hand's goal positions), `hold` re-sends the last targets (or
    the measured positions), and `wait` sleeps until the next control tick at the policy's
    rate. See docs/deploy.md.
    """

    def observe(self) -> RobotState:
        """The current joint state."""

    def command(self, command: np.ndarray) -> None:
        """Sends joint targets (or, for the wrench task, a twist)."""

    def hold(self) -> None:
        """Stops in place."""

    def wait(self) -> None:
        """Blocks until the next control tick (a simulation advances its physics here)."""


class PointSource(Protocol):
    """The online tracker: the object's tracked points, in the order of the 3D point track."""

    def read(self) -> PointFrame:
        """The latest tracked points."""


# ----------------------------------------------------------------------------------------------
# Pieces of the loop.
# ----------------------------------------------------------------------------------------------


def mean_visible_distance(current: np.ndarray, target: np.ndarray, visible: np.ndarray
                          ) -> float | None:
    """Mean |current - target| over visible points; None (never NaN) when none is visible."""
    if not np.any(visible):
        return None
    return float(np.mean(np.linalg.norm(current[visible] - target[visible], axis=-1)))


class GoalAdvancer:
    """Eq. 4: the target frame of a 3D point track advances when d_t drops below a threshold.

    Args:
      points: [T, N, 3] the track (world frame); frame 0 is where the object starts.
      visible: [T, N] bool.
      threshold: advance when d_t < threshold (metres).
      start: the first target frame (1: frame 0 is the start; a one-frame track targets 0).
    """

    def __init__(self, points: np.ndarray, visible: np.ndarray, threshold: float, start: int = 1):
        points = np.asarray(points, np.float64)
        visible = np.asarray(visible, bool)
        if points.ndim != 3 or points.shape[-1] != 3 or visible.shape != points.shape[:2]:
            raise ValueError(f"A 3D point track is points [T, N, 3] with visible [T, N]; got "
                             f"{points.shape} and {visible.shape}.")
        if not np.all(np.isfinite(points[visible])):
            raise ValueError("The point track holds NaN or infinity at visible points.")
        self.points, self.visible, self.threshold = points, visible, float(threshold)
        self.index = min(start, len(points) - 1)

    @property
    def last(self) -> int:
        """Index of the final frame."""
        return len(self.points) - 1

    @property
    def at_last(self) -> bool:
        """Whether the target is the track's final frame."""
        return self.index == self.last

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        """The current target points [N, 3] and their visibility [N]."""
        return self.points[self.index], self.visible[self.index]

    def update(self, current: np.ndarray, current_visible: np.ndarray) -> float | None:
        """d_t to the current target, advancing the target first if it was reached."""
        target, target_visible = self.target()
        d = mean_visible_distance(current, target, current_visible & target_visible)
        if d is not None and d < self.threshold and not self.at_last:
            self.index += 1
            target, target_visible = self.target()
            d = mean_visible_distance(current, target, current_visible & target_visible)
        return d


class PointSelector:
    """Fills the policy's `num_points` slots with points visible in both frames.

    A fixed random order over the N track points (seeded) decides which visible points take
    the slots, so a point keeps its slot while it stays visible and the set does not flicker.
    """

    def __init__(self, num_tracked: int, num_points: int, seed: int = 0):
        self.order = np.random.default_rng(seed).permutation(num_tracked)
        self.num_points = num_points

    def __call__(self, current: np.ndarray, target: np.ndarray, visible: np.ndarray,
                 origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(paired points [P, 6] in the policy frame, mask [P] bool); hidden slots are zeros."""
        chosen = self.order[visible[self.order]][: self.num_points]
        paired = np.zeros((self.num_points, 6), np.float32)
        mask = np.zeros(self.num_points, bool)
        k = len(chosen)
        paired[:k, :3] = current[chosen] - origin
        paired[:k, 3:] = target[chosen] - origin
        mask[:k] = True
        return paired, mask


class ActionMapper:
    """Policy actions to robot commands, from the policy's `action_mapping` metadata.

    "arm_delta_hand_absolute" (the robot): arm targets += arm_step * a[:num_arm]; hand targets
    = low + (a + 1) / 2 * (high - low); all clipped to the joint ranges. "twist" (ap2ap_wrench):
    [a[:3] * max_lin_speed, a[3:] * max_ang_speed].
    """

    def __init__(self, mapping: dict):
        self.kind = mapping["kind"]
        self.mapping = mapping
        if self.kind == "arm_delta_hand_absolute":
            self.num_arm = int(mapping["num_arm"])
            self.arm_step = float(mapping["arm_step"])
            self.low = np.asarray(mapping["joint_low"], np.float64)
            self.high = np.asarray(mapping["joint_high"], np.float64)
        elif self.kind == "twist":
            self.scale = np.array([mapping["max_lin_speed"]] * 3 + [mapping["max_ang_speed"]] * 3)
        else:
            raise ValueError(f"Unknown action mapping {self.kind!r}.")

    def __call__(self, action: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """The command for `action` given the previous command (joint targets)."""
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        if self.kind == "twist":
            return a * self.scale
        arm = previous[: self.num_arm] + self.arm_step * a[: self.num_arm]
        lo, hi = self.low[self.num_arm:], self.high[self.num_arm:]
        hand = lo + 0.5 * (a[self.num_arm:] + 1.0) * (hi - lo)
        return np.clip(np.concatenate([arm, hand]), self.low, self.high)


class SafetyGuard:
    """The last check before a command leaves: finite, within limits, bounded change per tick.

    Args:
      low, high: command limits (joint ranges; twist bounds).
      max_step: largest change of any entry per tick (None: no bound).
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, max_step: float | None):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.max_step = max_step

    def __call__(self, command: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """The guarded command; a non-finite command is refused (ValueError)."""
        command = np.asarray(command, np.float64)
        if not np.all(np.isfinite(command)):
            raise ValueError(f"Refusing a non-finite command {command}.")
        if previous is not None and self.max_step is not None:
            command = np.clip(command, previous - self.max_step, previous + self.max_step)
        return np.clip(command, self.low, self.high)


def guard_for(info: PolicyInfo, max_joint_step: float | None) -> SafetyGuard:
    """The SafetyGuard of a policy's action mapping."""
    m = info.action_mapping
    if m["kind"] == "twist":
        bound = np.array([m["max_lin_speed"]] * 3 + [m["max_ang_speed"]] * 3)
        return SafetyGuard(-bound, bound, None)
    return SafetyGuard(np.asarray(m["joint_low"]), np.asarray(m["joint_high"]), max_joint_step)


# ----------------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    """What a closed-loop run did.

    Attributes:
      status: "success" (final target held), "timeout", or "stopped: <why>".
      steps: control ticks run.
      distances: d_t per tick (None where no point was visible).
      target_index: track frame targeted per tick.
      held: ticks the final target was held at the end.
    """

    status: str
    steps: int
    distances: list
    target_index: list
    held: int

    @property
    def success(self) -> bool:
        """Whether the final target was reached and held."""
        return self.status == "success"

    def as_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


class Controller:
    """Runs an OnnxPolicy on a Robot towards the frames of a 3D point track.

    Args:
      policy: the exported student.
      robot: the Robot.
      points: the PointSource (tracked points in the track's point order).
      track_points, track_visible: the 3D point track [T, N, 3], [T, N] (world frame).
      threshold: Eq. 4's advance threshold (default: the policy's success threshold).
      success_threshold: final-frame d_t that counts as reached (default: the policy's).
      hold_steps: ticks the final target must be held (default: the policy's).
      max_joint_step: bound on any joint target's change per tick (radians).
      max_age_s: tracking older than this is stale.
      min_visible: fewer visible points than this is empty tracking.
      patience: stale/empty ticks in a row before the run stops.
      clock: time source for staleness (the simulation's clock in simulation).
      seed: the PointSelector's order.
    """

    def __init__(self, policy: OnnxPolicy, robot: Robot, points: PointSource,
                 track_points: np.ndarray, track_visible: np.ndarray,
                 threshold: float | None = None, success_threshold: float | None = None,
                 hold_steps: int | None = None, max_joint_step: float | None = 0.2,
                 max_age_s: float = 0.2, min_visible: int = 3, patience: int = 10,
                 clock: Callable[[], float] = time.monotonic, seed: int = 0):
        info = policy.info
        self.policy, self.robot, self.points, self.clock = policy, robot, points, clock
        self.goals = GoalAdvancer(track_points, track_visible,
                                  info.success_threshold if threshold is None else threshold)
        self.success_threshold = (info.success_threshold if success_threshold is None
                                  else success_threshold)
        self.hold_steps = info.hold_steps if hold_steps is None else hold_steps
        self.mapper = ActionMapper(info.action_mapping)
        self.guard = guard_for(info, max_joint_step)
        self.selector = PointSelector(track_points.shape[1], info.num_points, seed)
        self.origin = info.points_origin_in_world
        self.max_age_s, self.min_visible, self.patience = max_age_s, min_visible, patience
        self.last_action = np.zeros(policy.action_size, np.float32)
        self.command: np.ndarray | None = None
        self.bad_ticks = 0
        self.held = 0

    def _hold(self, why: str) -> str | None:
        self.robot.hold()
        self.bad_ticks += 1
        return f"stopped: {why}" if self.bad_ticks >= self.patience else None

    def tick(self) -> tuple[float | None, str | None]:
        """One control tick: (d_t, a final status or None to go on)."""
        frame = self.points.read()
        if frame.points.shape != self.goals.points.shape[1:] or frame.visible.shape != \
                frame.points.shape[:1]:
            raise ValueError(f"The tracker gave points {frame.points.shape} / visible "
                             f"{frame.visible.shape}; the track has {self.goals.points.shape[1]} "
                             "points.")
        age = self.clock() - frame.timestamp
        visible = np.asarray(frame.visible, bool) & np.all(np.isfinite(frame.points), axis=-1)
        if age > self.max_age_s:
            return None, self._hold(f"tracking is stale ({age:.2f} s old)")
        if visible.sum() < self.min_visible:
            return None, self._hold(f"{int(visible.sum())} tracked points visible")
        d = self.goals.update(frame.points, visible)
        target, target_visible = self.goals.target()
        both = visible & target_visible
        if d is None or both.sum() < self.min_visible:
            return d, self._hold("no point visible in both the tracking and the target frame")
        self.bad_ticks = 0
        if self.goals.at_last and d < self.success_threshold:
            self.held += 1
            if self.held >= self.hold_steps:
                return d, "success"
        else:
            self.held = 0
        state = self.robot.observe()
        paired, mask = self.selector(frame.points, target, both, self.origin)
        out = self.policy(state.joint_pos, state.joint_vel, self.last_action, paired, mask)
        self.last_action = out["action"].astype(np.float32)
        previous = self.command
        if previous is None and self.mapper.kind != "twist":
            previous = np.asarray(state.joint_pos, np.float64)  # start from where the robot is
        self.command = self.guard(self.mapper(self.last_action, previous), previous)
        self.robot.command(self.command)
        return d, None

    def run(self, max_steps: int, on_tick: Callable[[int, float | None], None] | None = None
            ) -> Report:
        """Ticks until success, a stop, or `max_steps`."""
        distances, indices = [], []
        status = "timeout"
        for step in range(max_steps):
            d, final = self.tick()
            distances.append(d)
            indices.append(self.goals.index)
            if on_tick is not None:
                on_tick(step, d)
            if final is not None:
                status = final
                break
            self.robot.wait()
        return Report(status, len(distances), distances, indices, self.held)
