"""Run folders: create one, refuse to overwrite one, resume one; find its checkpoints.

A run folder holds:
  config.json          the resolved run configuration (written before training starts; what
                       `--resume` reads back)
  metrics.jsonl        one JSON object per evaluation (step, wall time, every metric);
                       a resumed run appends to it
  tb/                  TensorBoard scalars
  checkpoints/<step>/  one checkpoint per epoch and one at step 0 (checkpoint.py)
  eval.json            the final evaluation
"""

from __future__ import annotations

import json
import os

import jax
from ml_collections import config_dict

from dex4d_jax.training import checkpoint

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


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


def config_to_resume(out_dir: str) -> config_dict.ConfigDict:
    """The saved config of a run to resume; RunDirError ("Cannot resume: ...") without one."""
    if not os.path.isfile(os.path.join(out_dir, CONFIG_FILE)):
        raise RunDirError(f"Cannot resume: {os.path.join(out_dir, CONFIG_FILE)} not found (is "
                          f"{out_dir} a training run?).")
    return read_run_config(out_dir)


def prepare_run_dir(out_dir: str, config: config_dict.ConfigDict | None, resume: bool,
                    fmt: str = checkpoint.PPO_FORMAT):
    """Checks the run directory and returns (config, start step, checkpoint path or None).

    A fresh run needs `out_dir` absent or empty and writes `config` to its config.json;
    `resume` needs a run with a checkpoint, and continues from its saved config (a differing
    `config` is an error, not silently used). On resume, folders of interrupted saves are
    deleted and the latest complete checkpoint is read once as format `fmt`, so a corrupt one
    fails here with its path.

    Raises:
      RunDirError: the folder exists (fresh run), or has no config or checkpoint (resume), or
        `config` differs from the saved one.
      checkpoint.CheckpointError: the latest checkpoint cannot be read.
    """
    config_path = os.path.join(out_dir, CONFIG_FILE)
    writer = jax.process_index() == 0
    if not resume:
        if writer and os.path.isdir(out_dir) and os.listdir(out_dir):
            raise RunDirError(
                f"Output directory {out_dir} already exists and is not empty. Choose a new "
                "--out, or pass --resume to continue the run in it.")
        if config is None:
            raise ValueError("A fresh run needs a config.")
        if writer:
            os.makedirs(out_dir, exist_ok=True)
            with open(config_path, "w") as f:
                f.write(config.to_json(indent=2))
        return config, 0, None
    saved = config_to_resume(out_dir)
    if config is not None and config.to_dict() != saved.to_dict():
        raise RunDirError(
            f"--resume continues with the config saved in {config_path}; the arguments given "
            "describe a different run. Drop them, or start a new --out.")
    if writer:
        checkpoint.remove_stale_tmp(os.path.join(out_dir, CHECKPOINT_DIR))
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        raise RunDirError(f"Cannot resume: no complete checkpoint in {out_dir}/{CHECKPOINT_DIR}.")
    step, path = checkpoints[-1]
    checkpoint.read_checkpoint(path, fmt)  # fail now, clearly, on a corrupt checkpoint
    return saved, step, path
