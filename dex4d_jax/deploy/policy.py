"""An exported student, run with onnxruntime; its contract checked on load and on every call.

    policy = OnnxPolicy("student.onnx")        # one CPU thread by default
    out = policy(joint_pos, joint_vel, last_action, paired_points, point_mask)
    out["action"], out["next_joint_pos"], out["next_joint_vel"]

Inputs may be batched ([B, ...]) or single ([...]); outputs follow. Malformed inputs (wrong
shape, non-finite values, a non-boolean mask) raise `PolicyInputError` naming the input and
the expected shape: a robot must never act on garbage.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

STUDENT_CONTRACT = "dex4d-student/1"
TEACHER_CONTRACT = "dex4d-teacher/1"
INPUTS = ("joint_pos", "joint_vel", "last_action", "paired_points", "point_mask")
OUTPUTS = ("action", "next_joint_pos", "next_joint_vel")


class PolicyFileError(ValueError):
    """The ONNX file is missing, unreadable or not a dex4d student of a known contract."""


class PolicyInputError(ValueError):
    """An input to the policy has the wrong shape or type, or holds NaN or infinity."""


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """The metadata an exported policy carries (see dex4d_jax/export/policy.py).

    Attributes:
      contract: "dex4d-student/1".
      version: the dex4d-jax version that exported it.
      env: the training environment's name; env_overrides its config overrides.
      joint_names: names of the action's entries, in order.
      action_mapping: how actions become commands (deploy.runtime.ActionMapper).
      control_frequency_hz: the rate the policy was trained at.
      num_points: paired points per call.
      points_origin_in_world: the policy's point frame is the world shifted by this.
      sizes: {"joint_pos", "joint_vel", "action", "points"}.
      success_threshold, hold_steps: the training task's success test.
      checkpoint, step: where the parameters came from.
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

    @classmethod
    def from_metadata(cls, meta: dict, path: str) -> PolicyInfo:
        """Parses and checks a file's `dex4d.*` metadata."""
        contract = meta.get("dex4d.contract")
        if contract is None:
            raise PolicyFileError(f"{path} has no dex4d metadata: export it with `dex4d export`.")
        if contract != STUDENT_CONTRACT:
            what = "a teacher (it needs the privileged state)" if contract == TEACHER_CONTRACT \
                else f"contract {contract!r}"
            raise PolicyFileError(f"{path} is {what}; the deploy runtime runs students "
                                  f"({STUDENT_CONTRACT}).")
        try:
            get = {k.removeprefix("dex4d."): v for k, v in meta.items()}
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
                checkpoint=get["checkpoint"], step=int(json.loads(get["step"])))
        except (KeyError, ValueError, TypeError) as e:
            raise PolicyFileError(f"{path} has incomplete or malformed dex4d metadata ({e!r}); "
                                  "re-export it with `dex4d export`.") from e
        if len(info.joint_names) != info.sizes["action"]:
            raise PolicyFileError(f"{path}: {len(info.joint_names)} joint names for an action "
                                  f"of size {info.sizes['action']}.")
        return info


class OnnxPolicy:
    """An exported student on onnxruntime.

    Args:
      path: the .onnx file written by `dex4d export`.
      num_threads: onnxruntime intra-op threads (1: predictable latency next to a control
        loop).
    """

    def __init__(self, path: str, num_threads: int = 1):
        import onnxruntime as ort  # noqa: PLC0415

        if not os.path.isfile(path):
            raise PolicyFileError(f"Policy file {path} not found.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise PolicyFileError(f"{path} is not a readable ONNX model ({e}).") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = PolicyInfo.from_metadata(meta, path)
        names = tuple(i.name for i in self.session.get_inputs())
        outs = tuple(o.name for o in self.session.get_outputs())
        if names != INPUTS or outs != OUTPUTS:
            raise PolicyFileError(f"{path} has inputs {names} and outputs {outs}; the student "
                                  f"contract is {INPUTS} -> {OUTPUTS}.")
        s = self.info.sizes
        self._shapes = {"joint_pos": (s["joint_pos"],), "joint_vel": (s["joint_vel"],),
                        "last_action": (s["action"],), "paired_points": (s["points"], 6),
                        "point_mask": (s["points"],)}

    @property
    def action_size(self) -> int:
        """Size of the action."""
        return int(self.info.sizes["action"])

    def check_inputs(self, inputs: dict) -> tuple[dict[str, np.ndarray], bool]:
        """Validated float32/bool arrays with a batch axis, and whether one was added."""
        missing = [k for k in INPUTS if k not in inputs]
        if missing:
            raise PolicyInputError(f"Missing policy inputs {missing}; expected {list(INPUTS)}.")
        single = np.ndim(inputs["last_action"]) == 1
        out, batch = {}, None
        for name in INPUTS:
            x = np.asarray(inputs[name])
            want = self._shapes[name]
            if single:
                x = x[None]
            if x.shape[1:] != want or (batch is not None and x.shape[0] != batch):
                expected = ("[" + ", ".join(["B"] * (not single) + [str(d) for d in want]) + "]")
                raise PolicyInputError(f"Policy input {name!r} has shape {np.shape(inputs[name])}"
                                       f"; expected {expected}"
                                       + (f" with B = {batch}" if batch is not None else "") + ".")
            batch = x.shape[0]
            if name == "point_mask":
                if x.dtype != np.bool_:
                    raise PolicyInputError(f"point_mask must be boolean (True = visible), got "
                                           f"{x.dtype}.")
            else:
                if not np.issubdtype(x.dtype, np.number):
                    raise PolicyInputError(f"Policy input {name!r} must be numeric, got "
                                           f"{x.dtype}.")
                x = x.astype(np.float32)
                if not np.all(np.isfinite(x)):
                    bad = np.argwhere(~np.isfinite(x))[0].tolist()
                    raise PolicyInputError(f"Policy input {name!r} holds NaN or infinity (first "
                                           f"at index {bad}); hidden points must be finite "
                                           "(their values are ignored) and marked False in "
                                           "point_mask.")
            out[name] = np.ascontiguousarray(x)
        return out, single

    def __call__(self, joint_pos, joint_vel, last_action, paired_points, point_mask
                 ) -> dict[str, np.ndarray]:
        """The policy's outputs: action in [-1, 1], next joint positions and velocities."""
        inputs, single = self.check_inputs(dict(
            joint_pos=joint_pos, joint_vel=joint_vel, last_action=last_action,
            paired_points=paired_points, point_mask=point_mask))
        outputs = self.session.run(None, inputs)
        return {k: (v[0] if single else v) for k, v in zip(OUTPUTS, outputs, strict=True)}
