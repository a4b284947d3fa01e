"""The closed loop on the robot computer: tracked points -> paired points -> policy -> commands.

Every control tick (`Controller.tick`):

1. The point source gives the tracked current points (world frame, [N, 3]) with their
   visibility and a timestamp on the controller's clock. Stale (older than `max_age_s`, ahead
   of the clock, or not finite) or empty (fewer than `min_visible` visible points) tracking
   stops the robot where it is (`robot.hold()`); after `patience` such ticks in a row the run
   ends.
2. `d_t` is the mean distance between current and target points over the points visible in
   both (Eq. 4); when it falls below the threshold the target moves to the next frame of the
   3D point track, until the last (`GoalAdvancer`).
3. At most `num_points` (64) points visible in both frames are paired `[p_i ; p_bar_i]` in the
   policy's point frame, the rest of the slots hidden; which points fill the slots is a fixed
   per-run order, so a point keeps its slot while it stays visible (`PointSelector`).
4. The policy's action becomes commands (`ActionMapper`: arm joint targets integrate the arm
   deltas, hand targets map the absolute actions onto the joint ranges; or a twist), which
   `SafetyGuard` clamps to the joint limits and bounds per tick.

Any fault inside a tick (the point source, the policy or the robot raises, a non-finite or
misshapen value comes back from any of them, the guard finds no safe command) holds the robot
and ends the run with a status naming the reason; see `Controller` and docs/deploy.md, "Faults".

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
    """The online tracker: the object's tracked points, in the order of the 3D point track.

    `PointFrame.timestamp` is the capture time on the controller's clock (`Controller(clock=)`:
    `time.monotonic` unless given; the simulation's time in simulation). A stamp from another
    clock (`time.time()` against `time.monotonic()`) lands far in the future or the past and
    every frame is stale.
    """

    def read(self) -> PointFrame:
        """The latest tracked points (points that are NaN count as not visible)."""


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

    The command is clipped to the intersection of the limits and the box `max_step` around
    `previous` (the previous command; the measured joint positions before the first). That
    intersection is empty only where `previous` lies more than `max_step` outside a limit. Every
    command is within the limits, so this happens only on the first one, on a robot that starts
    that far outside its range, and then no command respects both the limits and the per-tick
    bound: the guard refuses (the run does not start) rather than break one of them. Jumping to
    the limit would break the bound; walking back from outside would command targets outside
    the limits on a robot whose reading is suspect in the first place (a joint that far out
    points to a calibration, offset or joint-order error, e.g. the LEAP hand's pi offset, more
    than to a real pose). A robot at most `max_step` outside (a joint resting on its stop,
    sensor noise) is brought within range by the first command, within the bound.

    Args:
      low, high: [C] command limits (joint ranges in radians; twist bounds in m/s and rad/s).
      max_step: largest change of any entry per tick (None: no bound).
      names: [C] entry names for error messages (None: indices).
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, max_step: float | None,
                 names: list[str] | None = None):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.max_step = max_step
        self.names = names

    def __call__(self, command: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """The guarded command.

        Args:
          command: [C] the command to send.
          previous: [C] the previous command (the measured joint positions before the first);
            None: no per-tick bound.

        Returns:
          [C] `command` clipped to the limits and to `max_step` from `previous`.

        Raises:
          ValueError: `command` or `previous` holds NaN or infinity ("non-finite"), or an entry
            of `previous` is more than `max_step` outside its limits ("outside its range").
        """
        command = np.asarray(command, np.float64)
        if not np.all(np.isfinite(command)):
            raise ValueError(f"Refusing a non-finite command {command}.")
        low, high = self.low, self.high
        if previous is not None and self.max_step is not None:
            previous = np.asarray(previous, np.float64)
            if not np.all(np.isfinite(previous)):
                raise ValueError(f"Refusing to bound a command from a non-finite previous one "
                                 f"{previous}.")
            low = np.maximum(low, previous - self.max_step)
            high = np.minimum(high, previous + self.max_step)
            if np.any(low > high):
                k = int(np.argmax(low > high))
                name = f"{k} ({self.names[k]})" if self.names is not None else str(k)
                raise ValueError(
                    f"entry {name} is at {previous[k]:.4f}, more than max_step {self.max_step} "
                    f"outside its range [{self.low[k]:.4f}, {self.high[k]:.4f}]: no command is "
                    "within both the range and the per-tick bound; bring it within range "
                    "before starting.")
        return np.clip(command, low, high)


def guard_for(info: PolicyInfo, max_joint_step: float | None) -> SafetyGuard:
    """The SafetyGuard of a policy's action mapping (twists: no per-tick bound)."""
    m = info.action_mapping
    if m["kind"] == "twist":
        bound = np.array([m["max_lin_speed"]] * 3 + [m["max_ang_speed"]] * 3)
        return SafetyGuard(-bound, bound, None, list(info.joint_names))
    return SafetyGuard(np.asarray(m["joint_low"]), np.asarray(m["joint_high"]), max_joint_step,
                       list(info.joint_names))


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


class _TickError(Exception):
    """A tick cannot go on; the message is the reason the run's status gives."""


class Controller:
    """Runs an OnnxPolicy on a Robot towards the frames of a 3D point track.

    Faults. Whatever goes wrong inside a tick holds the robot (`robot.hold()`) and ends the run
    with status "stopped: <reason>": the point source, the policy or the robot raises ("point
    source raised ValueError: ...", "policy raised ...", "robot.observe raised ...",
    "robot.command raised ...", also `robot.wait` between ticks), gives a frame of the wrong
    shape or type ("point source gave points ..."), reports joints of the wrong shape or not
    finite ("robot reported non-finite joints ..."), or the policy returns an action of the
    wrong shape or with NaN or infinity ("policy returned a non-finite action ..."; refused,
    never clipped to a full-speed command); so does the guard finding no safe command
    (`SafetyGuard`: a robot starting more than `max_joint_step` outside its limits). Any other
    exception inside the tick is one too ("controller raised ..."); KeyboardInterrupt and
    SystemExit hold the robot and propagate. A stopped controller only holds from then on.

    Tracking is usable when its timestamp is finite, between `max_future_s` ahead of and
    `max_age_s` behind `clock()`, and at least `min_visible` points are visible (finite and
    marked visible) now and in both the tracking and the target frame. Otherwise the tick holds
    the robot and sends nothing, and `patience` such ticks in a row end the run. The point
    source must stamp with `clock`: a stamp from any other clock (`time.time()` against
    `time.monotonic()`, a simulation's time against a wall clock) lies far ahead or behind, so
    every frame is stale and the run stops after `patience` ticks.

    Consecutive counts (the success hold, `patience`) count ticks on which their condition was
    measured and true; any other tick restarts them: the success hold restarts on every tick
    whose d_t is not measured (unusable tracking), `patience` on every usable tick.

    Args:
      policy: the exported student (an `OnnxPolicy`, or any object with its `info`,
        `action_size` and call).
      robot: the Robot.
      points: the PointSource (tracked points in the track's point order).
      track_points, track_visible: the 3D point track [T, N, 3], [T, N] (world frame, metres).
      threshold: Eq. 4's advance threshold (metres; default: the policy's success threshold).
      success_threshold: final-frame d_t that counts as reached (metres; default: the
        policy's).
      hold_steps: ticks in a row the final target must be held (default: the policy's).
      max_joint_step: bound on any joint target's change per tick (radians), from the measured
        joint positions on the first command.
      max_age_s: tracking older than this is stale (seconds).
      max_future_s: tracking stamped more than this ahead of `clock()` is stale (seconds).
      min_visible: fewer visible points than this is empty tracking.
      patience: unusable-tracking ticks in a row before the run stops.
      clock: the controller's clock (seconds), the one point sources stamp with
        (`time.monotonic`; the simulation's clock in simulation).
      seed: the PointSelector's order.
    """

    def __init__(self, policy: OnnxPolicy, robot: Robot, points: PointSource,
                 track_points: np.ndarray, track_visible: np.ndarray,
                 threshold: float | None = None, success_threshold: float | None = None,
                 hold_steps: int | None = None, max_joint_step: float | None = 0.2,
                 max_age_s: float = 0.2, max_future_s: float = 0.01, min_visible: int = 3,
                 patience: int = 10, clock: Callable[[], float] = time.monotonic,
                 seed: int = 0):
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
        self.max_age_s, self.max_future_s = max_age_s, max_future_s
        self.min_visible, self.patience = min_visible, patience
        self.last_action = np.zeros(policy.action_size, np.float32)
        self.command: np.ndarray | None = None
        self.bad_ticks = 0  # unusable-tracking ticks in a row
        self.held = 0  # ticks in a row with the final target reached
        self.distance: float | None = None  # this tick's d_t
        self.stopped: str | None = None  # the status once a tick stopped the run
        # This tick's tracked points [N, 3] (world) and their visibility [N], None before the
        # first readable frame (what a video of the run draws).
        self.frame: tuple[np.ndarray, np.ndarray] | None = None

    def tick(self) -> tuple[float | None, str | None]:
        """One control tick.

        Returns:
          (d_t in metres, None where not measured; the final status, None to go on). Never
          raises an Exception: a fault holds the robot and is the status "stopped: <reason>".
        """
        if self.stopped is not None:
            self._try_hold()
            return None, self.stopped
        self.distance = None
        final = self._guarded(self._tick)
        return self.distance, final

    def run(self, max_steps: int, on_tick: Callable[[int, float | None], None] | None = None
            ) -> Report:
        """Ticks until success, a stop, or `max_steps`; `robot.wait()` between ticks.

        Args:
          max_steps: most ticks.
          on_tick: called after each tick with (tick index, d_t); what it raises holds the
            robot and propagates.

        Returns:
          The Report ("success", "timeout" or "stopped: <reason>").
        """
        distances, indices = [], []
        status = "timeout"
        try:
            for step in range(max_steps):
                d, final = self.tick()
                distances.append(d)
                indices.append(self.goals.index)
                if on_tick is not None:
                    on_tick(step, d)
                if final is None:
                    final = self._guarded(lambda: self._call("robot.wait", self.robot.wait))
                if final is not None:
                    status = final
                    break
        except BaseException:
            self._try_hold()
            raise
        return Report(status, len(distances), distances, indices, self.held)

    # -- one tick -------------------------------------------------------------------------------

    def _tick(self) -> str | None:
        """The tick's work; raises _TickError (or anything else) on a fault."""
        points, visible, timestamp = self._read_frame()
        self.frame = points, visible
        why = self._unusable(visible, timestamp)
        if why is None:
            d = self.distance = self.goals.update(points, visible)
            target, target_visible = self.goals.target()
            both = visible & target_visible
            if d is None or both.sum() < self.min_visible:
                why = (f"{int(both.sum())} points visible in both the tracking and the target "
                       "frame")
        # Consecutive counts restart on every tick that did not measure their condition.
        self.bad_ticks = 0 if why is None else self.bad_ticks + 1
        reached = why is None and self.goals.at_last and d < self.success_threshold
        self.held = self.held + 1 if reached else 0
        if why is not None:
            self._call("robot.hold", self.robot.hold)
            if self.bad_ticks >= self.patience:
                self.stopped = f"stopped: {why}"
            return self.stopped
        if self.held >= self.hold_steps:
            return "success"
        joint_pos, joint_vel = self._observe()
        paired, mask = self.selector(points, target, both, self.origin)
        out = self._call("policy", self.policy, joint_pos, joint_vel, self.last_action, paired,
                         mask)
        action = self._check_action(out)
        self.last_action = action.astype(np.float32)
        previous = self.command
        if previous is None and self.mapper.kind != "twist":
            previous = joint_pos  # start from where the robot is
        try:
            command = self.guard(self.mapper(action, previous), previous)
        except ValueError as e:
            raise _TickError(f"safety guard refused the command: {e}") from e
        self.command = command
        self._call("robot.command", self.robot.command, command)
        return None

    def _read_frame(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(points [N, 3] world, visible [N] bool (and finite), timestamp (s)) from the source.

        Raises:
          _TickError: the source raised, or its frame is unreadable or of the wrong shape or type.
        """
        frame = self._call("point source", self.points.read)
        n = self.goals.points.shape[1]
        try:
            points = np.asarray(frame.points, np.float64)
            visible = np.asarray(frame.visible)
            timestamp = float(frame.timestamp)
        except (AttributeError, TypeError, ValueError) as e:
            raise _TickError(f"point source gave an unreadable frame ({type(e).__name__}: {e})"
                         ) from e
        if points.shape != (n, 3) or visible.shape != (n,) or visible.dtype != np.bool_:
            raise _TickError(f"point source gave points {points.shape} and visible {visible.shape} "
                         f"{visible.dtype}; expected [{n}, 3] and [{n}] bool (the track's "
                         f"{n} points)")
        return points, visible & np.all(np.isfinite(points), axis=-1), timestamp

    def _unusable(self, visible: np.ndarray, timestamp: float) -> str | None:
        """Why tracking with this visibility [N] and timestamp (s) is stale or empty, or None."""
        now = float(self.clock())
        if not np.isfinite(now):
            raise _TickError(f"the controller's clock gave {now}")
        if not np.isfinite(timestamp):
            return f"tracking is stale: its timestamp is {timestamp}"
        age = now - timestamp
        if age < -self.max_future_s:
            return (f"tracking is stale: its timestamp is {-age:.3g} s ahead of the "
                    "controller's clock (stamp it with that clock)")
        if age > self.max_age_s:
            return f"tracking is stale ({age:.2f} s old)"
        if visible.sum() < self.min_visible:
            return f"{int(visible.sum())} tracked points visible"
        return None

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        """The robot's (joint_pos [Q], joint_vel [V]), float64.

        Raises:
          _TickError: the robot raised, or a reading is unreadable, misshapen or not finite.
        """
        state = self._call("robot.observe", self.robot.observe)
        read = []
        for name in ("joint_pos", "joint_vel"):
            want = (int(self.policy.info.sizes[name]),)
            try:
                x = np.asarray(getattr(state, name), np.float64)
            except (AttributeError, TypeError, ValueError) as e:
                raise _TickError(f"robot reported an unreadable {name} ({type(e).__name__}: {e})"
                             ) from e
            if x.shape != want:
                raise _TickError(f"robot reported {name} of shape {x.shape}; expected {list(want)}")
            if not np.all(np.isfinite(x)):
                k = int(np.argmax(~np.isfinite(x)))
                raise _TickError(f"robot reported non-finite joints ({name}[{k}] = {x[k]})")
            read.append(x)
        return read[0], read[1]

    def _check_action(self, out: dict) -> np.ndarray:
        """The policy's action [A], float64.

        Raises:
          _TickError: no action, the wrong shape, or NaN or infinity in it.
        """
        try:
            action = np.asarray(out["action"], np.float64)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise _TickError(f"policy returned no usable action ({type(e).__name__}: {e})") from e
        if action.shape != (self.policy.action_size,):
            raise _TickError(f"policy returned an action of shape {action.shape}; expected "
                         f"[{self.policy.action_size}]")
        if not np.all(np.isfinite(action)):
            raise _TickError(f"policy returned a non-finite action {action}")
        return action

    # -- fault handling ---------------------------------------------------------------------------

    def _call(self, who: str, fn: Callable, *args):
        """fn(*args); what it raises becomes a _TickError naming `who`."""
        try:
            return fn(*args)
        except Exception as e:
            raise _TickError(f"{who} raised {type(e).__name__}: {e}") from e

    def _guarded(self, body: Callable[[], str | None]) -> str | None:
        """body(): its status, or, when it raises, the robot held and a "stopped: ..." status."""
        try:
            return body()
        except _TickError as e:
            return self._stop(str(e))
        except Exception as e:  # a fault of the controller's own must not leave the robot moving
            return self._stop(f"controller raised {type(e).__name__}: {e}")
        except BaseException:  # KeyboardInterrupt, SystemExit: hold, then let them through
            self._try_hold()
            raise

    def _try_hold(self) -> str | None:
        """robot.hold(); what it raised, as text, or None."""
        try:
            self.robot.hold()
        except Exception as e:
            return f"robot.hold raised {type(e).__name__}: {e}"
        return None

    def _stop(self, reason: str) -> str:
        """Holds the robot and ends the run: the status "stopped: <reason>"."""
        failed = self._try_hold()
        self.stopped = f"stopped: {reason}" + (f"; then {failed}" if failed else "")
        return self.stopped
