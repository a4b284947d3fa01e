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


def check_student_io(inputs: tuple[str, ...], outputs: tuple[str, ...], path: str) -> None:
    """Raises PolicyFileError unless a graph's input and output names are the student's."""
    if tuple(inputs) != STUDENT_INPUTS or tuple(outputs) != STUDENT_OUTPUTS:
        raise PolicyFileError(f"{path} has inputs {tuple(inputs)} and outputs {tuple(outputs)}; "
                              f"the student contract is {STUDENT_INPUTS} -> {STUDENT_OUTPUTS}.")


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

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], path: str) -> PolicyInfo:
        """Parses and checks a file's `dex4d.*` metadata.

        Args:
          meta: the ONNX model's metadata_props as a dict.
          path: the file, for error messages.

        Raises:
          PolicyFileError: no dex4d metadata, a teacher or unknown contract, a missing or
            malformed entry, or joint names that do not match the action size.
        """
        contract = meta.get("dex4d.contract")
        if contract is None:
            raise PolicyFileError(f"{path} has no dex4d metadata: export it with `dex4d export`.")
        if contract != STUDENT_CONTRACT:
            what = "a teacher (it needs the privileged state)" if contract == TEACHER_CONTRACT \
                else f"contract {contract!r}"
            raise PolicyFileError(f"{path} is {what}; the deploy runtime runs students "
                                  f"({STUDENT_CONTRACT}).")
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
                env_config=(json.loads(get["env_config"]) if "env_config" in get else None))
        except (KeyError, ValueError, TypeError) as e:
            raise PolicyFileError(f"{path} has incomplete or malformed dex4d metadata ({e!r}); "
                                  "re-export it with `dex4d export`.") from e
        if len(info.joint_names) != info.sizes["action"]:
            raise PolicyFileError(f"{path}: {len(info.joint_names)} joint names for an action "
                                  f"of size {info.sizes['action']}.")
        return info
