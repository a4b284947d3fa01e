"""XLA flags that dex4d-jax sets for JAX's CPU backend before the backend starts.

`--xla_cpu_use_fusion_emitters=false`: the CPU backend's new fusion emitters (on by default
since jaxlib 0.9) compile MJX's many small, batched kinematics and dynamics fusions into very
slow code: on the project's 2-core CPU, `jax.vmap(mjx.kinematics)` of the robot scene at 64
environments takes 112 ms with them and 0.38 ms without, and the robot's bare physics step
gains 1.7-7x (docs/benchmarks.md, "The robot environment, issue 17"; upstream:
openxla/xla#41173, jax-ml/jax#33761). The flag touches only the CPU backend (GPU and TPU
ignore it). jaxlib 0.9.2 and 0.10.2 accept it; jaxlib 0.11.2 no longer knows it and aborts
the process at backend start ("Unknown flag in XLA_FLAGS"), so it is added only for jaxlib
older than FLAGS_BEFORE (checked on each of those releases).

`apply()` runs when `dex4d_jax` is imported and appends the flag to the `XLA_FLAGS`
environment variable, unless
  * the installed jaxlib is FLAGS_BEFORE or newer, or not installed (the JAX-free deploy), or
  * the user already chose a value for it in `XLA_FLAGS` (theirs is kept), or
  * `DEX4D_JAX_KEEP_XLA_FLAGS=1` is set (leave XLA's defaults alone), or
  * JAX's backends were already started in this process (XLA reads its flags once, when the
    first backend starts, so a later change would have no effect; `warn_if_slow_cpu()` says so
    when an MJX environment is built).
It never imports JAX itself (the deploy runtime is JAX-free and imports this package).
"""

from __future__ import annotations

import os
import sys
import warnings

CPU_FLAGS = ("--xla_cpu_use_fusion_emitters=false",)
OPT_OUT = "DEX4D_JAX_KEEP_XLA_FLAGS"
# The first jaxlib release that rejects CPU_FLAGS (0.11.2 checked; 0.10.2 accepts them).
FLAGS_BEFORE = (0, 11)

# What apply() found: "set" (flags added before the backends started), "user" (XLA_FLAGS
# already names them), "opted_out", "too_late" (backends already started), "unsupported"
# (jaxlib too new, or absent), or None.
_status: str | None = None


def _backends_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    started = getattr(bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else False


def _jaxlib_version() -> tuple[int, ...] | None:
    """The installed jaxlib's (major, minor), read from its metadata (JAX is not imported)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        parts = metadata.version("jaxlib").split(".")[:2]
        return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)
    except metadata.PackageNotFoundError:
        return None


def apply(environ: dict | None = None, jaxlib_version: tuple[int, ...] | None = ()) -> str:
    """Adds CPU_FLAGS to `XLA_FLAGS` when that can still take effect.

    Args:
      environ: the environment to change (os.environ by default; tests pass a dict).
      jaxlib_version: (major, minor) to decide by; the installed jaxlib's by default, None
        for "no jaxlib".

    Returns:
      "set", "user", "opted_out", "unsupported" or "too_late" (see the module docstring).
    """
    global _status
    env = os.environ if environ is None else environ
    version = _jaxlib_version() if jaxlib_version == () else jaxlib_version
    current = env.get("XLA_FLAGS", "")
    names = [flag.split("=")[0] for flag in CPU_FLAGS]
    if env.get(OPT_OUT, "") not in ("", "0"):
        status = "opted_out"
    elif version is None or tuple(version) >= FLAGS_BEFORE:
        status = "unsupported"
    elif all(name in current for name in names):
        status = "user"
    elif environ is None and _backends_started():  # a dict given by a test is not XLA's
        status = "too_late"
    else:
        missing = [f for f, n in zip(CPU_FLAGS, names, strict=True) if n not in current]
        env["XLA_FLAGS"] = " ".join([current, *missing]).strip()
        status = "set"
    if environ is None:
        _status = status
    return status


def warn_if_slow_cpu() -> None:
    """Warns once when MJX runs on a CPU backend that started without CPU_FLAGS.

    Called by the MJX environments' constructors; does nothing on GPU/TPU, when the flags are
    in effect, or when the user opted out.
    """
    global _status
    if _status != "too_late":
        return
    import jax  # noqa: PLC0415 (only MJX environments, which import JAX anyway, call this)

    if jax.default_backend() != "cpu":
        return
    warnings.warn(
        "JAX's CPU backend started before dex4d_jax was imported, without "
        f"{' '.join(CPU_FLAGS)}: MJX environments run several times slower on this CPU. "
        "Import dex4d_jax before the first JAX computation, or set XLA_FLAGS="
        f"'{' '.join(CPU_FLAGS)}' before starting Python (dex4d_jax/xla_flags.py).",
        stacklevel=3)
    _status = "warned"
