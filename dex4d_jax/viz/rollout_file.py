"""The rollout file: one or more simulated episodes, enough to replay them without the policy.

`dex4d render` writes one beside its video (`rollout.npz`), and `dex4d view` shows it in 3D.
It is self-contained: the scene is stored as MJCF text (the episode's object included), so a
reader needs neither the environment nor the object library, only MuJoCo.

Keys of the `.npz` (T control steps over all episodes, N keypoints, nq the model's qpos size):

| key | shape, dtype | meaning |
|---|---|---|
| `env` | str | environment name (`ap2ap_wrench`, `ap2ap`) |
| `model_xml` | str | the MJCF of the scene holding the object (`mujoco.MjSpec.to_xml`) |
| `dt` | float | control period, seconds |
| `qpos` | [T, nq] float32 | the model's generalized positions after each control step |
| `points` | [T, N, 3] float32 | the object's keypoints, world frame, metres |
| `targets` | [T, N, 3] float32 | the goal's keypoints (the paired targets, Eq. 1), world frame |
| `visible` | [T, N] bool | which points the policy saw (a student's masked points; all: teacher) |
| `distance` | [T] float32 | mean point distance d_t (paper Eq. 4), metres |
| `success` | [T] bool | d_t below the task's success threshold |
| `goals_reached` | [T] int32 | goals held so far in the episode |
| `episode` | [T] int32 | the episode each step belongs to (0, 1, ...; non-decreasing) |

Raises `RolloutFileError` (a `ValueError`) naming the file and the fault on any mismatch, and
`FileNotFoundError` when the file is missing. Writes go to a temporary name in the same
folder and are renamed, so an interrupted write never leaves a half file under the name.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np


class RolloutFileError(ValueError):
    """A rollout file (or the arrays given to `save`) does not hold what the format requires."""


@dataclasses.dataclass
class Rollout:
    """Episodes of one environment and scene; see the module docstring for shapes and units."""

    env: str
    model_xml: str
    dt: float
    qpos: np.ndarray
    points: np.ndarray
    targets: np.ndarray
    visible: np.ndarray
    distance: np.ndarray
    success: np.ndarray
    goals_reached: np.ndarray
    episode: np.ndarray

    @property
    def num_steps(self) -> int:
        """T, control steps over all episodes."""
        return int(self.qpos.shape[0])

    @property
    def num_points(self) -> int:
        """N, keypoints per step."""
        return int(self.points.shape[1])

    @property
    def num_episodes(self) -> int:
        """Distinct episodes."""
        return int(np.unique(self.episode).size)


_ARRAYS = {  # key: (shape with None for free dims, dtype)
    "qpos": ((None, None), np.float32),
    "points": ((None, None, 3), np.float32),
    "targets": ((None, None, 3), np.float32),
    "visible": ((None, None), np.bool_),
    "distance": ((None,), np.float32),
    "success": ((None,), np.bool_),
    "goals_reached": ((None,), np.int32),
    "episode": ((None,), np.int32),
}


def validate(rollout: Rollout, where: str = "rollout") -> Rollout:
    """Checks every field's shape, dtype and values; returns the rollout with clean dtypes.

    Raises:
      RolloutFileError: a wrong rank or size, T or N that differ between fields, a NaN or
        infinity, an empty rollout, a non-positive `dt`, decreasing `episode`, empty
        `model_xml` or `env`.
    """
    if not isinstance(rollout.env, str) or not rollout.env:
        raise RolloutFileError(f"{where}: 'env' must be a non-empty environment name")
    if not isinstance(rollout.model_xml, str) or "<mujoco" not in rollout.model_xml:
        raise RolloutFileError(f"{where}: 'model_xml' must be MJCF text (<mujoco ...>)")
    dt = float(rollout.dt)
    if not np.isfinite(dt) or dt <= 0:
        raise RolloutFileError(f"{where}: 'dt' must be a positive number of seconds, got {dt}")
    clean = {}
    for key, (shape, dtype) in _ARRAYS.items():
        array = np.asarray(getattr(rollout, key))
        if array.ndim != len(shape) or any(d is not None and d != s
                                           for d, s in zip(shape, array.shape, strict=False)):
            expected = "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"
            raise RolloutFileError(f"{where}: {key!r} must have shape {expected}, "
                                   f"got {list(array.shape)}")
        if dtype is np.bool_:
            if array.dtype != np.bool_ and not (array.dtype.kind in "iu"
                                                and np.isin(array, (0, 1)).all()):
                raise RolloutFileError(f"{where}: {key!r} must be bool, got {array.dtype}")
        elif array.dtype.kind not in "fiu":
            raise RolloutFileError(f"{where}: {key!r} must be numbers, got {array.dtype}")
        elif not np.isfinite(array).all():
            raise RolloutFileError(f"{where}: {key!r} has {int((~np.isfinite(array)).sum())} "
                                   "NaN or infinite values")
        clean[key] = array.astype(dtype)
    steps = clean["qpos"].shape[0]
    if steps == 0:
        raise RolloutFileError(f"{where}: the rollout has no steps")
    for key, array in clean.items():
        if array.shape[0] != steps:
            raise RolloutFileError(f"{where}: {key!r} has {array.shape[0]} steps, 'qpos' {steps}")
    n = clean["points"].shape[1]
    if clean["targets"].shape[1] != n or clean["visible"].shape[1] != n:
        raise RolloutFileError(f"{where}: 'points', 'targets' and 'visible' must have the same "
                               f"number of points, got {clean['points'].shape[1]}, "
                               f"{clean['targets'].shape[1]}, {clean['visible'].shape[1]}")
    if (np.diff(clean["episode"]) < 0).any():
        raise RolloutFileError(f"{where}: 'episode' must be non-decreasing")
    return Rollout(rollout.env, rollout.model_xml, dt, **clean)


def save(path: str | os.PathLike, rollout: Rollout) -> None:
    """Validates `rollout` and writes it to `path` (.npz, compressed) via a temporary file.

    Raises:
      RolloutFileError: see `validate`.
      OSError: the folder does not exist or cannot be written.
    """
    rollout = validate(rollout, "save")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rollout-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, env=np.array(rollout.env), model_xml=np.array(rollout.model_xml),
                                dt=np.array(rollout.dt),
                                **{key: getattr(rollout, key) for key in _ARRAYS})
        # mkstemp makes the file 0600; a rollout file is for others too (0644 under the usual
        # umask), as any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str | os.PathLike) -> Rollout:
    """Reads and validates a rollout file.

    Raises:
      FileNotFoundError: no such file.
      RolloutFileError: not an .npz, a missing key, or any fault `validate` finds.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"rollout file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RolloutFileError(f"{path}: cannot read it as .npz ({err})") from err
    if isinstance(data, np.ndarray):
        raise RolloutFileError(f"{path}: expected an .npz archive, got an .npy array")
    with data:
        missing = [k for k in ("env", "model_xml", "dt", *_ARRAYS) if k not in data.files]
        if missing:
            raise RolloutFileError(f"{path}: not a rollout file: missing {', '.join(missing)} "
                                   f"(keys present: {', '.join(sorted(data.files)) or 'none'})")
        try:
            fields = {key: data[key] for key in data.files}
        except ValueError as err:
            raise RolloutFileError(f"{path}: cannot read it ({err})") from err
    return validate(Rollout(str(fields["env"]), str(fields["model_xml"]), float(fields["dt"]),
                            **{key: fields[key] for key in _ARRAYS}), path)


def is_rollout_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an .npz that carries a rollout's `model_xml` and `qpos` keys."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            return {"model_xml", "qpos"} <= set(data.files)
    except (OSError, ValueError, AttributeError):
        return False
