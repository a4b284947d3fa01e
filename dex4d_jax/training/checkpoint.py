"""The checkpoint format shared by all trainers: one orbax checkpoint per epoch, written atomically.

  checkpoints/<step, 12 digits>/   one orbax checkpoint, written to a
                                   `<step>.orbax-checkpoint-tmp-*` folder and renamed into place
                                   when complete (orbax then writes `_CHECKPOINT_METADATA`)
    state/                         the algorithm's tree of numpy arrays; every trainer keeps
                                   `params`, `optimizer` (the optax state's leaves, in tree
                                   order) and `key` (the next epoch's PRNG key); PPO adds
                                   `normalizer`
    meta/                          JSON: `format` (which trainer wrote it, FORMATS), `step`,
                                   `epoch`, `optimizer_tree` (checked on restore)

Reading never needs the trainer that wrote a checkpoint: `read_checkpoint` returns the tree,
and `fit_tree` / `check_fits` / `restore_optimizer` put it back into a template's structure.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
from flax import serialization

PPO_FORMAT = "dex4d-ppo/1"
DAGGER_FORMAT = "dex4d-dagger/1"
FORMATS = {PPO_FORMAT: "teacher (PPO)", DAGGER_FORMAT: "student (DAgger)"}
TMP_MARKER = ".orbax-checkpoint-tmp"
_COMPLETE_MARKER = "_CHECKPOINT_METADATA"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the networks being trained."""


def _checkpointer(saving: bool):
    """An orbax checkpointer of `state` and `meta` items.

    In a multi-process job only process 0 saves, and each process reads on its own, so
    neither waits for another process: every handler (orbax syncs in each of them) is given
    the same one-process options.
    """
    from orbax import checkpoint as ocp  # noqa: PLC0415 (heavy; only when checkpoints are used)

    options = ocp.options.MultiprocessingOptions()
    if jax.process_count() > 1:
        alone = 0 if saving else jax.process_index()
        options = ocp.options.MultiprocessingOptions(primary_host=alone,
                                                     active_processes={alone})
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    state = ocp.StandardCheckpointHandler(multiprocessing_options=options)
    meta = ocp.JsonCheckpointHandler(multiprocessing_options=options)
    for item, handler, args in (("state", state, ocp.args.StandardSave),
                                ("state", state, ocp.args.StandardRestore),
                                ("meta", meta, ocp.args.JsonSave),
                                ("meta", meta, ocp.args.JsonRestore)):
        registry.add(item, args, handler)
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler(
        handler_registry=registry,
        composite_options=ocp.CompositeOptions(multiprocessing_options=options)),
        multiprocessing_options=options)


def is_complete(path: str) -> bool:
    """Whether `path` is a finished checkpoint (orbax renames it into place when done)."""
    name = os.path.basename(os.path.normpath(path))
    return (name.isdigit() and os.path.isdir(path)
            and os.path.isfile(os.path.join(path, _COMPLETE_MARKER)))


def remove_stale_tmp(root: str) -> list[str]:
    """Deletes the folders of saves that were interrupted (never complete); returns them."""
    if not os.path.isdir(root):
        return []
    stale = [os.path.join(root, n) for n in os.listdir(root) if TMP_MARKER in n]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def write_checkpoint(root: str, step: int, tree, optimizer_state, epoch: int, fmt: str,
                     extra_meta: dict | None = None) -> str:
    """Writes `tree` (numpy leaves) and JSON metadata to `root/<step>` atomically.

    Args:
      root: the run's `checkpoints/` folder (absolute: orbax needs absolute paths).
      step: environment steps trained so far; names the folder.
      tree: the state to save (any pytree of arrays).
      optimizer_state: the optax state whose leaves are in `tree`; its tree structure is
        recorded in the metadata and checked by `restore_optimizer`.
      epoch: the epoch just finished (0 for the initial state).
      fmt: the format name (one of FORMATS).
      extra_meta: more JSON metadata.

    Returns:
      The checkpoint's path.
    """
    from orbax import checkpoint as ocp  # noqa: PLC0415

    path = os.path.join(root, f"{step:012d}")
    meta = {"format": fmt, "step": int(step), "epoch": int(epoch),
            "optimizer_tree": str(jax.tree.structure(optimizer_state)), **(extra_meta or {})}
    _checkpointer(saving=True).save(path, ocp.args.Composite(
        state=ocp.args.StandardSave(jax.tree.map(np.asarray, tree)),
        meta=ocp.args.JsonSave(meta)))
    return path


def read_checkpoint(path: str, fmt: str = PPO_FORMAT):
    """(state tree of numpy arrays, metadata) of a checkpoint of format `fmt`.

    Raises:
      FileNotFoundError: `path` does not exist.
      CheckpointError: it is unreadable, truncated, or of another format (the message names
        which trainer wrote it when that is known).
    """
    from orbax import checkpoint as ocp  # noqa: PLC0415

    if not os.path.isdir(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        restored = _checkpointer(saving=False).restore(path, ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        tree, meta = restored["state"], restored["meta"]
        if not isinstance(meta, dict) or meta.get("format") != fmt:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"format {found!r} ({FORMATS.get(found, 'unknown')}), expected "
                             f"{fmt!r} ({FORMATS.get(fmt, 'unknown')})")
    except Exception as err:  # orbax raises many types for truncated or foreign files
        # The first line of the cause, shortened: tensorstore's errors carry whole specs.
        cause = " ".join(str(err).splitlines()[:1])
        cause = cause if len(cause) <= 160 else cause[:157] + "..."
        raise CheckpointError(
            f"Checkpoint {path} could not be read ({type(err).__name__}: {cause}). It is corrupt "
            "or not a dex4d-jax checkpoint of this kind; move it aside to use an earlier one."
        ) from err
    return jax.tree.map(np.asarray, tree), meta


def read_meta(path: str, fmt: str = PPO_FORMAT) -> dict:
    """The JSON metadata of a checkpoint (format, step, epoch, ...)."""
    return read_checkpoint(path, fmt)[1]


def describe_checkpoint(path: str, fmt: str = PPO_FORMAT) -> str:
    """A one-line JSON summary of a checkpoint's metadata (for logs)."""
    return json.dumps(read_meta(path, fmt))


def _describe(tree, dtypes: bool) -> dict:
    return {jax.tree_util.keystr(p): (tuple(np.shape(x)),
                                      str(np.asarray(x).dtype) if dtypes else "")
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_fits(template, given, what: str, source: str, dtypes: bool = True) -> None:
    """Raises CheckpointError naming `what` and `source` unless `given` has `template`'s
    tree structure, leaf shapes and (with `dtypes`) leaf dtypes.
    """
    want, got = _describe(template, dtypes), _describe(given, dtypes)
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise CheckpointError(
            f"The {what} in {source} do not fit the networks of this run (first differences: "
            f"{diff}). Use a checkpoint trained with the same network and environment settings.")


def fit_tree(template, state_dict, what: str, source: str):
    """`state_dict` (a restored tree of dicts) in the structure and dtypes of `template`.

    Raises CheckpointError naming `what` and `source` when the structure or shapes differ.
    """
    try:
        tree = serialization.from_state_dict(template, state_dict)
    except Exception as err:
        raise CheckpointError(f"The {what} in {source} do not fit this run: {err}") from err
    check_fits(template, tree, what, source, dtypes=False)
    return jax.tree.map(lambda t, x: np.asarray(x, dtype=np.asarray(t).dtype), template, tree)


def restore_optimizer(template, saved: list, meta: dict, path: str):
    """The optimizer state saved as `saved` leaves, in the structure of `template`.

    Raises CheckpointError when the saved tree description, leaf count or shapes differ.
    """
    leaves, treedef = jax.tree.flatten(template)
    if (meta.get("optimizer_tree") != str(treedef) or len(saved) != len(leaves)
            or any(np.shape(a) != np.shape(b) for a, b in zip(saved, leaves, strict=True))):
        raise CheckpointError(f"The optimizer state in {path} does not fit this run's optimizer.")
    return jax.tree.unflatten(
        treedef, [np.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(saved, leaves,
                                                                         strict=True)])
