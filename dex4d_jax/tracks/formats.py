"""The `.npz`/`.npy`/image file formats of the video-to-tracks pipeline, with validating loaders.

Every format has a `save_*` and a `load_*`; loaders check keys, shapes, dtypes and values and
raise `FormatError` (a `ValueError`) naming the file and what was expected, or
`FileNotFoundError` when the file is missing. docs/tracks.md documents each format.

Conventions:
- Pixels are (x, y) = (column, row) with the centre of the top-left pixel at (0, 0) (OpenCV).
- The camera frame is OpenCV's: x right, y down, z forward (the optical axis). Note MuJoCo and
  OpenGL cameras look along -z with y up; convert with diag(1, -1, -1).
- `T_world_camera` maps camera coordinates to world coordinates: p_world = T @ [p_cam, 1].
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

DEPTH_KINDS = ("depth", "disparity")

# Tolerance of the rigid-transform check on T_world_camera (orthonormality of the rotation).
_RIGID_TOL = 1e-4


class FormatError(ValueError):
    """A file exists but does not hold what its format requires."""


# ----------------------------------------------------------------------------------------------
# Data classes.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tracks2D:
    """Image-plane point tracks.

    Attributes:
        tracks: [T, N, 2] float32 pixel coordinates (x, y).
        visible: [T, N] bool, False where the tracker lost or could not see the point.
    """

    tracks: np.ndarray
    visible: np.ndarray


@dataclasses.dataclass
class DepthVideo:
    """Per-frame relative depth of unknown scale (e.g. from a monocular video depth model).

    Attributes:
        depth: [T, H, W] float32 depth or disparity.
        kind: "depth" (larger is farther) or "disparity" (inverse depth, larger is nearer).
    """

    depth: np.ndarray
    kind: str = "depth"


@dataclasses.dataclass
class Camera:
    """Pinhole camera intrinsics and (optionally) its pose in the world.

    Attributes:
        K: [3, 3] float64 intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (OpenCV pixels).
        T_world_camera: [4, 4] float64 camera-to-world rigid transform (OpenCV camera axes:
            x right, y down, z forward), or None for "the world is the camera frame".
    """

    K: np.ndarray
    T_world_camera: np.ndarray | None = None


@dataclasses.dataclass
class Tracks3D:
    """3D point tracks of an object, the input of `dex4d run --tracks`.

    Attributes:
        points: [T, N, 3] float32 world-frame positions in metres. Entries where `visible` is
            False hold no measurement (the last visible value, or 0) but are never NaN.
        visible: [T, N] bool.
        frame_indices: optional [T] int64, the source video frame of each row (set when the
            track was resampled into waypoints); None means row t is frame t.
    """

    points: np.ndarray
    visible: np.ndarray
    frame_indices: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """T, the number of frames (waypoints)."""
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        """N, the number of tracked points."""
        return int(self.points.shape[1])


# ----------------------------------------------------------------------------------------------
# Shared checks.
# ----------------------------------------------------------------------------------------------


def _check_exists(path: str | os.PathLike, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    return path


def _load_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    path = _check_exists(path, what)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: cannot read the {what} as .npz ({err})") from err
    if isinstance(data, np.ndarray):
        raise FormatError(f"{path}: expected an .npz archive for the {what}, got an .npy array")
    with data:
        try:
            return {key: data[key] for key in data.files}
        except ValueError as err:  # e.g. an object array, which needs pickle
            raise FormatError(f"{path}: cannot read the {what} ({err})") from err


def _require(data: dict[str, np.ndarray], key: str, path: str, what: str) -> np.ndarray:
    if key not in data:
        present = ", ".join(sorted(data)) or "none"
        raise FormatError(f"{path}: the {what} needs key {key!r}; keys present: {present}")
    return data[key]


def _check_array(
    array: np.ndarray,
    name: str,
    shape: tuple[int | None, ...],
    where: str,
    *,
    kind: str = "float",
    allow_nan: bool = False,
) -> np.ndarray:
    """Checks rank, fixed dims, dtype kind and finiteness; returns the array with a clean dtype.

    Args:
        array: the array to check.
        name: its key, for messages.
        shape: expected shape, None for a free dim.
        where: the file (or "argument"), for messages.
        kind: "float" (any real number type) or "bool".
        allow_nan: whether non-finite values are allowed (floats only).

    Returns:
        float32 (kind float) or bool (kind bool) array.
    """
    array = np.asarray(array)
    expected = "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"
    wrong_dim = any(d is not None and d != s for d, s in zip(shape, array.shape, strict=False))
    if array.ndim != len(shape) or wrong_dim:
        raise FormatError(f"{where}: {name!r} must have shape {expected}, got {list(array.shape)}")
    if kind == "bool":
        if array.dtype != np.bool_:
            if array.dtype.kind in "iu" and np.isin(array, (0, 1)).all():
                return array.astype(bool)
            raise FormatError(f"{where}: {name!r} must be bool, got {array.dtype}")
        return array
    if array.dtype.kind not in "fiu":
        raise FormatError(f"{where}: {name!r} must be a real number array, got {array.dtype}")
    if not allow_nan and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise FormatError(f"{where}: {name!r} has {bad} NaN or infinite values; none are allowed")
    return array


# ----------------------------------------------------------------------------------------------
# 2D tracks.
# ----------------------------------------------------------------------------------------------


def validate_tracks2d(tracks: Tracks2D, where: str = "tracks2d") -> Tracks2D:
    """Checks shapes and values of 2D tracks; returns them as float32 / bool arrays.

    Raises:
        FormatError: `tracks` not [T, N, 2] finite reals, `visible` not [T, N] bool.
    """
    xy = _check_array(tracks.tracks, "tracks", (None, None, 2), where)
    visible = _check_array(tracks.visible, "visible", (None, None), where, kind="bool")
    if visible.shape != xy.shape[:2]:
        raise FormatError(f"{where}: 'visible' must be [T, N] = {list(xy.shape[:2])} to match "
                          f"'tracks' [T, N, 2], got {list(visible.shape)}")
    return Tracks2D(xy.astype(np.float32), visible)


def save_tracks2d(path: str | os.PathLike, tracks: Tracks2D) -> None:
    """Writes 2D tracks as .npz with keys `tracks` [T, N, 2] and `visible` [T, N]."""
    tracks = validate_tracks2d(tracks, "save_tracks2d")
    np.savez(path, tracks=tracks.tracks, visible=tracks.visible)


def load_tracks2d(path: str | os.PathLike) -> Tracks2D:
    """Reads and validates a 2D-tracks .npz (keys `tracks` [T, N, 2] float, `visible` [T, N]).

    Raises:
        FileNotFoundError: no such file.
        FormatError: missing key, wrong shape or dtype, NaN.
    """
    data = _load_npz(path, "2D tracks")
    path = os.fspath(path)
    return validate_tracks2d(
        Tracks2D(_require(data, "tracks", path, "2D tracks"),
                 _require(data, "visible", path, "2D tracks")), path)


# ----------------------------------------------------------------------------------------------
# Per-frame relative depth.
# ----------------------------------------------------------------------------------------------


def validate_depth(depth: DepthVideo, where: str = "depth") -> DepthVideo:
    """Checks a relative depth video: [T, H, W] reals (NaN allowed: invalid), a known kind."""
    values = _check_array(depth.depth, "depth", (None, None, None), where, allow_nan=True)
    kind = str(np.asarray(depth.kind))
    if kind not in DEPTH_KINDS:
        raise FormatError(f"{where}: 'kind' must be one of {DEPTH_KINDS}, got {kind!r}")
    return DepthVideo(values.astype(np.float32), kind)


def save_depth(path: str | os.PathLike, depth: DepthVideo) -> None:
    """Writes per-frame depth as .npz: `depth` [T, H, W] float32 and `kind` (0-d string)."""
    depth = validate_depth(depth, "save_depth")
    np.savez(path, depth=depth.depth, kind=np.array(depth.kind))


def load_depth(path: str | os.PathLike) -> DepthVideo:
    """Reads and validates a per-frame depth .npz (keys `depth` [T, H, W], `kind`).

    Raises:
        FileNotFoundError: no such file.
        FormatError: missing key, wrong shape, unknown kind.
    """
    data = _load_npz(path, "per-frame depth")
    path = os.fspath(path)
    return validate_depth(
        DepthVideo(_require(data, "depth", path, "per-frame depth"),
                   _require(data, "kind", path, "per-frame depth")), path)


# ----------------------------------------------------------------------------------------------
# First-frame metric depth.
# ----------------------------------------------------------------------------------------------


def validate_depth0(depth0: np.ndarray, where: str = "depth0") -> np.ndarray:
    """Checks a first-frame metric depth map: [H, W] reals; returns float32, invalid -> 0.

    Zero, negative and non-finite pixels are invalid (no sensor return); they become 0.
    """
    depth0 = _check_array(depth0, "depth0", (None, None), where, allow_nan=True).astype(np.float32)
    depth0 = np.where(np.isfinite(depth0) & (depth0 > 0), depth0, 0.0).astype(np.float32)
    if not (depth0 > 0).any():
        raise FormatError(f"{where}: 'depth0' has no valid (positive, finite) pixel")
    return depth0


def save_depth0(path: str | os.PathLike, depth0: np.ndarray) -> None:
    """Writes first-frame metric depth (metres): `.npy` as a bare array, `.npz` under `depth0`."""
    depth0 = validate_depth0(depth0, "save_depth0")
    if os.fspath(path).endswith(".npz"):
        np.savez(path, depth0=depth0)
    else:
        np.save(path, depth0)


def load_depth0(path: str | os.PathLike) -> np.ndarray:
    """Reads first-frame metric depth [H, W] metres from `.npy` or `.npz` (key `depth0`).

    Returns:
        [H, W] float32 with invalid pixels (0, negative, non-finite) set to 0.

    Raises:
        FileNotFoundError: no such file.
        FormatError: missing key, wrong shape, no valid pixel.
    """
    path = _check_exists(path, "first-frame metric depth")
    if path.endswith(".npz"):
        data = _load_npz(path, "first-frame metric depth")
        depth0 = _require(data, "depth0", path, "first-frame metric depth")
    else:
        try:
            depth0 = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise FormatError(f"{path}: cannot read the first-frame depth as .npy ({err})") from err
        if not isinstance(depth0, np.ndarray):
            raise FormatError(f"{path}: expected an .npy array [H, W]; for .npz use key 'depth0'")
    return validate_depth0(depth0, path)


# ----------------------------------------------------------------------------------------------
# Camera.
# ----------------------------------------------------------------------------------------------


def validate_camera(camera: Camera, where: str = "camera") -> Camera:
    """Checks K (positive focal lengths, last row 0 0 1) and T_world_camera (rigid).

    Raises:
        FormatError: a bad shape, a non-positive focal length, a last row that is not
            [0, 0, 1] (K) or [0, 0, 0, 1] (T), or a rotation that is not orthonormal with
            determinant +1.
    """
    k_mat = _check_array(camera.K, "K", (3, 3), where).astype(np.float64)
    if not (k_mat[0, 0] > 0 and k_mat[1, 1] > 0):
        raise FormatError(f"{where}: 'K' must have positive focal lengths K[0,0], K[1,1]; "
                          f"got {k_mat[0, 0]}, {k_mat[1, 1]}")
    if not np.allclose(k_mat[2], [0.0, 0.0, 1.0]):
        raise FormatError(f"{where}: 'K' last row must be [0, 0, 1], got {k_mat[2].tolist()}")
    pose = camera.T_world_camera
    if pose is not None:
        pose = _check_array(pose, "T_world_camera", (4, 4), where).astype(np.float64)
        if not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0]):
            raise FormatError(f"{where}: 'T_world_camera' last row must be [0, 0, 0, 1], "
                              f"got {pose[3].tolist()}")
        rot = pose[:3, :3]
        if not np.allclose(rot.T @ rot, np.eye(3), atol=_RIGID_TOL) or np.linalg.det(rot) < 0:
            raise FormatError(f"{where}: 'T_world_camera' rotation block must be orthonormal "
                              "with determinant +1 (a rigid camera-to-world transform)")
    return Camera(k_mat, pose)


def save_camera(path: str | os.PathLike, camera: Camera) -> None:
    """Writes a camera .npz: `K` [3, 3] and, when set, `T_world_camera` [4, 4]."""
    camera = validate_camera(camera, "save_camera")
    arrays = {"K": camera.K}
    if camera.T_world_camera is not None:
        arrays["T_world_camera"] = camera.T_world_camera
    np.savez(path, **arrays)


def load_camera(path: str | os.PathLike) -> Camera:
    """Reads and validates a camera .npz (key `K`, optional key `T_world_camera`).

    Raises:
        FileNotFoundError: no such file.
        FormatError: missing K, bad K or T (see `validate_camera`).
    """
    data = _load_npz(path, "camera")
    path = os.fspath(path)
    return validate_camera(
        Camera(_require(data, "K", path, "camera"), data.get("T_world_camera")), path)


# ----------------------------------------------------------------------------------------------
# 3D tracks.
# ----------------------------------------------------------------------------------------------


def validate_tracks3d(tracks: Tracks3D, where: str = "tracks3d") -> Tracks3D:
    """Checks 3D tracks: `points` [T, N, 3] finite (invisible too), `visible` [T, N] bool.

    Raises:
        FormatError: wrong shape, NaN/inf anywhere in `points`, mismatched T or N, bad
            `frame_indices`.
    """
    points = _check_array(tracks.points, "points", (None, None, 3), where)
    visible = _check_array(tracks.visible, "visible", (None, None), where, kind="bool")
    if visible.shape != points.shape[:2]:
        raise FormatError(f"{where}: 'visible' must be [T, N] = {list(points.shape[:2])} to match "
                          f"'points' [T, N, 3], got {list(visible.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise FormatError(f"{where}: 'points' must hold at least one frame and one point, got "
                          f"{list(points.shape)}")
    frames = tracks.frame_indices
    if frames is not None:
        frames = np.asarray(frames)
        if frames.shape != (points.shape[0],) or frames.dtype.kind not in "iu":
            raise FormatError(f"{where}: 'frame_indices' must be [T] = [{points.shape[0]}] "
                              f"integers, got {list(frames.shape)} {frames.dtype}")
        if (np.diff(frames) <= 0).any():
            raise FormatError(f"{where}: 'frame_indices' must be strictly increasing")
        frames = frames.astype(np.int64)
    return Tracks3D(points.astype(np.float32), visible, frames)


def save_tracks3d(path: str | os.PathLike, tracks: Tracks3D) -> None:
    """Writes 3D tracks as .npz: `points` [T, N, 3], `visible` [T, N] (+ `frame_indices`)."""
    tracks = validate_tracks3d(tracks, "save_tracks3d")
    arrays = {"points": tracks.points, "visible": tracks.visible}
    if tracks.frame_indices is not None:
        arrays["frame_indices"] = tracks.frame_indices
    np.savez(path, **arrays)


def load_tracks3d(path: str | os.PathLike) -> Tracks3D:
    """Reads and validates a 3D-tracks .npz (the file `dex4d run --tracks` consumes).

    Raises:
        FileNotFoundError: no such file.
        FormatError: missing key, wrong shape or dtype, NaN, mismatched T/N.
    """
    data = _load_npz(path, "3D tracks")
    path = os.fspath(path)
    return validate_tracks3d(
        Tracks3D(_require(data, "points", path, "3D tracks"),
                 _require(data, "visible", path, "3D tracks"), data.get("frame_indices")), path)


# ----------------------------------------------------------------------------------------------
# Object mask (image).
# ----------------------------------------------------------------------------------------------


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Reads a first-frame object mask: an image (PNG, ...; nonzero = object), .npy or .npz.

    Returns:
        [H, W] bool.

    Raises:
        FileNotFoundError: no such file.
        FormatError: unreadable image, not 2D, or empty mask.
    """
    path = _check_exists(path, "mask")
    if path.endswith(".npz"):
        mask = _require(_load_npz(path, "mask"), "mask", path, "mask")
    elif path.endswith(".npy"):
        mask = np.load(path, allow_pickle=False)
    else:
        import cv2  # noqa: PLC0415 (OpenCV is only needed for image masks)

        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise FormatError(f"{path}: cannot read the mask image")
        if mask.ndim == 3:
            mask = mask[..., :3].max(axis=-1)  # any non-black colour counts as object
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise FormatError(f"{path}: the mask must be [H, W], got {list(mask.shape)}")
    mask = mask != 0
    if not mask.any():
        raise FormatError(f"{path}: the mask is empty (no nonzero pixel)")
    return mask


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Writes a bool mask [H, W] as an 8-bit PNG (255 = object), or .npy."""
    mask = np.asarray(mask, dtype=bool)
    if os.fspath(path).endswith(".npy"):
        np.save(path, mask)
        return
    import cv2  # noqa: PLC0415

    if not cv2.imwrite(os.fspath(path), mask.astype(np.uint8) * 255):
        raise OSError(f"could not write the mask image {path}")
