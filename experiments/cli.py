r"""The `dex4d` command line: one module per subcommand under experiments/commands/.

dex4d train teacher --env ap2ap_wrench --encoder paired --preset quick --out runs/teacher
dex4d train teacher --resume --out runs/teacher
dex4d train teacher --env ap2ap --stage 1 --preset paper --out runs/stage1
dex4d train teacher --out runs/t2 --set ppo.learning_rate=1e-4 --set env.reward_weights.goal=2
dex4d train student --teacher runs/teacher --env ap2ap_wrench --out runs/student
dex4d export --policy runs/student --out student.onnx
dex4d eval --policy runs/student --env ap2ap_wrench --trials 100 --method all --out runs/eval
dex4d run --onnx student.onnx --tracks track.npz --robot sim --object box:0.03,0.02,0.015
dex4d tracks from-video --video v.mp4 --mask m.png --depth d.npz --camera c.npz \
      --depth0 d0.npy --out track.npz
dex4d envs
dex4d objects --split train --show 40 --out objects_train.png
dex4d scene --object mug --render scene.png
dex4d render --policy runs/student --env ap2ap_wrench --out rollout.mp4 --episodes 2
dex4d view rollout.npz
dex4d plot runs/teacher runs/teacher_mlp --out curves.png
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand -> module. Only the chosen one is imported and given its arguments, so that
# `dex4d run` (no JAX) never loads what `dex4d train` needs.
COMMANDS = {
    "train": "dex4d_jax.experiments.commands.train",
    "export": "dex4d_jax.experiments.commands.export",
    "run": "dex4d_jax.experiments.commands.run",
    "eval": "dex4d_jax.experiments.commands.eval",
    "tracks": "dex4d_jax.tracks.cli",
    "envs": "dex4d_jax.experiments.commands.envs",
    "objects": "dex4d_jax.experiments.commands.objects",
    "scene": "dex4d_jax.experiments.commands.scene",
    "render": "dex4d_jax.experiments.commands.render",
    "view": "dex4d_jax.experiments.commands.view",
    "plot": "dex4d_jax.experiments.commands.plot",
}
_HELP = {
    "train": "train a policy (teacher with PPO, student with DAgger)",
    "export": "export a trained student or teacher to one ONNX file (docs/deploy.md)",
    "run": "run an exported student in closed loop along a 3D point track (docs/deploy.md)",
    "eval": "the simulated benchmark: six tasks, SR/TP, NovaFlow baselines (docs/benchmark.md)",
    "tracks": "3D object point tracks from 2D tracks or a video (docs/tracks.md)",
    "envs": "list the registered environments",
    "objects": "count the object library by family; render a sheet of it",
    "scene": "describe the robot scene; render it at the grasp-ready pose",
    "render": "render a policy's rollouts to an MP4 video with its points drawn (docs/guide.md)",
    "view": "3D viewer (Viser) of a point track, a rollout or the object library",
    "plot": "learning curves of one or more runs from their metrics.jsonl",
}


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: its usage errors show its own usage line and `dex4d: error: ...`,
    the one error prefix of every dex4d command."""

    def error(self, message: str):
        """Prints the command's usage and `dex4d: error: MESSAGE` to stderr; exits with 2."""
        self.print_usage(sys.stderr)
        self.exit(2, f"dex4d: error: {message}\n")


def _parser(chosen: str | None):
    """(the parser, the chosen command's module, the chosen command's own parser).

    Only the `chosen` command's arguments are built (others show their help). Its own parser
    is what the command reports usage errors with, so that an error shows its usage line, not
    the list of every command.
    """
    parser = argparse.ArgumentParser(prog="dex4d", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    module, own = None, parser
    for name in COMMANDS:
        if name != chosen:
            sub.add_parser(name, help=_HELP[name])
            continue
        module = importlib.import_module(COMMANDS[name])
        if name == "tracks":  # the point-track package builds its own subparser
            module.add_parser(sub)
            continue
        own = sub.add_parser(name, help=_HELP[name])
        module.add_arguments(own)
    return parser, module, own


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dex4d` command; returns the exit status (2: bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from dex4d_jax.experiments.commands.common import error, gl_setting_problem  # noqa: PLC0415

    problem = gl_setting_problem()
    if problem:
        return error(problem)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    if argv[:2] == ["tracks", "demo"]:
        from dex4d_jax.experiments.commands.common import use_headless_gl  # noqa: PLC0415

        use_headless_gl()
    parser, module, own = _parser(chosen)
    args = parser.parse_args(argv)
    try:
        if args.command == "tracks":
            return module.run(args, parser)
        return module.run(args, own, argv)
    except KeyboardInterrupt as err:  # Ctrl-C at any moment: one line, exit 130
        print(f"\n{err}" if str(err) else "\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
