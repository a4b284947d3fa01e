"""ONNX graphs of the student and teacher networks, built op by op from their parameters.

Each mirror below reproduces one flax module of `dex4d_jax.networks` (or of flax itself) from
that module's parameter tree (plain numpy arrays), so the graph computes the same function as
the `apply` used in training; `dex4d_jax.export.policy.export_policy` checks that on random
inputs before it writes a file, and the tests check it again through onnxruntime.

Every mirror is registered against the class of the module it mirrors (`@mirrors(cls)`, the
registry `MIRRORS`). `check_mirrors` walks the modules a network calls and refuses a network
holding a module class without a mirror (`MissingMirrorError` naming it): a new layer in
`dex4d_jax.networks` cannot be exported by a graph that silently leaves it out.

Why not jax2onnx: its latest release pins orbax-checkpoint below the version our training
stack needs (SPEC section 12), and the networks use a dozen ops. Opset 17 by default
(`opsets.DEFAULT_OPSET`): LayerNormalization is there, every op here runs on onnxruntime
builds of the last three years, and onnx2torch converts every op of it (the PyTorch runtime).
Any opset from 17 to the newest the installed onnx defines can be asked for (`Graph(opset)`);
the ops whose form changed between opsets (the axes of ReduceSum, ReduceMean, ReduceMax and
Unsqueeze: an attribute, then an input) are emitted in the chosen opset's form
(`Graph.reduce`, `Graph.unsqueeze`). GELU is written out (flax's tanh approximation) rather
than as the opset-20 Gelu op, so that it is there at opset 17 and in the runtimes above.

The registry keys are the flax classes, so this module imports flax (and with it JAX); the
graphs themselves are built from numpy arrays, and the files need neither to run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dex4d_jax import contract
from dex4d_jax.export import opsets
from dex4d_jax.networks import point_encoders, ppo, student

IR_VERSION = 8  # the oldest IR version written (onnxruntime >= 1.14 reads it); newer opsets
# need a newer one (onnx.helper.find_min_ir_version_for)


@dataclasses.dataclass(frozen=True)
class Mirror:
    """The ONNX mirror of one flax module class.

    Attributes:
      fn: the function that builds the module's graph.
      whole: True when `fn` reproduces the module with everything inside it (flax's own
        layers, whose submodules are flax internals); False when the module's submodules are
        mirrored by their own registered mirrors, and so must have one.
    """

    fn: Callable
    whole: bool


# {flax module class: its mirror}, filled by @mirrors.
MIRRORS: dict[type, Mirror] = {}


def mirrors(module_class: type, whole: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: registers the decorated function as the ONNX mirror of `module_class`.

    Args:
      module_class: the flax module class the function mirrors.
      whole: see `Mirror.whole`.
    """
    def register(fn: Callable) -> Callable:
        if module_class in MIRRORS:
            raise ValueError(f"{module_class.__qualname__} already has an ONNX mirror "
                             f"({MIRRORS[module_class].fn.__qualname__}).")
        MIRRORS[module_class] = Mirror(fn, whole)
        return fn

    return register


class MissingMirrorError(ValueError):
    """A network calls a flax module class that has no registered ONNX mirror."""


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_mirrors(init_fn: Callable[[], object]) -> list[type]:
    """Checks that every flax module a network calls has a registered mirror.

    Args:
      init_fn: runs the network's flax `init` (for example `lambda: net.init(key, *inputs)`);
        it is traced with `jax.eval_shape`, so nothing is computed.

    Returns:
      The module classes met, outermost first (each once).

    Raises:
      MissingMirrorError: naming the first module class (and its path in the network) that
        has no mirror and is not inside a module whose mirror covers it whole.
    """
    met: dict[tuple[str, ...], type] = {}

    def record(next_fn, args, kwargs, context):
        module = context.module
        if module.scope is not None:
            met.setdefault(tuple(module.scope.path), type(module))
        return next_fn(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(init_fn)
    covered = [path for path, cls in met.items() if cls in MIRRORS and MIRRORS[cls].whole]
    for path, cls in sorted(met.items(), key=lambda item: len(item[0])):
        inside_whole = any(path[: len(p)] == p and len(path) > len(p) for p in covered)
        if cls not in MIRRORS and not inside_whole:
            where = "/".join(path) or "the network itself"
            known = ", ".join(sorted(c.__qualname__ for c in MIRRORS))
            raise MissingMirrorError(
                f"No ONNX mirror for flax module {_class_name(cls)} (at {where}): the export "
                f"would leave it out. Mirrored modules: {known}. Write one in "
                f"dex4d_jax/export/onnx_graph.py and register it with @mirrors("
                f"{cls.__qualname__}).")
    return list(dict.fromkeys(met[p] for p in sorted(met, key=len)))


class Graph:
    """A growing ONNX graph of one opset: constants, nodes and fresh names.

    Args:
      opset: the ONNX opset of the default domain the nodes are written for (17 up to
        `opsets.newest_opset()`).

    Raises:
      opsets.OpsetError: an opset the graph's ops cannot be written in.
    """

    def __init__(self, opset: int = opsets.DEFAULT_OPSET):  # noqa: D107
        self.opset = opsets.check_opset(opset)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        """A fresh value name."""
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        """A constant tensor (a float32 array unless `dtype` says otherwise)."""
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        """One node with one output; returns the output's name."""
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 0) -> str:
        """ReduceSum, ReduceMean or ReduceMax of `x` over `axes`, in this opset's form.

        The axes are an attribute before `opsets.AXES_INPUT_SINCE[op_type]` and an int64
        input from that opset on.
        """
        if opsets.axes_as_input(op_type, self.opset):
            return self.op(op_type, x, self.const(axes, dtype=np.int64), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        """Unsqueeze of `x` at `axes`, in this opset's form (as `reduce`)."""
        if opsets.axes_as_input("Unsqueeze", self.opset):
            return self.op("Unsqueeze", x, self.const(axes, dtype=np.int64))
        return self.op("Unsqueeze", x, axes=list(axes))

    def output(self, value: str, name: str) -> None:
        """Gives `value` the graph-output name `name`."""
        self.nodes.append(helper.make_node("Identity", [value], [name]))

    # -- layers (each mirrors a flax module) ---------------------------------------------------

    @mirrors(nn.Dense, whole=True)
    def dense(self, x: str, p: Mapping) -> str:
        """flax.linen.Dense: x @ kernel + bias."""
        y = self.op("MatMul", x, self.const(p["kernel"], "kernel"))
        return self.op("Add", y, self.const(p["bias"], "bias")) if "bias" in p else y

    def activation(self, x: str, name: str) -> str:
        """A flax.linen activation by name."""
        if name == "elu":
            return self.op("Elu", x, alpha=1.0)
        if name == "relu":
            return self.op("Relu", x)
        if name == "tanh":
            return self.op("Tanh", x)
        if name in ("silu", "swish"):
            return self.op("Mul", x, self.op("Sigmoid", x))
        if name == "gelu":
            return self.gelu(x)
        raise ValueError(f"No ONNX export for activation {name!r} (elu, relu, tanh, silu, gelu).")

    def gelu(self, x: str) -> str:
        """flax.linen.gelu (approximate=True): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        cube = self.op("Mul", self.op("Mul", x, x), x)
        inner = self.op("Add", x, self.op("Mul", cube, self.const(0.044715)))
        t = self.op("Tanh", self.op("Mul", inner, self.const(math.sqrt(2.0 / math.pi))))
        half_x = self.op("Mul", x, self.const(0.5))
        return self.op("Mul", half_x, self.op("Add", t, self.const(1.0)))

    @mirrors(nn.LayerNorm, whole=True)
    def layer_norm(self, x: str, p: Mapping, epsilon: float = 1e-6) -> str:
        """flax.linen.LayerNorm over the last axis (flax's default epsilon)."""
        return self.op("LayerNormalization", x, self.const(p["scale"]), self.const(p["bias"]),
                       axis=-1, epsilon=epsilon)

    def batch_shape(self, x: str, tail: list[int]) -> str:
        """The int64 shape [B, *tail], B read from the first axis of `x`."""
        batch = self.op("Slice", self.op("Shape", x), self.const([0], dtype=np.int64),
                        self.const([1], dtype=np.int64))
        return self.op("Concat", batch, self.const(tail, dtype=np.int64), axis=0)

    def slice_last(self, x: str, start: int, stop: int) -> str:
        """x[..., start:stop]."""
        return self.op("Slice", x, self.const([start], dtype=np.int64),
                       self.const([stop], dtype=np.int64), self.const([-1], dtype=np.int64))

    def pool(self, features: str, pooling: str, mask_f: str | None, mask_b: str | None) -> str:
        """point_encoders.pool over axis 1 of [B, N, F]; `mask_f` [B, N, 1] float, `mask_b`
        [B, N, 1] bool (None: every point counts)."""
        if mask_f is None:
            mean = self.reduce("ReduceMean", features, [1])
            maximum = self.reduce("ReduceMax", features, [1])
        else:
            count = self.reduce("ReduceSum", mask_f, [1])  # [B, 1]
            total = self.reduce("ReduceSum", self.op("Mul", features, mask_f), [1])
            mean = self.op("Div", total, self.op("Max", count, self.const(1.0)))
            hidden_low = self.op("Where", mask_b, features, self.const(-np.inf))
            maximum = self.reduce("ReduceMax", hidden_low, [1])
            any_visible = self.op("Greater", count, self.const(0.0))
            maximum = self.op("Where", any_visible, maximum, self.const(0.0))
        if pooling == "mean":
            return mean
        if pooling == "max":
            return maximum
        if pooling == "mean_max":
            return self.op("Concat", mean, maximum, axis=-1)
        raise ValueError(f"Unknown pooling {pooling!r}")

    @mirrors(point_encoders.PointNet)
    def point_net(self, points: str, p: Mapping, pooling: str, activation: str,
                  mask_f: str | None, mask_b: str | None) -> str:
        """point_encoders.PointNet: shared MLP on every point, then pooling."""
        x = points
        for i in range(len(p)):
            x = self.activation(self.dense(x, p[f"shared_{i}"]), activation)
        return self.pool(x, pooling, mask_f, mask_b)

    @mirrors(point_encoders.PointEncoder)
    def point_encoder(self, points: str, p: Mapping, kind: str, pooling: str, activation: str,
                      mask: str | None, num_points: int) -> str:
        """point_encoders.PointEncoder on paired points [B, N, 6]; `mask` [B, N] bool or None."""
        mask_b = mask_f = None
        if mask is not None:
            mask_b = self.unsqueeze(mask, [-1])
            mask_f = self.op("Cast", mask_b, to=TensorProto.FLOAT)
        if kind == "paired":
            return self.point_net(points, p["paired"], pooling, activation, mask_f, mask_b)
        if kind == "decoupled":
            current = self.point_net(self.slice_last(points, 0, 3), p["current"], pooling,
                                     activation, mask_f, mask_b)
            target = self.point_net(self.slice_last(points, 3, 6), p["target"], pooling,
                                    activation, mask_f, mask_b)
            return self.op("Concat", current, target, axis=-1)
        if kind == "mlp":
            x = points if mask_f is None else self.op("Mul", points, mask_f)
            x = self.op("Reshape", x, self.const([0, num_points * 6], dtype=np.int64))
            for i in range(len(p)):
                x = self.activation(self.dense(x, p[f"mlp_{i}"]), activation)
            return x
        raise ValueError(f"Unknown point encoder {kind!r}")

    @mirrors(nn.MultiHeadDotProductAttention, whole=True)
    def attention(self, x: str, p: Mapping, num_heads: int) -> str:
        """flax.linen.MultiHeadDotProductAttention, self-attention over axis 1 of [B, T, W]."""
        width = p["query"]["kernel"].shape[0]
        head_dim = p["query"]["kernel"].shape[-1]
        split = self.const([0, 0, num_heads, head_dim], dtype=np.int64)

        def project(q):  # [B, T, W] -> [B, H, T, D]
            kernel = p[q]["kernel"].reshape(width, num_heads * head_dim)
            y = self.dense(x, {"kernel": kernel, "bias": p[q]["bias"].reshape(-1)})
            return self.op("Transpose", self.op("Reshape", y, split), perm=[0, 2, 1, 3])

        query = self.op("Mul", project("query"), self.const(1.0 / math.sqrt(head_dim)))
        key_t = self.op("Transpose", project("key"), perm=[0, 1, 3, 2])
        weights = self.op("Softmax", self.op("MatMul", query, key_t), axis=-1)
        out = self.op("Transpose", self.op("MatMul", weights, project("value")), perm=[0, 2, 1, 3])
        out = self.op("Reshape", out, self.const([0, 0, num_heads * head_dim], dtype=np.int64))
        kernel = p["out"]["kernel"].reshape(num_heads * head_dim, -1)
        return self.dense(out, {"kernel": kernel, "bias": p["out"]["bias"]})

    @mirrors(student._Embed)
    def embed(self, x: str, size: int, p: Mapping, width: int) -> str:
        """networks/student.py _Embed: a two-layer MLP to `width`, or (size 0) the learned
        constant token broadcast over the batch."""
        if size == 0:
            return self.op("Expand", self.const(p["token"]),
                           self.batch_shape("last_action", [width]))
        return self.dense(self.activation(self.dense(x, p["dense_0"]), "elu"), p["dense_1"])

    @mirrors(student._Block)
    def block(self, x: str, p: Mapping, num_heads: int) -> str:
        """networks/student.py _Block: pre-LayerNorm self-attention and MLP, over [B, T, W]."""
        x = self.op("Add", x, self.attention(self.layer_norm(x, p["ln_attn"]), p["attn"],
                                             num_heads))
        h = self.gelu(self.dense(self.layer_norm(x, p["ln_mlp"]), p["mlp_0"]))
        return self.op("Add", x, self.dense(h, p["mlp_1"]))

    @mirrors(ppo.PointTrunk)
    def point_trunk(self, x: str, p: Mapping, network: Mapping, obs_size: int) -> str:
        """networks/ppo.py PointTrunk on observations [B, D]: the point encoder on the first
        `6 num_points` entries, concatenated with the rest, then the hidden MLP."""
        n = int(network["num_points"])
        if n:
            points = self.op("Reshape", self.slice_last(x, 0, 6 * n),
                             self.const([0, n, 6], dtype=np.int64))
            encoding = self.point_encoder(points, p["PointEncoder_0"], network["encoder"],
                                          network["pooling"], network["activation"], None, n)
            x = self.op("Concat", encoding, self.slice_last(x, 6 * n, obs_size), axis=-1)
        for i in range(len(network["policy_hidden"])):
            x = self.activation(self.dense(x, p[f"Dense_{i}"]), network["activation"])
        return x

    def model(self, inputs: list, outputs: list, metadata: Mapping[str, str]) -> onnx.ModelProto:
        """The checked ModelProto of this graph, its opset recorded in the metadata too.

        The opset goes in the `contract.OPSET_KEY` entry as well as the opset import; the IR
        version is the oldest that holds the opset (at least IR_VERSION).

        Raises:
          onnx.checker.ValidationError: a node not valid in this opset (a bug here).
        """
        graph = helper.make_graph(self.nodes, "dex4d_policy", inputs, outputs, self.initializers)
        opset_id = helper.make_opsetid("", self.opset)
        model = helper.make_model(graph, opset_imports=[opset_id], producer_name="dex4d-jax")
        model.ir_version = max(IR_VERSION, helper.find_min_ir_version_for([opset_id]))
        metadata = {**metadata, contract.OPSET_KEY: json.dumps(self.opset)}
        for key, value in metadata.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=str(value)))
        onnx.checker.check_model(model, full_check=True)
        return model


def _input(name: str, dtype, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


@mirrors(student.StudentNetwork)
def student_model(params: Mapping, network: Mapping, sizes: Mapping[str, int],
                  metadata: Mapping[str, str], opset: int = opsets.DEFAULT_OPSET
                  ) -> onnx.ModelProto:
    """The student (networks/student.py StudentNetwork) as an ONNX model.

    Args:
      params: the network's parameters (`{"params": ...}` or the inner dict), numpy arrays.
      network: the run config's `network` section (width, num_layers, num_heads, arch, encoder).
      sizes: {"joint_pos", "joint_vel", "action", "points"}: input sizes.
      metadata: key/value pairs stored in the file (the opset is added, `contract.OPSET_KEY`).
      opset: the ONNX opset to write (opsets.MIN_OPSET to opsets.newest_opset()).

    Raises:
      opsets.OpsetError: an opset the graph cannot be written in.

    Inputs: joint_pos [B, Q], joint_vel [B, V], last_action [B, A] (float32), paired_points
    [B, P, 6] (float32), point_mask [B, P] (bool). Outputs: action [B, A] (clipped to [-1, 1],
    what the environment executes), next_joint_pos [B, Q], next_joint_vel [B, V].
    """
    p = params.get("params", params)
    q, v, a, n = sizes["joint_pos"], sizes["joint_vel"], sizes["action"], sizes["points"]
    width = int(network["width"])
    g = Graph(opset)

    point_feat = g.point_encoder("paired_points", p["points"], network["encoder"], "mean_max",
                                 "elu", "point_mask", n)
    tokens = [g.embed("joint_pos", q, p["embed_qpos"], width),
              g.embed("joint_vel", v, p["embed_qvel"], width),
              g.embed("last_action", a, p["embed_action"], width),
              g.dense(point_feat, p["embed_points"])]
    x = g.op("Concat", *(g.unsqueeze(t, [1]) for t in tokens), axis=1)  # [B, 4, W]
    if network["arch"] == "transformer":
        for i in range(int(network["num_layers"])):
            x = g.block(x, p[f"block_{i}"], int(network["num_heads"]))
        x = g.layer_norm(x, p["ln_out"])
        feats = [g.op("Gather", x, g.const(i, dtype=np.int64), axis=1) for i in range(3)]
    elif network["arch"] == "mlp":
        h = g.op("Reshape", x, g.const([0, 4 * width], dtype=np.int64))
        for i in range(int(network["num_layers"])):
            h = g.activation(g.dense(h, p[f"mlp_{i}"]), "elu")
        feats = [h, h, h]
    else:
        raise ValueError(f"Unknown student arch {network['arch']!r}")
    action = g.op("Clip", g.dense(feats[2], p["head_action"]), g.const(-1.0), g.const(1.0))
    g.output(action, "action")
    for name, size, feat, head in (("joint_pos", q, feats[0], "head_qpos"),
                                   ("joint_vel", v, feats[1], "head_qvel")):
        nxt = name if size == 0 else g.op("Add", name, g.dense(feat, p[head]))
        g.output(nxt, f"next_{name}")
    f32, b = TensorProto.FLOAT, "batch"
    inputs = [_input(name, TensorProto.BOOL if name == "point_mask" else f32, [b, *shape])
              for name, shape in contract.student_input_shapes(sizes).items()]
    outputs = [_input(name, f32, [b, size]) for name, size in
               zip(contract.STUDENT_OUTPUTS, (a, q, v), strict=True)]
    return g.model(inputs, outputs, metadata)


@mirrors(ppo.PointPolicy)
def teacher_model(params: Mapping, network: Mapping, obs_size: int, action_size: int,
                  metadata: Mapping[str, str], opset: int = opsets.DEFAULT_OPSET
                  ) -> onnx.ModelProto:
    """A teacher's deterministic policy (networks/ppo.py PointPolicy's mean) as an ONNX model.

    Input: observation [B, D] (the environment's policy observation, float32). Output: action
    [B, A], the Gaussian's mean clipped to [-1, 1] (what the environment executes). `opset` as
    for `student_model` (one range for both, though the teacher has no LayerNormalization).
    """
    p = params.get("params", params)
    g = Graph(opset)
    x = g.point_trunk("observation", p["trunk"], network, obs_size)
    action = g.op("Clip", g.dense(x, p["Dense_0"]), g.const(-1.0), g.const(1.0))
    g.output(action, "action")
    f32 = TensorProto.FLOAT
    return g.model([_input(contract.TEACHER_INPUTS[0], f32, ["batch", obs_size])],
                   [_input(contract.TEACHER_OUTPUTS[0], f32, ["batch", action_size])], metadata)
