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


def envs_of(config) -> tuple:
    """(training env, evaluation env) of a run config, built as the command line builds them."""
    from dex4d_jax import envs  # noqa: PLC0415

    return envs.from_run_config(config), envs.from_run_config(config, evaluation=True)


def train_teacher(config, out: str, resume: bool = False, **kwargs):
    """`teacher.train.train_teacher` with the environments the command line would build (from
    `config`, or on resume from the run's saved config).
    """
    from dex4d_jax.teacher import train  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    source = run_dir.read_run_config(out) if config is None else config
    return train.train_teacher(config, out, *envs_of(source), resume=resume, **kwargs)


def train_student(config, out: str, resume: bool = False, **kwargs):
    """`student.train.train_student` with the environments the command line would build."""
    from dex4d_jax.student import train  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    source = run_dir.read_run_config(out) if config is None else config
    return train.train_student(config, out, *envs_of(source), resume=resume, **kwargs)
