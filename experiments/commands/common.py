"""What several subcommands share: the error line, the compilation cache, offscreen GL."""

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


def output_problem(path: str, flag: str, suffix: str | None = None, is_folder: bool = False,
                   create_missing: bool = False) -> str | None:
    """Why `path` (given by `flag`) cannot be written, or None; nothing is created.

    Args:
      path: a file to write, or with `is_folder` a folder to create or fill.
      flag: the argument that named it, for the message.
      suffix: the ending a file must have (what its writer picks the format from).
      is_folder: `path` is a folder (a run folder, an output folder).
      create_missing: missing folders on the way will be created (they must be creatable).
    """
    if os.path.isdir(path) and not is_folder:
        return f"{flag} {path} is a folder; give a file name"
    if os.path.exists(path) and not os.path.isdir(path) and is_folder:
        return f"{flag} {path} is a file; give a folder"
    if suffix and not path.endswith(suffix):
        return f"{flag} {path} does not end in {suffix}; give a {suffix} file name"
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{flag} {path}: {existing} is a file, not a folder; choose another location"
    if existing != folder and not create_missing:
        return f"{flag} {path}: the folder {folder} does not exist; create it first"
    if not os.access(existing, os.W_OK | os.X_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"{flag} {path} is not writable; choose another location"
    return None
