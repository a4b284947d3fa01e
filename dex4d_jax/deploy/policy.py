"""An exported student on onnxruntime or PyTorch, its contract checked on load and every call.

    policy = OnnxPolicy("student.onnx")                   # onnxruntime, one CPU thread
    policy = OnnxPolicy("student.onnx", runtime="torch")  # PyTorch (onnx2torch), one thread
    out = policy(joint_pos, joint_vel, last_action, paired_points, point_mask)
    out["action"], out["next_joint_pos"], out["next_joint_vel"]

Inputs may be batched ([B, ...]) or single ([...]); outputs follow. Malformed inputs (wrong
shape, non-finite values, a non-boolean mask) raise `PolicyInputError` naming the input and
the expected shape: a robot must never act on garbage.

The runtime only runs the graph (`OrtBackend` here, `torch_backend.TorchBackend` for PyTorch,
an optional extra: pip install "dex4d-jax[torch]"); everything else is `OnnxPolicy`'s, the
same for both: the file is read once with onnx, its metadata (`PolicyInfo`) and graph
inputs and outputs checked against the student contract, and every call's inputs validated
before the runtime sees them. Neither runtime imports JAX.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Protocol

import numpy as np
import onnx

from dex4d_jax import contract
from dex4d_jax.contract import PolicyFileError

__all__ = ["RUNTIMES", "OnnxPolicy", "PolicyFileError", "PolicyInfo", "PolicyInputError",
           "RuntimeUnavailableError"]

RUNTIMES = ("onnxruntime", "torch")


class PolicyInputError(ValueError):
    """An input to the policy has the wrong shape or type, or holds NaN or infinity."""


class RuntimeUnavailableError(ImportError):
    """The chosen runtime's packages are not installed; the message says how to install them."""


# The metadata an exported student carries, its opset included (dex4d_jax/contract.py).
PolicyInfo = contract.PolicyInfo


class Backend(Protocol):
    """What a runtime does for `OnnxPolicy`: run the checked graph on checked inputs."""

    name: str

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs, in contract.STUDENT_OUTPUTS order, for validated inputs.

        Args:
          inputs: {name: float32 (bool for point_mask) array, batch axis first}, in
            contract.STUDENT_INPUTS order, as `OnnxPolicy.check_inputs` returns them.
        """
        ...


class OrtBackend:
    """The graph on onnxruntime's CPU execution provider.

    Args:
      data: the serialized ONNX model.
      path: the file it came from, for error messages.
      num_threads: onnxruntime intra-op threads.

    Raises:
      PolicyFileError: onnxruntime cannot load the model.
    """

    name = "onnxruntime"

    def __init__(self, data: bytes, path: str, num_threads: int = 1):  # noqa: D107
        import onnxruntime as ort  # noqa: PLC0415

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise PolicyFileError(f"{path} is not a model onnxruntime {ort.__version__} can "
                                  f"run ({e}).") from e

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs (see `Backend.run`)."""
        return self.session.run(None, inputs)


def _shapes(values) -> dict[str, tuple]:
    """{name: shape} of graph inputs or outputs, as onnxruntime's `get_inputs` gives them.

    An int per fixed axis, the symbol's name (a str) per named dynamic axis, None per unknown.
    """
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                          for d in v.type.tensor_type.shape.dim) for v in values}


def _graph_opset(model: onnx.ModelProto) -> int | None:
    """The opset the model imports for the default ONNX domain, or None."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")),
                None)


class OnnxPolicy:
    """An exported student on onnxruntime or PyTorch.

    Args:
      path: the .onnx file written by `dex4d export`.
      num_threads: the runtime's intra-op threads (1: predictable latency next to a control
        loop). With runtime "torch" this is `torch.set_num_threads`, which holds for the
        whole process.
      runtime: "onnxruntime" (default) or "torch" (the graph converted to a torch module by
        onnx2torch; files of opset 17, the export's default).

    Attributes:
      info: the file's `PolicyInfo` (its opset filled in from the graph for older files).
      runtime: the runtime's name.
      backend: the runtime running the graph (`OrtBackend` with its `session`, or
        `torch_backend.TorchBackend` with its `module`).

    Raises:
      ValueError: an unknown runtime.
      PolicyFileError: the file is missing or unreadable, is not a student of the contract,
        has inconsistent metadata, or the runtime cannot run its graph (onnx2torch converts
        opset 17 only: the message says to re-export with `--opset 17`).
      RuntimeUnavailableError: runtime "torch" without PyTorch and onnx2torch installed.
    """

    def __init__(self, path: str, num_threads: int = 1, runtime: str = "onnxruntime"):  # noqa: D107
        if runtime not in RUNTIMES:
            raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")
        if os.path.isdir(path):
            raise PolicyFileError(f"{path} is a folder; give the .onnx file that `dex4d export "
                                  "--policy RUN --out FILE.onnx` writes.")
        if not os.path.isfile(path):
            raise PolicyFileError(f"Policy file {path} not found.")
        with open(path, "rb") as f:
            data = f.read()
        try:
            model = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf's DecodeError and friends
            raise PolicyFileError(f"{path} is not a readable ONNX model ({e}).") from e
        info = PolicyInfo.from_metadata({p.key: p.value for p in model.metadata_props}, path)
        graph_opset = _graph_opset(model)
        if info.opset is None:
            info = dataclasses.replace(info, opset=graph_opset)
        elif info.opset != graph_opset:
            raise PolicyFileError(f"{path}: its metadata ({contract.OPSET_KEY}) says opset "
                                  f"{info.opset} but the graph imports opset {graph_opset}; "
                                  "re-export it with `dex4d export`.")
        self.info = info
        inputs = _shapes(model.graph.input)
        contract.check_student_io(tuple(inputs), tuple(o.name for o in model.graph.output),
                                  path, inputs, info.sizes)
        self._shapes = contract.student_input_shapes(info.sizes)
        self.runtime = runtime
        if runtime == "onnxruntime":
            self.backend: Backend = OrtBackend(data, path, num_threads)
        else:
            from dex4d_jax.deploy import torch_backend  # noqa: PLC0415

            self.backend = torch_backend.TorchBackend(model, path, num_threads)

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
        """The policy's outputs: action in [-1, 1], next joint positions and velocities.

        Args:
          joint_pos: [B, Q] or [Q] joint positions (radians).
          joint_vel: [B, V] or [V] joint velocities (rad/s; the wrench student's object
            twist).
          last_action: [B, A] or [A], the previous action in [-1, 1].
          paired_points: [B, P, 6] or [P, 6], current and target points in the policy's point
            frame (metres).
          point_mask: [B, P] or [P] bool, True where the pair is visible.

        Returns:
          {"action": [B, A], "next_joint_pos": [B, Q], "next_joint_vel": [B, V]} float32
          (no batch axis for single inputs), whichever the runtime.

        Raises:
          PolicyInputError: a missing, misshapen, non-numeric or non-finite input, or a
            non-boolean mask.
        """
        inputs, single = self.check_inputs(dict(
            joint_pos=joint_pos, joint_vel=joint_vel, last_action=last_action,
            paired_points=paired_points, point_mask=point_mask))
        outputs = self.backend.run(inputs)
        return {k: (v[0] if single else v) for k, v in zip(contract.STUDENT_OUTPUTS, outputs,
                                                          strict=True)}
