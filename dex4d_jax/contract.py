"""The contract of an exported policy: ONNX input/output names, shapes and `dex4d.*` metadata.

`dex4d_jax.export` writes files that follow it and `dex4d_jax.deploy` reads them; both import
this module, so the two cannot drift apart. It imports numpy and the standard library only
(docs/deploy.md, "Student contract", has the tables).

Student contract (`dex4d-student/1`), B dynamic, sizes from the `dex4d.sizes` entry:

    joint_pos [B, Q], joint_vel [B, V], last_action [B, A], paired_points [B, P, 6] float32,
    point_mask [B, P] bool  ->  action [B, A] in [-1, 1], next_joint_pos [B, Q],
    next_joint_vel [B, V]

Teacher contract (`dex4d-teacher/1`): observation [B, D] -> action [B, A].

Metadata: `metadata(...)` builds the `dex4d.*` entries (JSON strings), `PolicyInfo.from_metadata`
parses and checks a student's. `dex4d.env_config`, the environment's whole config after
overrides, was added without changing the version: files written before it still load
(`PolicyInfo.env_config` is None) and run on a robot; only the simulated robot needs it
(`dex4d_jax.deploy.sim_setup.simulation` asks for a re-export).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

import numpy as np

import dex4d_jax

STUDENT_CONTRACT = "dex4d-student/1"
TEACHER_CONTRACT = "dex4d-teacher/1"
STUDENT_INPUTS = ("joint_pos", "joint_vel", "last_action", "paired_points", "point_mask")
STUDENT_OUTPUTS = ("action", "next_joint_pos", "next_joint_vel")
TEACHER_INPUTS = ("observation",)
TEACHER_OUTPUTS = ("action",)
PREFIX = "dex4d."
# The ONNX opset the graph is written in (docs/deploy.md, "Runtimes and opset").
OPSET_KEY = PREFIX + "opset"

# What each known environment implies: input sizes (joint_pos Q, joint_vel V, action A) and
# the action mapping's kind. A file naming another environment is checked for what every
# student needs only (positive finite numbers, joint limits that fit the action).
ENV_SIZES = {"ap2ap_wrench": (0, 6, 6), "ap2ap": (22, 22, 22)}
ENV_MAPPING = {"ap2ap_wrench": "twist", "ap2ap": "arm_delta_hand_absolute"}
_REEXPORT = "re-export it with `dex4d export`"


class PolicyFileError(ValueError):
    """The ONNX file is missing, unreadable or not a dex4d student of a known contract."""


def student_input_shapes(sizes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Per-example shapes (no batch axis) of the student's inputs, in STUDENT_INPUTS order.

    Args:
      sizes: {"joint_pos": Q, "joint_vel": V, "action": A, "points": P}.

    Returns:
      {"joint_pos": (Q,), "joint_vel": (V,), "last_action": (A,), "paired_points": (P, 6),
      "point_mask": (P,)}.
    """
    return {"joint_pos": (int(sizes["joint_pos"]),), "joint_vel": (int(sizes["joint_vel"]),),
            "last_action": (int(sizes["action"]),), "paired_points": (int(sizes["points"]), 6),
            "point_mask": (int(sizes["points"]),)}


def check_student_io(inputs: tuple[str, ...], outputs: tuple[str, ...], path: str,
                     shapes: Mapping[str, tuple] | None = None,
                     sizes: Mapping[str, int] | None = None) -> None:
    """Raises PolicyFileError unless a graph's input names (and shapes) are the student's.

    Args:
      inputs: the graph's input names.
      outputs: the graph's output names.
      path: the file, for error messages.
      shapes: {input name: the graph's shape, batch axis first}; its fixed (integer) sizes
        must be those `sizes` implies (student_input_shapes).
      sizes: the file's `dex4d.sizes`.
    """
    if tuple(inputs) != STUDENT_INPUTS or tuple(outputs) != STUDENT_OUTPUTS:
        raise PolicyFileError(f"{path} has inputs {tuple(inputs)} and outputs {tuple(outputs)}; "
                              f"the student contract is {STUDENT_INPUTS} -> {STUDENT_OUTPUTS}.")
    if shapes is None or sizes is None:
        return
    for name, want in student_input_shapes(sizes).items():
        got = tuple(shapes[name])[1:]
        fixed = all(isinstance(d, int) for d in got)
        if len(got) != len(want) or (fixed and got != want):
            raise PolicyFileError(f"{path}: the graph's input {name} is {list(shapes[name])} but "
                                  f"its metadata (dex4d.sizes {dict(sizes)}) says [B, "
                                  f"{', '.join(map(str, want))}]; {_REEXPORT}.")


def _json_default(value):
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def metadata(contract: str, env: str, env_overrides: Mapping, deploy_info: Mapping,
             sizes: Mapping[str, int], env_config: Mapping | None = None, checkpoint: str = "",
             step: int = 0) -> dict[str, str]:
    """The `dex4d.*` metadata of an exported policy (docs/deploy.md lists the keys).

    Args:
      contract: STUDENT_CONTRACT or TEACHER_CONTRACT.
      env: the training environment's name.
      env_overrides: the settings the run gave the environment (its config's `env` section).
      deploy_info: the environment's `deploy_info` (joint names, action mapping, control
        frequency, points' origin, success threshold, hold steps).
      sizes: the input sizes ({"joint_pos", "joint_vel", "action", "points"} for a student).
      env_config: the environment's config after overrides, as a plain dict (what the
        simulated robot rebuilds the task from); None leaves the entry out.
      checkpoint: the checkpoint folder the parameters came from.
      step: its environment step.

    Returns:
      {key: JSON string} (the checkpoint as a plain string).
    """
    meta = {
        "dex4d.contract": contract,
        "dex4d.version": dex4d_jax.__version__,
        "dex4d.env": env,
        "dex4d.env_overrides": json.dumps(dict(env_overrides), sort_keys=True),
        "dex4d.joint_names": json.dumps(list(deploy_info["joint_names"])),
        "dex4d.action_mapping": json.dumps(deploy_info["action_mapping"]),
        "dex4d.control_frequency_hz": json.dumps(deploy_info["control_frequency_hz"]),
        "dex4d.num_points": json.dumps(sizes.get("points", 0)),
        "dex4d.points_origin_in_world": json.dumps(list(deploy_info["points_origin_in_world"])),
        "dex4d.success_threshold": json.dumps(deploy_info["success_threshold"]),
        "dex4d.hold_steps": json.dumps(deploy_info["hold_steps"]),
        "dex4d.sizes": json.dumps(dict(sizes)),
        "dex4d.checkpoint": checkpoint,
        "dex4d.step": json.dumps(step),
    }
    if env_config is not None:
        meta["dex4d.env_config"] = json.dumps(dict(env_config), sort_keys=True,
                                              default=_json_default)
    return meta


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """The metadata an exported student carries (built by `metadata`).

    Attributes:
      contract: STUDENT_CONTRACT.
      version: the dex4d-jax version that exported it.
      env: the training environment's name; env_overrides its config overrides.
      joint_names: names of the action's entries, in order.
      action_mapping: how actions become commands (deploy.runtime.ActionMapper).
      control_frequency_hz: the rate the policy was trained at (Hz).
      num_points: paired points per call.
      points_origin_in_world: [3] metres; the policy's point frame is the world shifted by it.
      sizes: {"joint_pos", "joint_vel", "action", "points"}.
      success_threshold, hold_steps: the training task's success test (metres, ticks).
      checkpoint, step: where the parameters came from.
      env_config: the environment's config after overrides (a plain dict), or None in files
        exported before it was stored.
      opset: the ONNX opset (default domain) the graph is written in (`OPSET_KEY`, written by
        the export); None in files exported before the entry was written, where the deploy
        runtime reads it from the graph's opset import.
    """

    contract: str
    version: str
    env: str
    env_overrides: dict
    joint_names: list
    action_mapping: dict
    control_frequency_hz: float
    num_points: int
    points_origin_in_world: np.ndarray
    sizes: dict
    success_threshold: float
    hold_steps: int
    checkpoint: str
    step: int
    env_config: dict | None = None
    opset: int | None = None

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], path: str) -> PolicyInfo:
        """Parses and checks a file's `dex4d.*` metadata.

        Args:
          meta: the ONNX model's metadata_props as a dict.
          path: the file, for error messages.

        Raises:
          PolicyFileError: no dex4d metadata, a teacher or unknown contract, a missing or
            malformed entry, or entries that contradict each other (`check`).
        """
        contract = meta.get("dex4d.contract")
        if contract is None:
            raise PolicyFileError(f"{path} has no dex4d metadata: export it with `dex4d export`.")
        if contract != STUDENT_CONTRACT:
            what = "a teacher (it needs the privileged state)" if contract == TEACHER_CONTRACT \
                else f"contract {contract!r}"
            raise PolicyFileError(f"{path} is {what}; the deploy runtime runs students "
                                  f"({STUDENT_CONTRACT}).")
        opset = _opset_entry(meta, path)
        try:
            get = {k.removeprefix(PREFIX): v for k, v in meta.items()}
            info = cls(
                contract=contract, version=get["version"], env=get["env"],
                env_overrides=json.loads(get["env_overrides"]),
                joint_names=json.loads(get["joint_names"]),
                action_mapping=json.loads(get["action_mapping"]),
                control_frequency_hz=float(json.loads(get["control_frequency_hz"])),
                num_points=int(json.loads(get["num_points"])),
                points_origin_in_world=np.asarray(json.loads(get["points_origin_in_world"]),
                                                  np.float64),
                sizes=json.loads(get["sizes"]),
                success_threshold=float(json.loads(get["success_threshold"])),
                hold_steps=int(json.loads(get["hold_steps"])),
                checkpoint=get["checkpoint"], step=int(json.loads(get["step"])),
                env_config=(json.loads(get["env_config"]) if "env_config" in get else None),
                opset=opset)
        except (KeyError, ValueError, TypeError) as e:
            raise PolicyFileError(f"{path} has incomplete or malformed dex4d metadata ({e!r}); "
                                  "re-export it with `dex4d export`.") from e
        info.check(path)
        return info

    def check(self, path: str) -> None:
        """Raises PolicyFileError naming the first entry that contradicts the others.

        Every student: sizes are whole numbers (action and points at least 1) that agree with
        num_points and the joint names; the control frequency, success threshold and speed
        limits are positive finite numbers, hold_steps at least 1; the joint limits hold one
        finite pair low < high per action entry. A known environment (ENV_SIZES) fixes the
        sizes and the action mapping's kind, and when the file carries the environment's
        config, the rate, speed limits, arm step and success test are the config's own.

        Args:
          path: the file, for error messages.
        """
        try:
            problem = _metadata_problem(self) or _env_config_problem(self)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            problem = f"malformed entry ({e!r})"
        if problem:
            raise PolicyFileError(f"{path} has inconsistent dex4d metadata: {problem}; "
                                  f"{_REEXPORT}.")


def _opset_entry(meta: Mapping[str, str], path: str) -> int | None:
    """The `OPSET_KEY` entry as a whole number >= 1, or None where the file has none.

    Raises:
      PolicyFileError: an entry that is not a whole number >= 1.
    """
    if OPSET_KEY not in meta:
        return None
    try:
        opset = json.loads(meta[OPSET_KEY])
    except ValueError:
        opset = None
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
        raise PolicyFileError(f"{path} has a malformed {OPSET_KEY} entry ({meta[OPSET_KEY]!r}, "
                              f"not a whole number >= 1); {_REEXPORT}.")
    return opset


def _positive(value) -> bool:
    """True for a positive finite number (a bool is not one)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _whole(value, low: int) -> bool:
    """True for an integer >= low (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _metadata_problem(info: PolicyInfo) -> str | None:
    """What contradicts the rest of the metadata (PolicyInfo.check), or None."""
    sizes = info.sizes
    names = ("joint_pos", "joint_vel", "action", "points")
    if not isinstance(sizes, dict) or not set(names) <= set(sizes):
        return f"sizes {sizes!r} must give {', '.join(names)}"
    q, v, a, p = (sizes[k] for k in names)
    if not (_whole(q, 0) and _whole(v, 0) and _whole(a, 1) and _whole(p, 1)):
        return f"sizes {sizes} must be whole numbers (action and points at least 1)"
    if info.num_points != p:
        return f"num_points {info.num_points} but sizes.points {p}"
    if len(info.joint_names) != a:
        return f"{len(info.joint_names)} joint names for an action of size {a}"
    if info.env in ENV_SIZES and (q, v, a) != ENV_SIZES[info.env]:
        return (f"env {info.env!r} has joint_pos, joint_vel and action of sizes "
                f"{ENV_SIZES[info.env]}, the file's inputs {(q, v, a)}")
    for name, unit in (("control_frequency_hz", "Hz"), ("success_threshold", "metres")):
        if not _positive(getattr(info, name)):
            return f"{name} {getattr(info, name)} must be a positive finite number ({unit})"
    if not _whole(info.hold_steps, 1):
        return f"hold_steps {info.hold_steps} must be a whole number of ticks, at least 1"
    origin = info.points_origin_in_world
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        return f"points_origin_in_world {origin.tolist()} must be 3 finite numbers (metres)"
    return _action_mapping_problem(info.action_mapping, info.env, a)


def _action_mapping_problem(m, env: str, action_size: int) -> str | None:
    """What is wrong with an action mapping for `env` and an action of `action_size`, or None."""
    if not isinstance(m, dict):
        return f"action_mapping {m!r} must be a JSON object"
    kind = m.get("kind")
    if env in ENV_MAPPING and kind != ENV_MAPPING[env]:
        return f"env {env!r} maps actions with {ENV_MAPPING[env]!r}, not {kind!r}"
    if kind == "twist":
        needed = ("max_lin_speed", "max_ang_speed")
    elif kind == "arm_delta_hand_absolute":
        needed = ("arm_step",) + tuple(k for k in ("arm_speed_scale", "arm_delta_dt") if k in m)
    else:
        return f"action_mapping kind {kind!r} is unknown (twist or arm_delta_hand_absolute)"
    for key in needed:
        if not _positive(m.get(key)):
            return f"action_mapping.{key} {m.get(key)} must be a positive finite number"
    if kind == "twist":
        return None
    if "arm_speed_scale" in m and "arm_delta_dt" in m and not math.isclose(
            m["arm_step"], m["arm_speed_scale"] * m["arm_delta_dt"], rel_tol=1e-6):
        return (f"action_mapping.arm_step {m['arm_step']} is not arm_speed_scale x arm_delta_dt "
                f"({m['arm_speed_scale']} x {m['arm_delta_dt']})")
    if not _whole(m.get("num_arm"), 0) or m["num_arm"] > action_size:
        return f"action_mapping.num_arm {m.get('num_arm')} must be a whole number <= {action_size}"
    low = np.asarray(m.get("joint_low", []), np.float64)
    high = np.asarray(m.get("joint_high", []), np.float64)
    if low.shape != (action_size,) or high.shape != (action_size,):
        return (f"action_mapping.joint_low and joint_high hold {low.size} and {high.size} "
                f"entries; the action has {action_size}")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        bad = int(np.flatnonzero(~(np.isfinite(low) & np.isfinite(high) & (low < high)))[0])
        return (f"joint {bad} has limits [{low[bad]}, {high[bad]}]; each must be finite with "
                "low < high")
    return None


def _env_config_problem(info: PolicyInfo) -> str | None:
    """Where the metadata differs from the environment config the file carries, or None."""
    cfg, m = info.env_config, info.action_mapping
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        return "env_config must be a JSON object"
    keys = ["ctrl_dt", "success_threshold", "hold_steps"]
    keys += ["max_lin_speed", "max_ang_speed"] if m["kind"] == "twist" else [
        "arm_speed_scale", "arm_delta_dt"]
    for key in keys:
        if key in cfg and not _positive(cfg[key]):
            return f"env_config.{key} {cfg[key]} must be a positive finite number"
    pairs = []  # (metadata entry, its value, what the env config says, its value)
    if "ctrl_dt" in cfg:
        pairs.append(("control_frequency_hz", info.control_frequency_hz, "1 / env_config.ctrl_dt",
                      1.0 / cfg["ctrl_dt"]))
    for key in ("success_threshold", "hold_steps"):
        if key in cfg:
            pairs.append((key, getattr(info, key), f"env_config.{key}", cfg[key]))
    for key in keys[3:]:
        if key in cfg and key in m:
            pairs.append((f"action_mapping.{key}", m[key], f"env_config.{key}", cfg[key]))
    if m["kind"] != "twist" and "arm_speed_scale" in cfg and "arm_delta_dt" in cfg:
        pairs.append(("action_mapping.arm_step", m["arm_step"],
                      "env_config.arm_speed_scale x arm_delta_dt",
                      cfg["arm_speed_scale"] * cfg["arm_delta_dt"]))
    for name, value, source, want in pairs:
        if not math.isclose(value, want, rel_tol=1e-6):
            return (f"{name} is {value:g} but {source} is {want:g} (the environment the policy "
                    "was trained in)")
    return None
