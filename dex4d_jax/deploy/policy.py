"""An exported student, run with onnxruntime; its contract checked on load and on every call.

    policy = OnnxPolicy("student.onnx")        # one CPU thread by default
    out = policy(joint_pos, joint_vel, last_action, paired_points, point_mask)
    out["action"], out["next_joint_pos"], out["next_joint_vel"]

Inputs may be batched ([B, ...]) or single ([...]); outputs follow. Malformed inputs (wrong
shape, non-finite values, a non-boolean mask) raise `PolicyInputError` naming the input and
the expected shape: a robot must never act on garbage.
"""

from __future__ import annotations

import os

import numpy as np

from dex4d_jax import contract
from dex4d_jax.contract import PolicyFileError, PolicyInfo

__all__ = ["OnnxPolicy", "PolicyFileError", "PolicyInfo", "PolicyInputError"]


class PolicyInputError(ValueError):
    """An input to the policy has the wrong shape or type, or holds NaN or infinity."""


class OnnxPolicy:
    """An exported student on onnxruntime.

    Args:
      path: the .onnx file written by `dex4d export`.
      num_threads: onnxruntime intra-op threads (1: predictable latency next to a control
        loop).
    """

    def __init__(self, path: str, num_threads: int = 1):  # noqa: D107
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
        inputs = self.session.get_inputs()
        contract.check_student_io(tuple(i.name for i in inputs),
                                  tuple(o.name for o in self.session.get_outputs()), path,
                                  {i.name: tuple(i.shape) for i in inputs}, self.info.sizes)
        self._shapes = contract.student_input_shapes(self.info.sizes)

    @property
    def action_size(self) -> int:
        """Size of the action."""
        return int(self.info.sizes["action"])

    def check_inputs(self, inputs: dict) -> tuple[dict[str, np.ndarray], bool]:
        """Validated float32/bool arrays with a batch axis, and whether one was added."""
        missing = [k for k in contract.STUDENT_INPUTS if k not in inputs]
        if missing:
            raise PolicyInputError(f"Missing policy inputs {missing}; expected "
                                   f"{list(contract.STUDENT_INPUTS)}.")
        single = np.ndim(inputs["last_action"]) == 1
        out, batch = {}, None
        for name in contract.STUDENT_INPUTS:
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
        return {k: (v[0] if single else v) for k, v in zip(contract.STUDENT_OUTPUTS, outputs,
                                                          strict=True)}
