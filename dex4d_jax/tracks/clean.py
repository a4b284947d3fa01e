"""Cleaning 3D tracks: Kabsch fits, RANSAC outlier-track rejection, smoothing, waypoints.

The object is rigid, so every frame's visible points should be a rigid motion of the first
frame's points. `reject_outlier_tracks` finds, per frame, the rigid motion most points agree
with (RANSAC over 3-point samples) and drops the tracks that disagree with it in too many of
their visible frames (a tracker that slid off the object, a point lifted on the background
depth at a silhouette). `smooth_motion` smooths the fitted rigid motion over time (not the
points), and `rigidify` regenerates the points from it. `select_waypoints` resamples the
track into goal waypoints by how far the object moved.

Every step is equivariant to the choice of world frame: with the world moved by a rigid G
(p -> R_G p + t_G), the output points move by G and the visibility, kept tracks and waypoints
are unchanged. Kabsch centres the points on their weighted means before the SVD; residuals and
waypoint displacements are distances; smoothing acts on the motion of the object's first-frame
centroid (`RigidFit.center`), not on the translation about the world origin, and on quaternions
by a linear average, which commutes with the conjugation q -> q_G q q_G^-1 that G applies to
them. The only deviation is float32 rounding of the stored world coordinates (relative 6e-8 of
their magnitude): a decision whose value lies within that of its threshold can differ.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dex4d_jax import rotations
from dex4d_jax.tracks import formats, lift

# Fewest points for a well-posed rigid fit (three non-collinear points fix a rotation).
MIN_FIT_POINTS = 3


# ----------------------------------------------------------------------------------------------
# Kabsch.
# ----------------------------------------------------------------------------------------------


def kabsch(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares rigid transform with dst ~= R @ src + t (batched).

    Minimizes sum_i w_i |R src_i + t - dst_i|^2 over rotations (det R = +1: the reflection
    that the plain SVD solution can return is fixed by flipping the last singular direction).

    Args:
        src: [..., N, 3] points.
        dst: [..., N, 3] corresponding points.
        weights: [..., N] non-negative weights (a bool mask works); None = all ones.

    Returns:
        Tuple of R [..., 3, 3] and t [..., 3]. Batches whose weights sum to 0 get the identity.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if weights is None:
        weights = np.ones(src.shape[:-1])
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=-1, keepdims=True)
    safe_total = np.where(total > 0, total, 1.0)
    src_mean = (w[..., None] * src).sum(axis=-2) / safe_total
    dst_mean = (w[..., None] * dst).sum(axis=-2) / safe_total
    src_c = src - src_mean[..., None, :]
    dst_c = dst - dst_mean[..., None, :]
    # Cross-covariance H = sum_i w_i src_i dst_i^T; R = V diag(1, 1, d) U^T with H = U S V^T.
    cov = np.einsum("...n,...ni,...nj->...ij", w, src_c, dst_c)
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    fix = np.zeros(cov.shape)
    fix[..., 0, 0] = 1.0
    fix[..., 1, 1] = 1.0
    fix[..., 2, 2] = d
    rot = np.swapaxes(vt, -1, -2) @ fix @ np.swapaxes(u, -1, -2)
    empty = total[..., 0] <= 0
    rot = np.where(empty[..., None, None], np.eye(3), rot)
    trans = dst_mean - np.einsum("...ij,...j->...i", rot, src_mean)
    return rot, trans


def apply_rigid(rot: np.ndarray, trans: np.ndarray, points: np.ndarray) -> np.ndarray:
    """R @ p + t for points [..., N, 3] with R [..., 3, 3], t [..., 3]."""
    return np.einsum("...ij,...nj->...ni", rot, points) + trans[..., None, :]


# ----------------------------------------------------------------------------------------------
# RANSAC.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RigidFit:
    """A rigid motion of the first frame's points over all frames.

    Attributes:
        rotations: [T, 3, 3] R_t with p_t ~= R_t p_0 + t_t.
        translations: [T, 3].
        frame_valid: [T] bool, False where fewer than 3 usable points made the fit undefined
            (the motion there is interpolated from neighbouring frames).
        residuals: [T, N] |R_t p_0 + t_t - p_t|, metres (0 where not visible in 0 and t).
        center: [3] world point, metres: the mean first-frame position of the points the fit
            used, the pivot `smooth_motion` rotates about (it moves with the world frame,
            unlike the world origin that t_t refers to).
    """

    rotations: np.ndarray
    translations: np.ndarray
    frame_valid: np.ndarray
    residuals: np.ndarray
    center: np.ndarray


def _ransac_frame(
    src: np.ndarray, dst: np.ndarray, usable: np.ndarray, threshold: float,
    num_iterations: int, key: np.random.Generator,
) -> np.ndarray:
    """Inlier mask [N] of the rigid motion src -> dst most usable points agree with."""
    idx = np.flatnonzero(usable)
    if idx.size < MIN_FIT_POINTS:
        return usable.copy()
    samples = np.stack([key.choice(idx, MIN_FIT_POINTS, replace=False)
                        for _ in range(num_iterations)])
    rot, trans = kabsch(src[samples], dst[samples])  # [I, 3, 3], [I, 3]
    pred = apply_rigid(rot, trans, src[idx][None])  # [I, M, 3]
    err = np.linalg.norm(pred - dst[idx][None], axis=-1)
    counts = (err < threshold).sum(axis=1)
    best = err[np.argmax(counts)] < threshold
    # One refinement on the consensus set, then the final inliers.
    rot, trans = kabsch(src[idx][best], dst[idx][best])
    err = np.linalg.norm(apply_rigid(rot, trans, src[idx]) - dst[idx], axis=-1)
    inliers = np.zeros_like(usable)
    inliers[idx] = err < threshold
    return inliers


def fit_rigid_motion(
    tracks: formats.Tracks3D, weights: np.ndarray | None = None
) -> RigidFit:
    """Per-frame weighted Kabsch fit of frame 0's points to each frame's points.

    Args:
        tracks: T x N world tracks.
        weights: [N] or [T, N] non-negative weights (e.g. an inlier mask); None = all ones.

    Returns:
        The RigidFit; frames with fewer than 3 points visible in both frame 0 and t (and of
        positive weight) are marked invalid and take the nearest valid frame's motion. Its
        `center` is the mean frame-0 point of the tracks used in some frame's fit (else of the
        tracks visible in frame 0, else of all tracks).
    """
    points = tracks.points.astype(np.float64)
    visible = tracks.visible
    t_count, n_count = visible.shape
    w = np.ones((t_count, n_count)) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.float64), (t_count, n_count))
    w = w * (visible & visible[0:1])
    src = np.broadcast_to(points[0], points.shape)
    rot, trans = kabsch(src, points, w)
    frame_valid = (w > 0).sum(axis=1) >= MIN_FIT_POINTS
    if frame_valid.any() and not frame_valid.all():
        good = np.flatnonzero(frame_valid)
        nearest = good[np.abs(np.arange(t_count)[:, None] - good[None]).argmin(axis=1)]
        rot, trans = rot[nearest], trans[nearest]
    residuals = np.linalg.norm(apply_rigid(rot, trans, src) - points, axis=-1)
    residuals = np.where(visible & visible[0:1], residuals, 0.0)
    used = (w > 0).any(axis=0)
    if not used.any():
        used = visible[0] if visible[0].any() else np.ones(n_count, bool)
    center = points[0, used].mean(axis=0)
    return RigidFit(rot, trans, frame_valid, residuals, center)


def reject_outlier_tracks(
    tracks: formats.Tracks3D,
    *,
    threshold: float = 0.01,
    max_outlier_fraction: float = 0.2,
    num_iterations: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """RANSAC outlier-track rejection against a rigid motion of the first frame's points.

    For each frame t, RANSAC over 3-point samples of the points visible in frames 0 and t finds
    the rigid motion with the most points within `threshold`. A track is an outlier when it is
    off that motion (residual >= threshold) in more than `max_outlier_fraction` of the frames
    where it is visible (with frame 0). Tracks invisible in frame 0 cannot be checked and are
    kept.

    Args:
        tracks: T x N world tracks.
        threshold: residual (metres) above which a point disagrees with the motion.
        max_outlier_fraction: fraction of a track's checked frames it may disagree in.
        num_iterations: RANSAC hypotheses per frame.
        seed: seed of the sampler (results are deterministic given the seed).

    Returns:
        [N] bool, True for inlier tracks.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive metres, got {threshold}")
    if not 0.0 <= max_outlier_fraction < 1.0:
        raise ValueError(f"max_outlier_fraction must be in [0, 1), got {max_outlier_fraction}")
    key = np.random.default_rng(seed)
    points = tracks.points.astype(np.float64)
    visible = tracks.visible
    t_count, n_count = visible.shape
    checked = visible & visible[0:1]  # [T, N]
    agree = np.zeros((t_count, n_count), bool)
    for t in range(t_count):
        agree[t] = _ransac_frame(points[0], points[t], checked[t], threshold, num_iterations, key)
    num_checked = checked.sum(axis=0)
    num_off = (checked & ~agree).sum(axis=0)
    return num_off <= max_outlier_fraction * num_checked


# ----------------------------------------------------------------------------------------------
# Smoothing.
# ----------------------------------------------------------------------------------------------


def smooth_motion(fit: RigidFit, sigma_frames: float) -> RigidFit:
    """Gaussian temporal smoothing of the fitted rigid motion (not of the points).

    The motion is smoothed as the trajectory c_t = R_t c + t_t of the fit's `center` c (the
    object's first-frame centroid) and the rotation R_t about it, then turned back into
    t_t = c_t - R_t c. Smoothing t_t itself would not do: it is the motion of the world origin,
    which swings by R_t times the object's distance from the origin, so the result would
    depend on where the origin is. Each frame's c_t is the value at t of a Gaussian-weighted
    local linear fit over time (no lag on steady motion, even at the clip's ends); rotations
    use the same weights on sign-aligned quaternions, renormalized (accurate for the small
    rotations within a window). The weights of each frame sum to 1, so the result moves with
    the world frame (see the module docstring). Frame 0 keeps its fitted motion so the
    smoothed motion still starts at the first frame's points.

    Args:
        fit: the per-frame rigid fit.
        sigma_frames: Gaussian standard deviation in frames; <= 0 returns `fit` unchanged.

    Returns:
        The smoothed RigidFit (with the input's residuals).
    """
    if sigma_frames <= 0 or not fit.frame_valid.any():
        return fit
    t_count = fit.translations.shape[0]
    quat = rotations.matrix_to_quat(fit.rotations)
    # Sign-align consecutive quaternions so that averaging does not cancel q and -q.
    for t in range(1, t_count):
        if np.dot(quat[t], quat[t - 1]) < 0:
            quat[t] = -quat[t]
    frames = np.arange(t_count, dtype=np.float64)
    offset = frames[None, :] - frames[:, None]  # [t, s] = s - t
    kernel = np.exp(-0.5 * (offset / sigma_frames) ** 2)
    kernel = kernel * fit.frame_valid[None]  # invalid frames do not vote
    # A Gaussian-weighted local *linear* fit (value and slope at t), not a plain weighted mean:
    # the mean lags behind steady motion at the ends of the clip, the local line does not.
    s0 = kernel.sum(axis=1)
    s1 = (kernel * offset).sum(axis=1)
    s2 = (kernel * offset**2).sum(axis=1)
    det = s0 * s2 - s1**2
    ok = det > 1e-9 * np.maximum(s0 * s2, 1e-12)
    # Weights of the intercept of the least-squares line: (s2 - s1 * (s - t)) / det.
    line = (s2[:, None] - s1[:, None] * offset) * kernel / np.where(ok, det, 1.0)[:, None]
    mean = kernel / np.maximum(s0, 1e-12)[:, None]
    weights = np.where(ok[:, None], line, mean)
    center = np.asarray(fit.center, dtype=np.float64)
    path = np.einsum("tij,j->ti", fit.rotations, center) + fit.translations  # c_t [T, 3]
    rot = rotations.quat_to_matrix(weights @ quat)
    trans = weights @ path - np.einsum("tij,j->ti", rot, center)
    rot[0], trans[0] = fit.rotations[0], fit.translations[0]
    return RigidFit(rot, trans, fit.frame_valid, fit.residuals, fit.center)


def rigidify(tracks: formats.Tracks3D, fit: RigidFit) -> formats.Tracks3D:
    """Regenerates each track as the fitted motion applied to its first-frame point.

    Visibility is unchanged; tracks invisible in frame 0 keep their measured points.
    """
    points = apply_rigid(fit.rotations, fit.translations,
                         np.broadcast_to(tracks.points[0], tracks.points.shape))
    keep = tracks.visible[0][None, :, None]
    points = np.where(keep, points, tracks.points)
    return formats.Tracks3D(lift.fill_invisible(points, tracks.visible), tracks.visible,
                            tracks.frame_indices)


# ----------------------------------------------------------------------------------------------
# Waypoints.
# ----------------------------------------------------------------------------------------------


def select_waypoints(tracks: formats.Tracks3D, distance: float) -> np.ndarray:
    """Frame indices of goal waypoints spaced by how far the object moved.

    Starting at frame 0, a new waypoint is frame t as soon as the mean displacement of the
    points visible in both the last waypoint and t exceeds `distance`; the last frame is always
    included. Frames that share no visible point with the last waypoint do not trigger one.

    Args:
        tracks: T x N world tracks.
        distance: metres; <= 0 keeps every frame.

    Returns:
        [K] int64 strictly increasing frame indices, first 0, last T - 1.
    """
    t_count = tracks.num_frames
    if distance <= 0:
        return np.arange(t_count, dtype=np.int64)
    indices = [0]
    for t in range(1, t_count):
        last = indices[-1]
        both = tracks.visible[last] & tracks.visible[t]
        if not both.any():
            continue
        moved = np.linalg.norm(tracks.points[t, both] - tracks.points[last, both], axis=-1)
        if moved.mean() > distance:
            indices.append(t)
    if indices[-1] != t_count - 1:
        indices.append(t_count - 1)
    return np.asarray(indices, dtype=np.int64)


def take_frames(tracks: formats.Tracks3D, indices: np.ndarray) -> formats.Tracks3D:
    """The sub-sequence of frames `indices`, recording the source frames in `frame_indices`."""
    indices = np.asarray(indices, dtype=np.int64)
    source = indices if tracks.frame_indices is None else tracks.frame_indices[indices]
    return formats.Tracks3D(tracks.points[indices], tracks.visible[indices], source)


def take_points(tracks: formats.Tracks3D, keep: np.ndarray) -> formats.Tracks3D:
    """The tracks selected by a [N] bool mask or index array."""
    return formats.Tracks3D(tracks.points[:, keep], tracks.visible[:, keep], tracks.frame_indices)


# ----------------------------------------------------------------------------------------------
# All of it.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CleanResult:
    """What `clean_tracks` did.

    Attributes:
        tracks: the cleaned (and resampled) tracks.
        inliers: [N_in] bool over the input tracks, True for tracks kept by RANSAC.
        track_indices: [N_out] indices of the input tracks that `tracks` holds.
        waypoints: [K] input frame indices that `tracks` holds.
        fit: rigid motion fitted on the inliers over all input frames (smoothed if asked).
    """

    tracks: formats.Tracks3D
    inliers: np.ndarray
    track_indices: np.ndarray
    waypoints: np.ndarray
    fit: RigidFit


@dataclasses.dataclass(frozen=True)
class CleanOptions:
    """The cleaning settings the pipeline and the CLI pass to `clean_tracks` (same meanings)."""

    ransac_threshold: float = 0.01
    max_outlier_fraction: float = 0.2
    smooth_sigma_frames: float = 0.0
    waypoint_distance: float = 0.0


def clean_tracks(
    tracks: formats.Tracks3D,
    *,
    ransac_threshold: float = 0.01,
    max_outlier_fraction: float = 0.2,
    smooth_sigma_frames: float = 0.0,
    waypoint_distance: float = 0.0,
    drop_outliers: bool = True,
    mask_outlier_frames: bool = True,
    seed: int = 0,
) -> CleanResult:
    """RANSAC outlier rejection, optional motion smoothing, waypoint resampling.

    Args:
        tracks: T x N world tracks.
        ransac_threshold: metres; see `reject_outlier_tracks`.
        max_outlier_fraction: see `reject_outlier_tracks`.
        smooth_sigma_frames: > 0 smooths the fitted rigid motion with this Gaussian sigma and
            replaces the points by the smoothed motion of their first-frame positions.
        waypoint_distance: metres between waypoints (mean point displacement); <= 0 keeps all.
        drop_outliers: remove outlier tracks (True) or only mark them invisible (False, N kept).
        mask_outlier_frames: also mark invisible the single frames where a kept track is off
            the inliers' rigid motion by `ransac_threshold` or more (a brief tracking slip).
        seed: RANSAC seed.

    Returns:
        The CleanResult.
    """
    tracks = formats.validate_tracks3d(tracks)
    inliers = reject_outlier_tracks(tracks, threshold=ransac_threshold,
                                    max_outlier_fraction=max_outlier_fraction, seed=seed)
    if not inliers.any():
        raise ValueError("RANSAC rejected every track: no rigid motion fits the points within "
                         f"{ransac_threshold} m; check the depth scale and the camera, or raise "
                         "the threshold")
    fit = fit_rigid_motion(tracks, weights=inliers)
    if mask_outlier_frames:
        slipped = tracks.visible & tracks.visible[0:1] & (fit.residuals >= ransac_threshold)
        visible = tracks.visible & ~slipped
        tracks = formats.Tracks3D(lift.fill_invisible(tracks.points, visible), visible,
                                  tracks.frame_indices)
    if drop_outliers:
        track_indices = np.flatnonzero(inliers)
        out = take_points(tracks, track_indices)
    else:
        track_indices = np.arange(tracks.num_points)
        out = formats.Tracks3D(tracks.points, tracks.visible & inliers[None], tracks.frame_indices)
    if smooth_sigma_frames > 0:
        fit = smooth_motion(fit, smooth_sigma_frames)
        out = rigidify(out, dataclasses.replace(fit, residuals=fit.residuals[:, track_indices]))
    waypoints = select_waypoints(out, waypoint_distance)
    if len(waypoints) != out.num_frames:
        out = take_frames(out, waypoints)
    return CleanResult(out, inliers, track_indices, waypoints, fit)
