"""`dex4d plot`: learning curves of one or more runs from their metrics.jsonl."""

from __future__ import annotations

import argparse

from dex4d_jax.experiments.commands.common import error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="training run folders (teacher or student), one line each")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--keys", nargs="+", default=None, metavar="KEY",
                        help="metrics.jsonl keys, one panel each (default: evaluation reward, "
                             "evaluation success rate, training loss)")
    parser.add_argument("--x", choices=("step", "time"), default="step",
                        help="horizontal axis: environment steps or wall-clock time "
                             "(default: step)")
    parser.add_argument("--title", default=None, help="figure title")


def run(args, parser, argv) -> int:
    """Reads every run's metrics, then writes the PNG; one line and exit 2 on bad input."""
    from dex4d_jax.outputs import output_problem  # noqa: PLC0415
    from dex4d_jax.viz import plots  # noqa: PLC0415

    problem = output_problem(args.out, "--out", ".png")
    if problem:
        return error(problem)
    try:
        runs = {run: plots.read_metrics(run) for run in args.runs}
    except (FileNotFoundError, plots.MetricsError) as err:
        return error(str(err))
    panels = None if args.keys is None else {key: (key,) for key in args.keys}
    try:
        notes = plots.plot_runs(runs, args.out, panels, args.title, args.x)
    except plots.MetricsError as err:
        return error(str(err))
    except OSError as err:
        return error(f"cannot write {args.out}: {err}")
    for note in notes:
        print(f"note: {note}")
    print(f"Wrote {args.out} ({len(runs)} run(s))")
    return 0
