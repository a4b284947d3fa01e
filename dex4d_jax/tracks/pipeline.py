"""The video -> 3D tracks chain: read, pick points in the mask, track online, lift, clean."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from dex4d_jax.tracks import clean, formats, lift, trackers, video

# progress_fn(stage, done, total): stage is "track"; done/total count frames.
ProgressFn = Callable[[str, int, int], None]

# The default cleaning settings (CleanOptions is frozen, so one shared instance is safe).
DEFAULT_CLEANING = clean.CleanOptions()


@dataclasses.dataclass
class PipelineResult:
    """Everything `run_pipeline` produced.

    Attributes:
        tracks: the cleaned, resampled world-frame tracks (what `dex4d run --tracks` reads).
        tracks2d: the raw 2D tracks, T_video x N.
        raw: the lifted 3D tracks before cleaning, T_video x N.
        scale: the metric scale applied to the relative depth.
        cleaned: the CleanResult (inliers, kept track indices, waypoints, rigid fit).
    """

    tracks: formats.Tracks3D
    tracks2d: formats.Tracks2D
    raw: formats.Tracks3D
    scale: float
    cleaned: clean.CleanResult


def _as(value, loader, kind):
    if isinstance(value, str | os.PathLike):
        return loader(value)
    if kind is not None and not isinstance(value, kind):
        raise TypeError(f"expected a path or a {kind.__name__}, got {type(value).__name__}")
    return value


def lift_and_clean(
    tracks2d: formats.Tracks2D,
    depth: formats.DepthVideo,
    camera: formats.Camera,
    depth0: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    sampling: str = "bilinear",
    cleaning: clean.CleanOptions = DEFAULT_CLEANING,
) -> PipelineResult:
    """Lifts 2D tracks (see `lift.lift_tracks`) and cleans them (see `clean.clean_tracks`).

    The metric scale uses the mask pixels when `mask` is given, else the first-frame track
    pixels.
    """
    depth0 = formats.validate_depth0(depth0)
    depth = formats.validate_depth(depth)
    tracks2d = formats.validate_tracks2d(tracks2d)
    rel = lift.relative_depth(depth)
    first = tracks2d.tracks[0][tracks2d.visible[0]]
    scale = lift.estimate_metric_scale(rel[0], depth0, mask=mask,
                                       pixels_xy=None if mask is not None else first)
    raw = lift.lift_tracks(tracks2d, depth, camera, depth0, scale=scale, sampling=sampling)
    cleaned = clean.clean_tracks(raw, **dataclasses.asdict(cleaning))
    return PipelineResult(cleaned.tracks, tracks2d, raw, scale, cleaned)


def run_pipeline(
    video_frames: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    depth: str | os.PathLike | formats.DepthVideo,
    camera: str | os.PathLike | formats.Camera,
    depth0: str | os.PathLike | np.ndarray,
    num_points: int = 64,
    *,
    tracker: trackers.PointTracker | None = None,
    margin_px: int = 3,
    sampling: str = "bilinear",
    cleaning: clean.CleanOptions = DEFAULT_CLEANING,
    progress_fn: ProgressFn | None = None,
    show_progress: bool = False,
) -> PipelineResult:
    """Video + first-frame mask + relative depth + camera + first-frame metric depth -> tracks.

    Args:
        video_frames: an MP4 path or frames [T, H, W, 3] uint8 RGB.
        mask: first-frame object mask: an image/.npy/.npz path or [H, W] bool.
        depth: per-frame relative depth: a .npz path or a DepthVideo with T frames.
        camera: a camera .npz path or a Camera.
        depth0: first-frame metric depth: .npy/.npz path or [H, W] metres.
        num_points: N, the points picked in the mask.
        tracker: an online PointTracker (default: LucasKanadeTracker()).
        margin_px: mask erosion before picking points (keeps them off the silhouette).
        sampling: depth sampling, "bilinear" or "nearest".
        cleaning: RANSAC threshold, outlier fraction, smoothing and waypoint distance (see
            `clean.clean_tracks`).
        progress_fn: optional callable(stage, done, total).
        show_progress: print a tqdm progress bar (stderr) while tracking.

    Returns:
        The PipelineResult; `.tracks` is the Tracks3D to save.

    Raises:
        FileNotFoundError: a missing input file.
        formats.FormatError / ValueError: a malformed input or inputs that do not fit together.
    """
    frames = (video.read_video(video_frames)[0]
              if isinstance(video_frames, str | os.PathLike) else np.asarray(video_frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be [T, H, W, 3], got {list(frames.shape)}")
    mask = np.asarray(_as(mask, formats.load_mask, None), dtype=bool)
    depth = formats.validate_depth(_as(depth, formats.load_depth, formats.DepthVideo))
    camera = formats.validate_camera(_as(camera, formats.load_camera, formats.Camera))
    depth0 = formats.validate_depth0(_as(depth0, formats.load_depth0, None))
    t_count, h, w = frames.shape[:3]
    if mask.shape != (h, w):
        raise ValueError(f"the mask is {list(mask.shape)} but the video frames are [{h}, {w}]")
    if depth0.shape != (h, w):
        raise ValueError(f"depth0 is {list(depth0.shape)} but the video frames are [{h}, {w}]; "
                         "the first-frame metric depth must be registered to the video")
    if depth.depth.shape[0] != t_count:
        raise ValueError(f"the depth has {depth.depth.shape[0]} frames but the video has "
                         f"{t_count}; they must match frame for frame")
    points_xy = trackers.select_points(frames[0], mask, num_points, margin_px=margin_px)
    tracker = trackers.LucasKanadeTracker() if tracker is None else tracker
    bar = None
    if show_progress:
        import tqdm  # noqa: PLC0415 (only for the interactive progress bar)

        bar = tqdm.tqdm(total=t_count, desc="tracking", unit="frame", leave=False)

    def on_frame(index: int) -> None:
        if bar is not None:
            bar.update(1)
        if progress_fn is not None:
            progress_fn("track", index + 1, t_count)

    try:
        tracks2d = trackers.track_video(tracker, frames, points_xy, progress_fn=on_frame)
    finally:
        if bar is not None:
            bar.close()
    return lift_and_clean(tracks2d, depth, camera, depth0, mask=mask, sampling=sampling,
                          cleaning=cleaning)


def from_video(
    video_frames: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    depth: str | os.PathLike | formats.DepthVideo,
    camera: str | os.PathLike | formats.Camera,
    depth0: str | os.PathLike | np.ndarray,
    num_points: int = 64,
    **kwargs,
) -> formats.Tracks3D:
    """`run_pipeline(...)`'s cleaned world-frame Tracks3D (same arguments)."""
    return run_pipeline(video_frames, mask, depth, camera, depth0, num_points, **kwargs).tracks
