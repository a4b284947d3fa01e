"""The ONNX opsets `dex4d export` can write, and the ops whose form depends on the opset.

Light on purpose (onnx and the standard library, no JAX): the command line checks `--opset`
with it before it loads anything, and `onnx_graph.Graph` emits every opset-dependent op
through `axes_as_input`.

Default opset 17: LayerNormalization (flax's LayerNorm) is an ONNX op from opset 17 on, and
opset 17 is the newest one onnx2torch 1.5.15 converts completely (it has no converter for the
opset-18 ReduceMax/ReduceMean, whose axes moved from an attribute to an input), so the same
file runs in onnxruntime and, converted, in PyTorch (docs/deploy.md, "Runtimes and opset").
Newer opsets up to the newest the installed onnx package defines are accepted for other
runtimes; the export then checks the file in onnxruntime as always.

Sources: the ONNX operator changelog (https://onnx.ai/onnx/operators/, each operator's
"since version"), checked with `onnx.defs.get_schema(op, opset).since_version`.
"""

from __future__ import annotations

import onnx

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization-17: the first opset holding it

# Ops whose `axes` moved from an attribute to an (int64) input, and the opset that moved it.
# The other ops the graphs use keep their form from opset 17 on (later versions add types).
AXES_INPUT_SINCE = {"ReduceSum": 13, "Unsqueeze": 13, "ReduceMean": 18, "ReduceMax": 18}


class OpsetError(ValueError):
    """An opset the policy's graph cannot be written in, or one the runtime cannot run."""


def newest_opset() -> int:
    """The newest ONNX opset the installed onnx package defines (28 for onnx 1.23)."""
    return int(onnx.defs.onnx_opset_version())


def opset_problem(opset: int) -> str | None:
    """Why the graphs cannot be written at `opset`, on one line, or None when they can.

    Args:
      opset: the ONNX opset of the default domain, e.g. 17.

    Returns:
      None for MIN_OPSET <= opset <= newest_opset(); otherwise what is wrong and which opsets
      to choose, to follow "opset N: " or "--opset N: " (no trailing period).
    """
    newest = newest_opset()
    choose = f"choose {MIN_OPSET} to {newest} (default {DEFAULT_OPSET})"
    if isinstance(opset, bool) or not isinstance(opset, int):
        return f"not a whole number; {choose}"
    if opset < MIN_OPSET:
        return (f"cannot express the student's graph, whose LayerNormalization is an ONNX op "
                f"from opset {MIN_OPSET} on; {choose}")
    if opset > newest:
        return f"the installed onnx {onnx.__version__} defines opsets up to {newest}; {choose}"
    return None


def check_opset(opset: int) -> int:
    """Returns `opset` when the graphs can be written at it.

    Args:
      opset: the ONNX opset of the default domain.

    Raises:
      OpsetError: outside MIN_OPSET..newest_opset() (the message says which to choose).
    """
    problem = opset_problem(opset)
    if problem:
        raise OpsetError(f"Opset {opset!r}: {problem}.")
    return opset


def axes_as_input(op_type: str, opset: int) -> bool:
    """True when `op_type` takes its axes as an int64 input at `opset`, not an attribute.

    Args:
      op_type: an op of AXES_INPUT_SINCE.
      opset: the ONNX opset.

    Raises:
      KeyError: `op_type` is not an op whose axes moved.
    """
    return opset >= AXES_INPUT_SINCE[op_type]
