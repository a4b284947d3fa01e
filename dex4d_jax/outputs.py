"""Checks that an output location can be written, before a command does any work.

One rule for every command that writes (training runs, exports, `dex4d run` videos and
reports, point tracks): a message naming the argument and what to do, or None. Standard
library only, so the JAX-free paths (`dex4d run`, `dex4d tracks`) can use it.
"""

from __future__ import annotations

import os


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
        return f"{flag} {path} is a file; give a new or empty folder"
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
