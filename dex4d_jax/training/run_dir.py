"""Run folders: create one, refuse to overwrite one, resume one; find its checkpoints.

A run folder holds:
  config.json          the resolved run configuration (written before training starts; what
                       `--resume` reads back)
  metrics.jsonl        one JSON object per evaluation (step, wall time, every metric);
                       a resumed run appends to it
  tb/                  TensorBoard scalars
  checkpoints/<step>/  one checkpoint per epoch and one at step 0 (checkpoint.py)
  eval.json            the final evaluation
  .lock                held (flock) by the one process training in the folder; it records the
                       holder's PID and is released on any exit, even SIGKILL
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator

import jax
from ml_collections import config_dict

from dex4d_jax.training import checkpoint

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists, or nothing to resume)."""


def list_checkpoints(out_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints of a run as (step, path), oldest first.

    Orbax writes each checkpoint into a `*.orbax-checkpoint-tmp-*` folder and renames it when
    complete, so a save interrupted midway is never listed.
    """
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if checkpoint.is_complete(path):
            found.append((int(name), path))
    return sorted(found)


def resolve_checkpoint(path: str) -> tuple[int, str]:
    """(step, checkpoint folder) of `path`: a checkpoint, or a run (its latest checkpoint).

    Raises:
      FileNotFoundError: `path` does not exist.
      RunDirError: it is neither a checkpoint nor a run with a complete checkpoint.
    """
    path = os.path.abspath(path)
    if checkpoint.is_complete(path):
        return int(os.path.basename(os.path.normpath(path))), path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} does not exist (expected a run or checkpoint folder).")
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise RunDirError(f"{path} is neither a checkpoint nor a run with a complete checkpoint "
                          f"in {CHECKPOINT_DIR}/.")
    return checkpoints[-1]


def run_of(checkpoint_path: str) -> str:
    """The run folder holding a checkpoint folder."""
    return os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_path)))


def _tuples(value):
    """JSON gives lists where the config held tuples; turn them back, at any depth."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def read_run_config(run_dir: str) -> config_dict.ConfigDict:
    """The config.json of a run directory.

    Raises:
      RunDirError: there is no config.json, or it is not a JSON object.
    """
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"{path} not found (is {run_dir} a training run?).")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path} is not readable JSON ({err}).") from err
    if not isinstance(data, dict):
        raise RunDirError(f"{path} does not hold a run configuration (a JSON object).")
    return config_dict.ConfigDict(_tuples(data))


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file renamed into place: a reader sees the
    old file or the new one, never half of one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def config_to_resume(out_dir: str) -> config_dict.ConfigDict:
    """The saved config of a run to resume; RunDirError ("Cannot resume: ...") without one."""
    if not os.path.isfile(os.path.join(out_dir, CONFIG_FILE)):
        raise RunDirError(f"Cannot resume: {os.path.join(out_dir, CONFIG_FILE)} not found (is "
                          f"{out_dir} a training run?).")
    return read_run_config(out_dir)


def _contents(out_dir: str) -> list[str]:
    """What a folder holds besides the lock file (a lock alone is not a run)."""
    return [n for n in os.listdir(out_dir) if n != LOCK_FILE] if os.path.isdir(out_dir) else []


def _refuse_existing(out_dir: str) -> None:
    if _contents(out_dir):
        raise RunDirError(
            f"Output directory {out_dir} already exists and is not empty. Choose a new "
            "--out, or pass --resume to continue the run in it.")


@contextlib.contextmanager
def exclusive(out_dir: str, resume: bool) -> Iterator[None]:
    """Holds the run folder's lock while the body runs: one process per run folder.

    A fresh run's folder must be absent or empty (checked before anything is created); it is
    created here. The lock is an advisory `flock` on `out_dir/.lock`, released on any exit of
    the process (SIGKILL included), so a crashed run never leaves a folder locked. Only
    process 0 of a multi-process job takes it.

    Raises:
      RunDirError: "run in use by PID N" when another process holds it, or the folder exists
        and is not empty (fresh run).
    """
    if jax.process_index() != 0:
        yield
        return
    if not resume:
        _refuse_existing(out_dir)
        os.makedirs(out_dir, exist_ok=True)
    elif not os.path.isdir(out_dir):
        yield  # nothing to lock; prepare_run_dir says what is missing
        return
    path = os.path.join(out_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(f"run in use by PID {holder}: another process is training in "
                          f"{out_dir}; wait for it or stop it, or choose another --out.") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def move_aside_incomplete(out_dir: str, log: Callable[[str], None] = print) -> list[str]:
    """Renames checkpoint folders that look finished but are not (a step-named folder without
    orbax's completion marker, e.g. a copy cut short) so that they are never read; returns
    the new paths. Orbax's own temporary folders are deleted by `remove_stale_tmp` instead."""
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    moved = []
    if not os.path.isdir(root):
        return moved
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.isdigit() and os.path.isdir(path) and not checkpoint.is_complete(path):
            target = f"{path}.incomplete-{int(time.time())}"
            os.replace(path, target)
            log(f"Checkpoint folder {path} is incomplete (no completion marker); moved it "
                f"aside to {target}.")
            moved.append(target)
    return moved


def remove_unfinished(out_dir: str) -> bool:
    """Deletes a fresh run's folder whose setup failed (no complete checkpoint in it), so the
    same --out can be used again; returns whether it did."""
    if list_checkpoints(out_dir) or not os.path.isdir(out_dir):
        return False
    shutil.rmtree(out_dir, ignore_errors=True)
    return True


def prepare_run_dir(out_dir: str, config: config_dict.ConfigDict | None, resume: bool,
                    fmt: str = checkpoint.PPO_FORMAT, log: Callable[[str], None] = print):
    """Checks the run directory and returns (config, start step, checkpoint path or None).

    A fresh run needs `out_dir` absent or empty and writes `config` to its config.json;
    `resume` needs a run with a checkpoint, and continues from its saved config (a differing
    `config` is an error, not silently used). On resume, folders of interrupted saves are
    deleted, incomplete ones moved aside (`move_aside_incomplete`), and the latest complete
    checkpoint is read once as format `fmt`, so a corrupt one fails here with its path. A
    run whose setup was interrupted (config.json but no checkpoint yet) resumes from step 0
    with its saved config: a run folder can always be resumed or, when fresh, used anew.

    Raises:
      RunDirError: the folder exists (fresh run), or has no config or checkpoint (resume), or
        `config` differs from the saved one.
      checkpoint.CheckpointError: the latest checkpoint cannot be read.
    """
    config_path = os.path.join(out_dir, CONFIG_FILE)
    writer = jax.process_index() == 0
    if not resume:
        if writer:
            _refuse_existing(out_dir)
        if config is None:
            raise ValueError("A fresh run needs a config.")
        if writer:
            os.makedirs(out_dir, exist_ok=True)
            write_atomic(config_path, config.to_json(indent=2))
        return config, 0, None
    saved = config_to_resume(out_dir)
    if config is not None and config.to_dict() != saved.to_dict():
        raise RunDirError(
            f"--resume continues with the config saved in {config_path}; the arguments given "
            "describe a different run. Drop them, or start a new --out.")
    if writer:
        checkpoint.remove_stale_tmp(os.path.join(out_dir, CHECKPOINT_DIR))
        move_aside_incomplete(out_dir, log)
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        log(f"{out_dir} has its config but no checkpoint (its setup was interrupted); "
            "starting it from step 0.")
        return saved, 0, None
    step, path = checkpoints[-1]
    checkpoint.read_checkpoint(path, fmt)  # fail now, clearly, on a corrupt checkpoint
    return saved, step, path
