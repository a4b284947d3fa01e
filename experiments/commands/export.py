"""`dex4d export`: a trained student or teacher to one ONNX file with its contract inside."""

from __future__ import annotations

import argparse

from dex4d_jax.experiments.commands.common import enable_compilation_cache, error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("--policy", required=True, metavar="DIR",
                        help="a student or teacher run folder (its latest checkpoint is "
                             "exported) or one of its checkpoint folders")
    parser.add_argument("--out", required=True, metavar="FILE.onnx",
                        help="the ONNX file to write (its folder is created if missing); it "
                             "is written only after the graph has been checked against the "
                             "trained policy (see docs/deploy.md)")


def run(args, parser, argv) -> int:
    """Builds the policy's environment from its run, exports, prints what was written."""
    if not args.out.endswith(".onnx"):
        parser.error(f"--out must name a .onnx file, got {args.out!r}")
    enable_compilation_cache()
    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.export import policy  # noqa: PLC0415
    from dex4d_jax.training import checkpoint, run_dir  # noqa: PLC0415

    try:
        _, ckpt = run_dir.resolve_checkpoint(args.policy)
        env = envs.from_run_config(run_dir.read_run_config(run_dir.run_of(ckpt)),
                                   evaluation=True)
        policy.export_policy(args.policy, args.out, env)
    except (run_dir.RunDirError, FileNotFoundError, checkpoint.CheckpointError,
            policy.ExportMismatchError, ValueError, KeyError, TypeError) as err:
        return error(str(err).strip("'\""))
    return 0
