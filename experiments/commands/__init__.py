"""One module per `dex4d` subcommand: each parses its arguments, calls the library and prints.

Every module has `add_arguments(parser)` and `run(args, parser, argv) -> exit code`
(experiments/cli.py holds the one-line help of each). Module-level imports stay light (no
JAX), so that a command such as `dex4d run` loads only what it uses.
"""
