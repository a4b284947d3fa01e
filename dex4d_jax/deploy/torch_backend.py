"""The PyTorch runtime of an exported student: its ONNX graph converted to a torch module.

    policy = OnnxPolicy("student.onnx", runtime="torch")   # dex4d_jax.deploy.policy

onnx2torch (https://github.com/ENOT-AutoDL/onnx2torch) turns the graph into a
`torch.fx.GraphModule` op by op; `OnnxPolicy` checks the file and every call's inputs as it
does for onnxruntime, and this backend only runs the module, on CPU, under
`torch.inference_mode()`. onnx2torch 1.5.15 converts every op of the export's default opset 17
and has no converter for some ops of newer opsets (ReduceMax-18, Cast-19, Unsqueeze-21): such
a file is refused on load with a line saying to re-export it at opset 17.

PyTorch is an optional extra (pip install "dex4d-jax[torch]"); torch and onnx2torch are
imported when a backend is made, so this module imports without them. No JAX.
"""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np
import onnx

from dex4d_jax import contract
from dex4d_jax.deploy.policy import PolicyFileError, RuntimeUnavailableError

INSTALL_HINT = 'pip install "dex4d-jax[torch]"'


def import_torch():
    """(torch, onnx2torch) imported.

    Raises:
      RuntimeUnavailableError: either is not installed (the message gives INSTALL_HINT).
    """
    try:
        import onnx2torch  # noqa: PLC0415
        import torch  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeUnavailableError(
            f"The torch runtime needs PyTorch and onnx2torch ({e.name or e} is not installed): "
            f"{INSTALL_HINT}.") from e
    return torch, onnx2torch


class TorchBackend:
    """The graph as a torch module (onnx2torch), on CPU.

    Args:
      model: the ONNX model, already checked by `OnnxPolicy` (inputs in
        contract.STUDENT_INPUTS order).
      path: the file it came from, for error messages.
      num_threads: `torch.set_num_threads` (process-wide: PyTorch has no per-module setting).

    Attributes:
      module: the converted `torch.fx.GraphModule`, in eval mode.

    Raises:
      RuntimeUnavailableError: torch or onnx2torch is not installed.
      PolicyFileError: onnx2torch cannot convert an op of the graph (re-export at opset 17).
    """

    name = "torch"

    def __init__(self, model: onnx.ModelProto, path: str,  # noqa: D107
                 num_threads: int = 1):
        torch, onnx2torch = import_torch()
        self._torch = torch
        torch.set_num_threads(num_threads)
        # onnx2torch's Slice indexes with a list, which torch >= 2.9 warns about on the first
        # call (the result is right; tests/test_torch_runtime.py checks every output).
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence for "
                                "multidimensional indexing", category=UserWarning,
                                module=r"onnx2torch\.")
        try:
            self.module = onnx2torch.convert(model).eval()
        except NotImplementedError as e:  # onnx2torch: "Converter is not implemented (...)"
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         "?")
            raise PolicyFileError(
                f"onnx2torch {metadata.version('onnx2torch')} cannot convert {path} (ONNX opset "
                f"{opset}): {' '.join(str(e).split())[:200]}; re-export it with `dex4d export "
                "--opset 17` or run it with onnxruntime.") from e
        self.input_names = contract.STUDENT_INPUTS

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for validated inputs, as numpy arrays (`policy.Backend.run`)."""
        torch = self._torch
        with torch.inference_mode():
            outputs = self.module(*(torch.from_numpy(inputs[k]) for k in self.input_names))
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        return [o.numpy() for o in outputs]
