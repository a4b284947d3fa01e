"""dex4d_jax sets XLA's CPU flags before JAX starts its backends (dex4d_jax/xla_flags.py)."""

import os
import subprocess
import sys

from dex4d_jax import xla_flags

_FLAG = "--xla_cpu_use_fusion_emitters=false"


def test_apply_adds_the_flag_and_keeps_the_users_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert xla_flags.apply(env, (0, 9)) == "set"
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", _FLAG]
    assert xla_flags.apply(env, (0, 10)) == "user"  # idempotent: nothing added twice
    assert env["XLA_FLAGS"].count("fusion_emitters") == 1


def test_no_flag_for_a_jaxlib_that_rejects_it_or_without_jaxlib():
    """jaxlib 0.11.2 aborts at backend start on the flag ("Unknown flag in XLA_FLAGS")."""
    for version in ((0, 11), (1, 0), None):
        env = {}
        assert xla_flags.apply(env, version) == "unsupported"
        assert "XLA_FLAGS" not in env


def test_a_users_own_value_wins_and_the_opt_out_leaves_xla_alone():
    env = {"XLA_FLAGS": "--xla_cpu_use_fusion_emitters=true"}
    assert xla_flags.apply(env, (0, 9)) == "user"
    assert env["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"
    env = {xla_flags.OPT_OUT: "1"}
    assert xla_flags.apply(env, (0, 9)) == "opted_out"
    assert "XLA_FLAGS" not in env


def test_the_flag_is_in_effect_in_this_process():
    # tests/conftest.py imports dex4d_jax before JAX computes anything.
    if xla_flags._status == "unsupported":
        assert _FLAG not in os.environ.get("XLA_FLAGS", "")
    else:
        assert _FLAG in os.environ.get("XLA_FLAGS", "") or os.environ.get(xla_flags.OPT_OUT)


def test_too_late_is_reported_and_warned_about():
    """JAX computing before dex4d_jax is imported: the flag cannot act, and building an MJX
    environment on the CPU says so."""
    code = (
        "import warnings, jax, jax.numpy as jnp; jnp.zeros(1).block_until_ready()\n"
        "import dex4d_jax; from dex4d_jax import xla_flags\n"
        "if xla_flags._status == 'unsupported': raise SystemExit(0)\n"
        "assert xla_flags._status == 'too_late', xla_flags._status\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); xla_flags.warn_if_slow_cpu()\n"
        "assert any('slower' in str(x.message) for x in w), [str(x.message) for x in w]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
