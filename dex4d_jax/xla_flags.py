"""XLA flags that dex4d-jax sets for JAX's CPU backend before the backend starts.

`--xla_cpu_use_fusion_emitters=false`: the CPU backend's new fusion emitters (on by default
since jaxlib 0.9) compile MJX's many small, batched kinematics and dynamics fusions into very
slow code: on the project's 2-core CPU, `jax.vmap(mjx.kinematics)` of the robot scene at 64
environments takes 112 ms with them and 0.38 ms without, and the robot's bare physics step
gains 1.7-7x (docs/benchmarks.md, "Why the robot environment was slow"; upstream:
openxla/xla#41173, jax-ml/jax#33761). The flag touches only the CPU backend (GPU and TPU
ignore it) and exists in every jaxlib the pins allow (0.9 to 0.11, checked in the wheels).

`apply()` runs when `dex4d_jax` is imported and appends the flag to the `XLA_FLAGS`
environment variable, unless
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

# What apply() found: "set" (flags added before the backends started), "user" (XLA_FLAGS
# already names them), "opted_out", "too_late" (backends already started), or None.
_status: str | None = None


def _backends_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    started = getattr(bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else False


def apply(environ: dict | None = None) -> str:
    """Adds CPU_FLAGS to `XLA_FLAGS` when that can still take effect.

    Args:
      environ: the environment to change (os.environ by default; tests pass a dict).

    Returns:
      "set", "user", "opted_out" or "too_late" (see the module docstring).
    """
    global _status
    env = os.environ if environ is None else environ
    current = env.get("XLA_FLAGS", "")
    names = [flag.split("=")[0] for flag in CPU_FLAGS]
    if env.get(OPT_OUT, "") not in ("", "0"):
        status = "opted_out"
    elif all(name in current for name in names):
        status = "user"
    elif _backends_started():
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
