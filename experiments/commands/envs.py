"""`dex4d envs`: the registered environments."""

from __future__ import annotations


def add_arguments(parser) -> None:
    """No arguments."""


def run(args, parser, argv) -> int:
    """Prints one environment name per line."""
    from dex4d_jax import envs  # noqa: PLC0415

    print("\n".join(envs.ALL_ENVS))
    return 0
