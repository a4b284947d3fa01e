"""`dex4d export`: a trained student or teacher to one ONNX file with its contract inside."""

from __future__ import annotations

import argparse

from dex4d_jax.experiments.commands.common import enable_compilation_cache, error

from dex4d_jax.outputs import output_problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("--policy", required=True, metavar="DIR",
                        help="a student or teacher run folder (its latest checkpoint is "
                             "exported) or one of its checkpoint folders")
    parser.add_argument("--out", required=True, metavar="FILE.onnx",
                        help="the ONNX file to write (its folder is created if missing); it "
                             "is written only after the graph has been checked against the "
                             "trained policy (see docs/deploy.md)")
    # default None: opsets.DEFAULT_OPSET, resolved in run() (onnx is not imported for --help)
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="the ONNX opset to write, 17 or newer (default: 17, which runs in "
                             "onnxruntime and, converted by onnx2torch, in PyTorch: `dex4d run "
                             "--runtime torch`; newer opsets run in onnxruntime only)")


def run(args, parser, argv) -> int:
    """Builds the policy's environment from its run, exports, prints what was written."""
    from dex4d_jax.export import opsets  # noqa: PLC0415

    opset = opsets.DEFAULT_OPSET if args.opset is None else args.opset
    problem = opsets.opset_problem(opset)
    if problem:
        return error(f"--opset {opset}: {problem}")
    problem = output_problem(args.out, "--out", suffix=".onnx", create_missing=True)
    if problem:
        return error(problem)
    import os  # noqa: PLC0415

    from dex4d_jax.experiments import configs  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.config_checks import SettingError  # noqa: PLC0415
    from dex4d_jax.export import onnx_graph, policy  # noqa: PLC0415
    from dex4d_jax.training import checkpoint, run_dir  # noqa: PLC0415

    try:
        if os.path.isfile(args.policy):
            raise run_dir.RunDirError(f"--policy {args.policy} is a file; give a run folder "
                                      "(its latest checkpoint) or one of its checkpoint folders")
        _, ckpt = run_dir.resolve_checkpoint(args.policy)
        folder = run_dir.run_of(ckpt)
        config = configs.validate(run_dir.read_run_config(folder),
                                  os.path.join(folder, run_dir.CONFIG_FILE))
        env = envs.from_run_config(config, evaluation=True)
        enable_compilation_cache()
        policy.export_policy(args.policy, args.out, env, opset=opset)
    except (run_dir.RunDirError, SettingError, OSError, checkpoint.CheckpointError,
            policy.ExportMismatchError, onnx_graph.MissingMirrorError,
            opsets.OpsetError) as err:
        return error(" ".join(str(err).strip("'\"").split()))
    return 0
