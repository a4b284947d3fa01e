"""What several subcommands share: the error line, the compilation cache, offscreen GL.

`start_distributed` makes `dex4d train` one process of a multi-process (multi-host) job;
`output_problem` (an output that cannot be written) lives in `dex4d_jax.outputs`, which the
point-track command uses too.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


class CommandProblem(Exception):
    """A one-line reason for a command to stop; the command prints it with `error`."""


def read_run_env(path: str, env_name: str):
    """(run config, evaluation environment config) of the run folder or checkpoint `path`,
    checked against the environment `env_name` the command was asked to use.

    Raises:
      CommandProblem: the run's environment is not `env_name`.
      FileNotFoundError, ValueError: no checkpoint, or a config that does not validate
        (`run_dir.resolve_checkpoint`, `configs.validate`); the caller words them.
    """
    from dex4d_jax.experiments import configs  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    _, ckpt = run_dir.resolve_checkpoint(path)
    folder = run_dir.run_of(ckpt)
    config = configs.validate(run_dir.read_run_config(folder),
                              os.path.join(folder, run_dir.CONFIG_FILE))
    name, env_config = envs.run_env_settings(config, evaluation=True)
    if name != env_name:
        raise CommandProblem(f"{path} was trained on {name}, not {env_name}: its points, joints "
                             f"and actions do not fit --env {env_name}")
    return config, env_config


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


# The environment variables that make `dex4d train` one process of a multi-process job.
COORDINATOR, NUM_PROCESSES, PROCESS_ID = ("DEX4D_COORDINATOR", "DEX4D_NUM_PROCESSES",
                                          "DEX4D_PROCESS_ID")
_DISTRIBUTED = (f"{COORDINATOR}=HOST:PORT (process 0's address and a free port), "
                f"{NUM_PROCESSES}=N and {PROCESS_ID}=0..N-1")


def distributed_settings(environ=None) -> tuple[str, int, int] | None:
    """The multi-process job the environment describes, if any.

    Returns:
      (coordinator address, number of processes, process id) from DEX4D_COORDINATOR,
      DEX4D_NUM_PROCESSES and DEX4D_PROCESS_ID, or None when none of them is set.

    Raises:
      ValueError: some but not all are set, or a value is malformed (a one-line message).
    """
    env = os.environ if environ is None else environ
    given = {name: env.get(name, "").strip() for name in (COORDINATOR, NUM_PROCESSES,
                                                          PROCESS_ID)}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(f"{' and '.join(missing)} not set; a multi-process run needs "
                         f"{_DISTRIBUTED}")
    address = given[COORDINATOR]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{COORDINATOR}={address} is not HOST:PORT (process 0's address and "
                         "a free port, e.g. 10.0.0.1:12345)")
    count, index = given[NUM_PROCESSES], given[PROCESS_ID]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{NUM_PROCESSES}={count} is not a positive whole number")
    if not index.isdigit() or int(index) >= int(count):
        raise ValueError(f"{PROCESS_ID}={index} is not one of 0..{int(count) - 1} "
                         f"({NUM_PROCESSES}={count})")
    return address, int(count), int(index)


def start_distributed(environ=None) -> str | None:
    """Joins the multi-process job the DEX4D_* variables describe; returns why not, or None.

    The job that DEX4D_COORDINATOR, DEX4D_NUM_PROCESSES and DEX4D_PROCESS_ID describe is joined
    with `jax.distributed.initialize`, before anything touches a device; nothing happens when
    they are unset. The reason it cannot be joined is one line (bad values, no coordinator).

    On CPUs the processes' collectives go through gloo over TCP, jax 0.9's default
    (`jax_cpu_collectives_implementation`; JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi picks MPI).
    jaxlib 0.9's gloo gives up when the processes reach their first collective more than 30 s
    apart, whatever XLA's timeout flags say, and process 0 compiles and runs an evaluation
    before the first epoch that the others skip; so every process meets the others here, once,
    at startup, where the collectives are set up. Later collectives wait for each other up to
    XLA's CPU collective timeout (`--xla_cpu_collective_timeout_seconds`, 30 min).
    """
    try:
        settings = distributed_settings(environ)
    except ValueError as err:
        return str(err)
    if settings is None:
        return None
    import jax  # noqa: PLC0415
    from jax.experimental import multihost_utils  # noqa: PLC0415

    address, count, index = settings
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count,
                                   process_id=index)
        enable_compilation_cache()  # JAX decides once, at the first compile, whether to cache
        multihost_utils.sync_global_devices("dex4d: every process started")
    except RuntimeError as err:  # unreachable coordinator, timeout, backend already started
        cause = " ".join(str(err).split())
        cause = cause if len(cause) <= 200 else cause[:197] + "..."
        return f"cannot join the {count}-process job at {address} as process {index}: {cause}"
    return None


# MUJOCO_GL value -> (the library MuJoCo loads for it, the Debian packages that provide it).
GL_LIBRARIES = {"egl": ("EGL", "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0"),
                "osmesa": ("OSMesa", "libosmesa6")}


def gl_setting_problem(environ=None) -> str | None:
    """Why the MUJOCO_GL setting cannot work, or None (unset or a usable choice).

    MuJoCo reads MUJOCO_GL when it is imported and fails with a traceback on a library that is
    missing (every command imports it), so `dex4d` checks first and says what to install.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("MUJOCO_GL", "").lower().strip()
    if not value or not sys.platform.startswith("linux"):
        return None
    known = ("glx", "glfw", "enable", "enabled", "on", "true", "1",  # mujoco's own list
             "disable", "disabled", "off", "false", "0", *GL_LIBRARIES)
    if value not in known:
        return (f"MUJOCO_GL={value!r} is not a rendering backend MuJoCo knows; use egl or "
                "osmesa (offscreen), glfw (a display), or unset it")
    if value in GL_LIBRARIES:
        library, packages = GL_LIBRARIES[value]
        if not ctypes.util.find_library(library):
            return (f"MUJOCO_GL={value} but lib{library} is not installed; install it "
                    f"(Debian/Ubuntu: apt-get install {packages}) or choose another backend")
    return None


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
