"""Test helpers: offscreen rendering in a fresh Python process, and running the CLI."""

import os
import subprocess
import sys
import textwrap

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_headless(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs Python in a fresh process (MuJoCo picks its GL backend once, at import)."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def skip_without_gl() -> None:
    """Skips the calling test, saying why, when no OpenGL context can be created."""
    probe = run_headless("""
        import mujoco
        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    """)
    if probe.returncode != 0:
        pytest.skip(f"no OpenGL backend for offscreen rendering: {probe.stderr.strip()[-300:]}")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Runs `dex4d ARGV` in-process; returns (exit code, stdout + stderr)."""
    from dex4d_jax.experiments import cli  # noqa: PLC0415

    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out + out.err
