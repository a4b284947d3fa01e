"""Point trackers behind one small interface: OpenCV Lucas-Kanade, and model adapters.

`PointTracker` is the online interface (`init` on the first frame, then `track` per frame);
`LucasKanadeTracker` is the default and needs no weights. `CoTracker3Tracker`, `Sam2Segmenter`
and `VideoDepthAnything` wrap those projects' public Python packages: they import torch and the
package lazily and fail with a message naming what is missing (the weights file, torch, or the
package and how to install it). The adapters are not exercised by the tests beyond those
messages (no weights can be downloaded on the machines this project is tested on).
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol

import cv2
import numpy as np

from dex4d_jax.tracks import formats, video


class PointTracker(Protocol):
    """An online 2D point tracker."""

    def init(self, frame: np.ndarray, points_xy: np.ndarray) -> None:
        """Starts tracking `points_xy` [N, 2] (pixels x, y) in `frame` [H, W, 3] uint8 RGB."""

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks into the next frame; returns points_xy [N, 2] float32 and visible [N] bool."""


# ----------------------------------------------------------------------------------------------
# Lucas-Kanade.
# ----------------------------------------------------------------------------------------------


class LucasKanadeTracker:
    """OpenCV pyramidal Lucas-Kanade optical flow, frame to frame, with a forward-backward check.

    A point is visible when the forward flow and the flow back from its new position agree
    within `fb_threshold` pixels, the solver converged, and the point is inside the image.
    A lost point stays lost (LK cannot re-identify it after an occlusion) and keeps its last
    position. Runs in real time on one CPU core at 640x480 with 64 points (bench/tracker_fps.py).
    """

    def __init__(
        self,
        win_size: int = 21,
        max_level: int = 3,
        fb_threshold: float = 1.0,
        max_iterations: int = 30,
        epsilon: float = 0.01,
    ) -> None:
        """Configures the tracker.

        Args:
            win_size: side of the LK search window, pixels.
            max_level: pyramid levels above the full image (0 = no pyramid).
            fb_threshold: forward-backward disagreement, pixels, above which a point is lost.
            max_iterations: LK iterations per level.
            epsilon: LK convergence threshold, pixels.
        """
        self._lk_params = dict(
            winSize=(win_size, win_size), maxLevel=max_level,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, max_iterations, epsilon))
        self.fb_threshold = fb_threshold
        self._prev = None
        self._points = None
        self._visible = None

    def init(self, frame: np.ndarray, points_xy: np.ndarray) -> None:
        """Starts tracking `points_xy` [N, 2] in `frame` (RGB [H, W, 3] or gray [H, W])."""
        points_xy = np.asarray(points_xy, dtype=np.float32)
        if points_xy.ndim != 2 or points_xy.shape[1] != 2:
            raise ValueError(f"points_xy must be [N, 2] pixels (x, y), got {list(points_xy.shape)}")
        self._prev = video.to_gray(frame)
        self._points = points_xy.copy()
        h, w = self._prev.shape
        self._visible = _inside(points_xy, h, w)

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks into `frame`; returns points_xy [N, 2] float32 and visible [N] bool."""
        if self._prev is None:
            raise RuntimeError("call init(first_frame, points_xy) before track(frame)")
        gray = video.to_gray(frame)
        if gray.shape != self._prev.shape:
            raise ValueError(f"frame size changed from {self._prev.shape} to {gray.shape}")
        alive = np.flatnonzero(self._visible)
        if alive.size:
            p0 = self._points[alive].reshape(-1, 1, 2)
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(self._prev, gray, p0, None, **self._lk_params)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self._prev, p1, None, **self._lk_params)
            p1 = p1.reshape(-1, 2)
            fb_error = np.linalg.norm(back.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
            h, w = gray.shape
            ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb_error < self.fb_threshold)
            ok &= _inside(p1, h, w)
            self._points[alive[ok]] = p1[ok]
            self._visible[alive[~ok]] = False
        self._prev = gray
        return self._points.copy(), self._visible.copy()


def _inside(points_xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """[N] bool: the pixel lies on the image (centres at integers, borders at -0.5 / size-0.5)."""
    x, y = points_xy[:, 0], points_xy[:, 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (
        y <= h - 0.5)


def track_video(
    tracker: PointTracker, frames, points_xy: np.ndarray, progress_fn=None
) -> formats.Tracks2D:
    """Runs an online tracker over frames.

    Args:
        tracker: a PointTracker.
        frames: a sequence or iterator of [H, W, 3] uint8 RGB frames.
        points_xy: [N, 2] first-frame pixels.
        progress_fn: optional callable(frame_index) called after each frame.

    Returns:
        Tracks2D with T = the number of frames; frame 0 holds `points_xy`.
    """
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("the video has no frames") from None
    tracker.init(first, points_xy)
    h, w = first.shape[:2]
    tracks = [np.asarray(points_xy, dtype=np.float32)]
    visible = [_inside(tracks[0], h, w)]
    if progress_fn is not None:
        progress_fn(0)
    for index, frame in enumerate(iterator, start=1):
        xy, vis = tracker.track(frame)
        tracks.append(xy)
        visible.append(vis)
        if progress_fn is not None:
            progress_fn(index)
    return formats.Tracks2D(np.stack(tracks), np.stack(visible))


# ----------------------------------------------------------------------------------------------
# Choosing points to track.
# ----------------------------------------------------------------------------------------------


def select_points(
    frame: np.ndarray,
    mask: np.ndarray,
    num_points: int = 64,
    *,
    margin_px: int = 3,
    quality_level: float = 0.01,
    min_distance: float | None = None,
) -> np.ndarray:
    """Picks `num_points` trackable pixels inside the first-frame object mask.

    Corners (cv2.goodFeaturesToTrack) inside the mask eroded by `margin_px` come first (LK
    tracks them best, and the erosion keeps them off the silhouette, where the depth jumps to
    the background); the rest is topped up from a grid over the eroded mask, farthest first
    from the points already chosen, so the points cover the object.

    Args:
        frame: [H, W, 3] uint8 RGB (or [H, W] gray) first frame.
        mask: [H, W] bool object mask.
        num_points: N.
        margin_px: erosion of the mask, pixels (falls back to the raw mask if that empties it).
        quality_level: goodFeaturesToTrack's minimum corner quality relative to the best.
        min_distance: minimum spacing of corners, pixels (default: from the mask area and N).

    Returns:
        [N, 2] float32 pixels (x, y).

    Raises:
        ValueError: mask shape differs from the frame, or it has fewer than N pixels.
    """
    gray = video.to_gray(frame)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != gray.shape:
        raise ValueError(f"the mask is {list(mask.shape)} but the frame is {list(gray.shape)}; "
                         "they must have the same [H, W]")
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    region = mask
    if margin_px > 0:
        kernel = np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8)
        eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        if eroded.sum() >= num_points:
            region = eroded
    area = int(region.sum())
    if area < num_points:
        raise ValueError(f"the mask has {area} pixels, fewer than the {num_points} points asked")
    if min_distance is None:
        # Spacing that would tile the region with about 2N points.
        min_distance = max(2.0, 0.7 * float(np.sqrt(area / num_points)))
    corners = cv2.goodFeaturesToTrack(gray, maxCorners=num_points, qualityLevel=quality_level,
                                      minDistance=min_distance, mask=region.astype(np.uint8))
    chosen = np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2)
    if len(chosen) < num_points:
        ys, xs = np.nonzero(region)
        candidates = np.stack([xs, ys], axis=1).astype(np.float32)
        stride = max(1, int(np.sqrt(area / (4 * num_points))))
        grid = candidates[(xs % stride == 0) & (ys % stride == 0)]
        if len(grid) < num_points - len(chosen):
            grid = candidates
        chosen = _farthest_top_up(chosen, grid, num_points)
    return chosen[:num_points].astype(np.float32)


def _farthest_top_up(chosen: np.ndarray, candidates: np.ndarray, total: int) -> np.ndarray:
    """Greedy farthest-point sampling from `candidates` until `total` points are chosen."""
    if len(chosen):
        dist = np.min(np.linalg.norm(candidates[:, None] - chosen[None], axis=-1), axis=1)
    else:
        dist = np.full(len(candidates), np.inf)
        # Start from the candidate nearest the centroid, a stable deterministic choice.
        start = np.argmin(np.linalg.norm(candidates - candidates.mean(axis=0), axis=1))
        chosen = candidates[start:start + 1]
        dist = np.minimum(dist, np.linalg.norm(candidates - chosen[0], axis=1))
    picked = [chosen]
    count = len(chosen)
    while count < total:
        index = int(np.argmax(dist))
        point = candidates[index]
        picked.append(point[None])
        dist = np.minimum(dist, np.linalg.norm(candidates - point, axis=1))
        count += 1
    return np.concatenate(picked, axis=0)


# ----------------------------------------------------------------------------------------------
# Model adapters (torch and the projects' packages are imported lazily).
# ----------------------------------------------------------------------------------------------


def _require_weights(path: str | os.PathLike | None, what: str, where_to_get: str) -> str:
    if path is None or not os.path.isfile(os.fspath(path)):
        shown = "none given" if path is None else f"{os.fspath(path)} does not exist"
        raise FileNotFoundError(f"{what} needs its weights file ({shown}); download it from "
                                f"{where_to_get} and pass its path")
    return os.fspath(path)


def _require_module(module: str, what: str, install: str):
    try:
        importlib.import_module("torch")
    except ImportError:
        raise ImportError(f"{what} needs PyTorch, which is not installed; install it with "
                          "`pip install torch` (a CPU build is enough to try it)") from None
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs the Python package providing {module!r}, which is not "
                          f"installed; install it with `{install}`") from None


_COTRACKER_INSTALL = "pip install git+https://github.com/facebookresearch/co-tracker"
_COTRACKER_WEIGHTS = "https://huggingface.co/facebook/cotracker3 (scaled_offline.pth)"


class CoTracker3Tracker:
    """Offline CoTracker3 (Karaev et al. 2024) over a whole video, as in the Dex4D pipeline.

    Not an online `PointTracker`: CoTracker3's offline model sees the whole clip at once, so it
    has `track_video(frames, points_xy) -> Tracks2D` instead. Untested here (no weights).
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu",
                 window_len: int = 60) -> None:
        """Loads the model.

        Args:
            weights: path to a CoTracker3 offline checkpoint (scaled_offline.pth).
            device: torch device.
            window_len: the model's temporal window (60 for the released offline model).

        Raises:
            FileNotFoundError: no weights file.
            ImportError: torch or the cotracker package is missing.
        """
        weights = _require_weights(weights, "CoTracker3Tracker", _COTRACKER_WEIGHTS)
        predictor = _require_module("cotracker.predictor", "CoTracker3Tracker", _COTRACKER_INSTALL)
        self._torch = importlib.import_module("torch")
        self.device = device
        self.model = predictor.CoTrackerPredictor(
            checkpoint=weights, offline=True, window_len=window_len).to(device).eval()

    def track_video(self, frames: np.ndarray, points_xy: np.ndarray) -> formats.Tracks2D:
        """Tracks first-frame points through frames [T, H, W, 3] uint8; returns Tracks2D."""
        torch = self._torch
        clip = torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2)[None].float()
        points_xy = np.asarray(points_xy, dtype=np.float32)
        # Queries are (t, x, y) with t the frame where the point is given (0 here).
        queries = np.concatenate([np.zeros((len(points_xy), 1), np.float32), points_xy], axis=1)
        with torch.no_grad():
            tracks, visible = self.model(clip.to(self.device),
                                         queries=torch.from_numpy(queries)[None].to(self.device))
        return formats.Tracks2D(tracks[0].cpu().numpy().astype(np.float32),
                                visible[0].cpu().numpy().astype(bool).reshape(tracks.shape[1:3]))


_SAM2_INSTALL = "pip install git+https://github.com/facebookresearch/sam2"
_SAM2_WEIGHTS = ("https://github.com/facebookresearch/sam2#model-description "
                 "(e.g. sam2.1_hiera_large.pt)")


class Sam2Segmenter:
    """SAM 2 image segmentation of the first frame from a box or clicks. Untested here."""

    def __init__(self, weights: str | os.PathLike | None = None,
                 config: str = "configs/sam2.1/sam2.1_hiera_l.yaml", device: str = "cpu") -> None:
        """Loads the model.

        Args:
            weights: path to a SAM 2 checkpoint (.pt).
            config: the sam2 package's model config name matching the checkpoint.
            device: torch device.

        Raises:
            FileNotFoundError: no weights file.
            ImportError: torch or the sam2 package is missing.
        """
        weights = _require_weights(weights, "Sam2Segmenter", _SAM2_WEIGHTS)
        build = _require_module("sam2.build_sam", "Sam2Segmenter", _SAM2_INSTALL)
        predictor = _require_module("sam2.sam2_image_predictor", "Sam2Segmenter", _SAM2_INSTALL)
        self.predictor = predictor.SAM2ImagePredictor(
            build.build_sam2(config, weights, device=device))

    def segment(self, frame: np.ndarray, *, box_xyxy=None, points_xy=None,
                point_labels=None) -> np.ndarray:
        """The object mask [H, W] bool in `frame` [H, W, 3] uint8 RGB from a box and/or clicks."""
        self.predictor.set_image(np.asarray(frame))
        masks, scores, _ = self.predictor.predict(
            point_coords=None if points_xy is None else np.asarray(points_xy, np.float32),
            point_labels=None if point_labels is None else np.asarray(point_labels, np.int32),
            box=None if box_xyxy is None else np.asarray(box_xyxy, np.float32),
            multimask_output=False)
        return np.asarray(masks[int(np.argmax(scores))]).astype(bool)


_VDA_INSTALL = ("git clone https://github.com/DepthAnything/Video-Depth-Anything && "
                "pip install -r Video-Depth-Anything/requirements.txt && add the clone to "
                "PYTHONPATH")
_VDA_WEIGHTS = "https://huggingface.co/depth-anything (video_depth_anything_vits.pth / _vitl.pth)"
_VDA_CONFIGS = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
}


class VideoDepthAnything:
    """Video Depth Anything (relative disparity per frame). Untested here (no weights)."""

    def __init__(self, weights: str | os.PathLike | None = None, encoder: str = "vitl",
                 device: str = "cpu", input_size: int = 518) -> None:
        """Loads the model.

        Args:
            weights: path to a Video Depth Anything checkpoint matching `encoder`.
            encoder: "vits", "vitb" or "vitl".
            device: torch device.
            input_size: the model's input resolution.

        Raises:
            FileNotFoundError: no weights file.
            ImportError: torch or the video_depth_anything package is missing.
            ValueError: unknown encoder.
        """
        if encoder not in _VDA_CONFIGS:
            raise ValueError(f"encoder must be one of {sorted(_VDA_CONFIGS)}, got {encoder!r}")
        weights = _require_weights(weights, "VideoDepthAnything", _VDA_WEIGHTS)
        module = _require_module("video_depth_anything.video_depth", "VideoDepthAnything",
                                 _VDA_INSTALL)
        torch = importlib.import_module("torch")
        self.model = module.VideoDepthAnything(**_VDA_CONFIGS[encoder])
        self.model.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
        self.model = self.model.to(device).eval()
        self.device = device
        self.input_size = input_size

    def estimate(self, frames: np.ndarray, fps: float = 30.0) -> formats.DepthVideo:
        """Relative disparity for frames [T, H, W, 3] uint8 RGB, as a DepthVideo."""
        depths, _ = self.model.infer_video_depth(np.asarray(frames), fps,
                                                 input_size=self.input_size, device=self.device)
        return formats.DepthVideo(np.asarray(depths, dtype=np.float32), "disparity")
