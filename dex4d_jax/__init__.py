"""dex4d-jax: a JAX/MJX reimplementation of Dex4D, a task-agnostic point-track policy."""

import os as _os

__version__ = "0.1.0"

# XLA's C++ warnings (e.g. about reloading cached CPU executables) are noise for users.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# XLA's CPU fusion emitters make MJX several times slower on a CPU: turn them off before JAX
# starts its backends (dex4d_jax/xla_flags.py says why, and how to opt out).
from dex4d_jax import xla_flags as _xla_flags  # noqa: E402

_xla_flags.apply()

# The repository keeps envs/, mjcf/ and experiments/ beside this folder, and the installed
# distribution maps them to dex4d_jax.envs, dex4d_jax.mjcf and dex4d_jax.experiments (see
# pyproject.toml). When this module is imported straight from a source checkout (for example
# `python -m pytest` in the repository root, which puts the checkout first on sys.path), the
# checkout's root joins the package path so those subpackages resolve the same way.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(
    _os.path.join(_root, "envs")
):
    __path__.append(_root)  # noqa: F821 (module attribute of a package)
