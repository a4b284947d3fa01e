"""What several subcommands share: the error line, the compilation cache, offscreen GL.

`output_problem` (an output that cannot be written) lives in `dex4d_jax.outputs`, which the
point-track command uses too.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def error(message: str) -> int:
    """Prints `dex4d: error: MESSAGE` to stderr; returns the usage-error exit code 2."""
    print(f"dex4d: error: {message}", file=sys.stderr)
    return 2


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so a second run skips most of the compile time.

    The cache lives in ~/.cache/dex4d_jax/jax, or in $DEX4D_JAX_CACHE.
    """
    import jax  # noqa: PLC0415

    cache = os.environ.get("DEX4D_JAX_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "dex4d_jax", "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def use_headless_gl() -> None:
    """Picks EGL for offscreen rendering on Linux when it is installed and nothing was chosen.

    MuJoCo reads MUJOCO_GL once, when it is first imported, so this runs before any import.
    """
    if sys.platform.startswith("linux") and ctypes.util.find_library("EGL"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def write_render(render_and_save, path: str, what: str) -> int:
    """Runs `render_and_save()`, which writes `path`; turns GL and file errors into messages."""
    import mujoco  # noqa: PLC0415

    try:
        render_and_save()
    except mujoco.FatalError as err:
        return error(f"no OpenGL context for offscreen rendering ({err}); on a headless "
                     "machine set MUJOCO_GL=egl or MUJOCO_GL=osmesa")
    except OSError as err:
        return error(f"cannot write {path}: {err}")
    print(f"Wrote {path} ({what})")
    return 0
