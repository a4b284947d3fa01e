"""Student inference latency at batch 1 on one CPU thread: onnxruntime, PyTorch and jitted JAX.

    python bench/policy_latency.py                      # the paper's student, 22 joints
    python bench/policy_latency.py --sizes 0 6 6        # the ap2ap_wrench student

The network is the paper's student (4 tokens of width 128, 4 attention layers, 4 heads, a
[128, 128] PointNet over 64 paired points) with random weights: latency does not depend on
the values. The graph is exported at the default opset (17). The process is pinned to one
core, XLA, onnxruntime and PyTorch to one thread (torch.set_num_threads(1)). Reported: p50 and
p99 over `--calls` calls after a warm-up, for the raw onnxruntime session, the deploy
runtime's OnnxPolicy on onnxruntime (input checks included), the onnx2torch-converted module
called under torch.inference_mode() (numpy in, numpy out), the deploy OnnxPolicy on the torch
runtime (input checks included), and the jitted JAX apply (with block_until_ready and the
result copied to numpy, as a control loop would need it). The PyTorch rows need the torch
extra (pip install "dex4d-jax[torch]"); without it they are left out, with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import jax  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from dex4d_jax import contract  # noqa: E402
from dex4d_jax.deploy.policy import OnnxPolicy, RuntimeUnavailableError  # noqa: E402
from dex4d_jax.export import onnx_graph  # noqa: E402
from dex4d_jax.export.policy import random_student_inputs  # noqa: E402
from dex4d_jax.networks.student import StudentNetwork  # noqa: E402


def _percentiles(fn, calls: int) -> tuple[float, float]:
    for _ in range(50):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=3, default=(22, 22, 22),
                        metavar=("JOINT_POS", "JOINT_VEL", "ACTION"))
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    q, v, a = args.sizes
    sizes = {"joint_pos": q, "joint_vel": v, "action": a, "points": 64}
    net = StudentNetwork(action_size=a)
    x = random_student_inputs(sizes, 1)
    params = net.init(jax.random.PRNGKey(0), *x.values())
    network = {"width": 128, "num_layers": 4, "num_heads": 4, "arch": "transformer",
               "encoder": "paired"}
    info = {"joint_names": [f"j{i}" for i in range(a)], "control_frequency_hz": 30.0,
            "action_mapping": {"kind": "twist", "max_lin_speed": 1.0, "max_ang_speed": 1.0},
            "points_origin_in_world": [0, 0, 0], "success_threshold": 0.05, "hold_steps": 1}
    meta = contract.metadata(contract.STUDENT_CONTRACT, "bench", {}, info, sizes)
    model = onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params), network,
                                     sizes, meta)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "student.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        policy = OnnxPolicy(path, num_threads=1)
        try:
            torch_policy = OnnxPolicy(path, num_threads=1, runtime="torch")
        except RuntimeUnavailableError as err:
            torch_policy, no_torch = None, str(err)
    session = policy.backend.session
    batch = {k: np.asarray(val) for k, val in x.items()}
    single = {k: val[0] for k, val in batch.items()}

    @jax.jit
    def apply(params, x):
        return net.apply(params, *x)

    jx = [jax.device_put(batch[k]) for k in ("joint_pos", "joint_vel", "last_action",
                                             "paired_points", "point_mask")]

    def jax_call():
        out = apply(params, jx)
        return {k: np.asarray(val) for k, val in jax.block_until_ready(out).items()}

    rows = [("onnxruntime session.run", lambda: session.run(None, batch)),
            ("deploy OnnxPolicy (checks included)", lambda: policy(**single))]
    versions = f"jax {jax.__version__}, onnxruntime {ort.__version__}"
    if torch_policy is not None:
        import torch  # noqa: PLC0415

        module = torch_policy.backend.module
        names = contract.STUDENT_INPUTS

        def torch_call():
            with torch.inference_mode():
                out = module(*(torch.from_numpy(batch[k]) for k in names))
            return [o.numpy() for o in out]

        rows += [("torch module (inference_mode, numpy)", torch_call),
                 ("deploy OnnxPolicy torch (checks incl.)", lambda: torch_policy(**single))]
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} thread)"
    rows.append(("JAX jit (block_until_ready, to numpy)", jax_call))
    print(f"student {q}/{v}/{a} (joint_pos/joint_vel/action), 64 points, batch 1, one CPU "
          f"thread, {args.calls} calls; {versions}")
    if torch_policy is None:
        print(f"PyTorch rows left out: {no_torch}")
    print(f"{'':40s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, fn in rows:
        p50, p99 = _percentiles(fn, args.calls)
        print(f"{name:40s} {p50:8.3f} {p99:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
