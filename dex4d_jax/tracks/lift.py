"""Lifting 2D tracks to metric 3D world tracks with relative depth, a metric scale and K.

The chain (Dex4D Sec. III, as in the authors' vision code):
1. relative disparity -> relative depth: depth = 1 / (disparity + 1e-6);
2. metric scale s = median(sensor depth0) / median(estimated depth of frame 0), both over the
   same first-frame pixels (the object mask when given, else the first-frame track pixels);
3. z = s * depth_t sampled at each track pixel (bilinear, or nearest);
4. back-projection with K: p_cam = z * K^-1 [x, y, 1] (OpenCV camera: x right, y down, z fwd);
5. p_world = T_world_camera @ p_cam (identity when the camera has no pose).

Invalid depth is one rule, `is_valid_depth` (finite and > 0), applied wherever a depth is read
or converted: to the disparity before inverting it and to the depth it converts to
(`relative_depth`), to every depth pixel a sample touches (`sample_depth`, which the metric
scale also uses, so invalid pixels never enter its medians) and to the metric depth s * z of
each track point (`lift_tracks`). A point whose sample fails it is invisible in that frame only,
never a far-away point or a zero that looks like data; the rest of its track is kept.

Only step 5 sees the world frame, and it is a rigid transform: moving the camera and the world
together by G moves every lifted point by exactly G (to float32 rounding).
"""

from __future__ import annotations

import numpy as np

from dex4d_jax.tracks import formats

# The authors' inversion of relative disparity: depth = 1 / (disparity + eps).
DISPARITY_EPS = 1e-6


def is_valid_depth(values: np.ndarray) -> np.ndarray:
    """The one validity rule for depth and disparity values: finite and strictly positive.

    Args:
        values: [...] depth (any unit) or disparity.

    Returns:
        [...] bool, True where the value can be used.
    """
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0)


def disparity_to_depth(disparity: np.ndarray, eps: float = DISPARITY_EPS) -> np.ndarray:
    """Relative disparity -> relative depth, 1 / (disparity + eps), NaN where invalid.

    A disparity that is non-finite or not positive (0 included: it is "no measurement", not
    "infinitely far") is invalid, and so is one whose depth is not finite and positive in
    float32. Without this rule a 0 disparity would become a depth of 1 / eps = 1e6.

    Args:
        disparity: [...] relative inverse depth.
        eps: guard added to the disparity (the authors' 1e-6).

    Returns:
        [...] float32 relative depth, NaN where invalid.
    """
    disparity = np.asarray(disparity, dtype=np.float64)
    ok = is_valid_depth(disparity)
    depth = (1.0 / np.where(ok, disparity + eps, 1.0)).astype(np.float32)
    return np.where(ok & is_valid_depth(depth), depth, np.nan).astype(np.float32)


def relative_depth(depth: formats.DepthVideo) -> np.ndarray:
    """The depth video as relative depth [T, H, W] float32 (disparity inverted), invalid -> NaN.

    Invalid: a depth (or disparity) that is non-finite or not positive, or a disparity whose
    depth is not finite and positive (see `disparity_to_depth`).
    """
    values = np.asarray(depth.depth, dtype=np.float32)
    if depth.kind == "disparity":
        values = disparity_to_depth(values)
    return np.where(is_valid_depth(values), values, np.nan).astype(np.float32)


def _rescale_pixels(xy: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]):
    """Maps pixel coordinates between two resolutions of the same image (pixel centres kept)."""
    if tuple(src_hw) == tuple(dst_hw):
        return xy
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    return np.stack([(xy[..., 0] + 0.5) * sx - 0.5, (xy[..., 1] + 0.5) * sy - 0.5], axis=-1)


def sample_depth(
    depth: np.ndarray, xy: np.ndarray, method: str = "bilinear"
) -> tuple[np.ndarray, np.ndarray]:
    """Samples a depth map at subpixel locations; a sample touching an invalid pixel is invalid.

    Bilinear sampling does not fall back on the valid neighbours: a point next to an invalid
    pixel (a hole, the edge of the sensor's range) is as likely to be on a depth edge, where a
    partial average would be wrong. Only a neighbour of exactly zero weight (the point lies on
    its pixel row or column) is not touched and need not be valid.

    Args:
        depth: [H, W] depth; invalid (`is_valid_depth` False: NaN, inf, <= 0) where unusable.
        xy: [N, 2] pixel coordinates (x, y), pixel centres at integers.
        method: "bilinear" (every neighbour of nonzero weight must be valid) or "nearest".

    Returns:
        Tuple of values [N] float32 (0 where invalid) and valid [N] bool (inside the image,
        every pixel used is valid, and the sampled value is finite and positive).
    """
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"method must be 'bilinear' or 'nearest', got {method!r}")
    depth = np.asarray(depth, dtype=np.float32)
    h, w = depth.shape
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    finite = np.isfinite(x) & np.isfinite(y)
    x = np.where(finite, x, -1e9)
    y = np.where(finite, y, -1e9)
    good = is_valid_depth(depth)
    if method == "nearest":
        xi = np.round(x).astype(np.int64)
        yi = np.round(y).astype(np.int64)
        inside = finite & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        xi = np.clip(xi, 0, w - 1)
        yi = np.clip(yi, 0, h - 1)
        valid = inside & good[yi, xi]
        return np.where(valid, depth[yi, xi], 0.0).astype(np.float32), valid
    # A point within half a pixel of the border has only one column/row of neighbours; clamping
    # keeps it (it is still on the image) and the weights fall on the border pixels.
    inside = finite & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    xc = np.clip(x, 0.0, w - 1.0)
    yc = np.clip(y, 0.0, h - 1.0)
    x0 = np.clip(np.floor(xc).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(yc).astype(np.int64), 0, max(h - 2, 0))
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    ax = (xc - x0)[:, None]
    ay = (yc - y0)[:, None]
    corners = np.stack([depth[y0, x0], depth[y0, x1], depth[y1, x0], depth[y1, x1]], axis=1)
    ok = np.stack([good[y0, x0], good[y0, x1], good[y1, x0], good[y1, x1]], axis=1)
    weights = np.concatenate([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], axis=1)
    # A neighbour with zero weight need not be valid (exactly on a pixel centre or an edge).
    valid = inside & np.all(ok | (weights == 0.0), axis=1)
    values = np.sum(np.where(ok, corners, 0.0) * weights, axis=1).astype(np.float32)
    valid = valid & is_valid_depth(values)  # a convex combination of valid values is valid
    return np.where(valid, values, 0.0).astype(np.float32), valid


def estimate_metric_scale(
    depth_rel0: np.ndarray,
    depth0: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    pixels_xy: np.ndarray | None = None,
) -> float:
    """Metric scale s with metric depth ~= s * relative depth (the paper's calibration).

    s = median(depth0[P]) / median(depth_rel0[P]) over the first-frame pixels P where both are
    valid (`is_valid_depth`; an invalid pixel of either map never enters a median). P is the
    object mask when `mask` is given (the calibration the authors describe), else the nearest
    pixels of `pixels_xy` (the first-frame track points, which lie on the object too).

    Args:
        depth_rel0: [H, W] relative depth of the first frame (NaN where invalid).
        depth0: [Hm, Wm] metric sensor depth of the first frame (0 where invalid); may have a
            different resolution than `depth_rel0` (it defines the camera image size).
        mask: [Hm, Wm] bool object mask in the first frame.
        pixels_xy: [M, 2] first-frame pixels (x, y) in the camera image.

    Returns:
        The scale s (metres per relative unit).

    Raises:
        ValueError: neither mask nor pixels given, no pixel where both depths are valid, or a
            scale that is not finite and positive (float overflow of extreme depths).
    """
    depth0 = np.asarray(depth0, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != depth0.shape:
            raise ValueError(f"mask is {list(mask.shape)} but depth0 is {list(depth0.shape)}; "
                             "they must both be the first camera frame [H, W]")
        ys, xs = np.nonzero(mask)
        pixels_xy = np.stack([xs, ys], axis=1).astype(np.float64)
    elif pixels_xy is None:
        raise ValueError("estimate_metric_scale needs a mask or first-frame pixels")
    pixels_xy = np.asarray(pixels_xy, dtype=np.float64).reshape(-1, 2)
    metric, ok_metric = sample_depth(depth0, pixels_xy, "nearest")
    rel_xy = _rescale_pixels(pixels_xy, depth0.shape, depth_rel0.shape)
    rel, ok_rel = sample_depth(depth_rel0, rel_xy, "nearest")
    ok = ok_metric & ok_rel
    if not ok.any():
        raise ValueError("no first-frame pixel has both a valid sensor depth (depth0 > 0) and a "
                         "valid estimated depth; cannot estimate the metric scale")
    scale = float(np.median(metric[ok].astype(np.float64)) / np.median(rel[ok].astype(np.float64)))
    if not is_valid_depth(scale):
        raise ValueError(f"the metric scale {scale} is not finite and positive")
    return scale


def backproject(xy: np.ndarray, z: np.ndarray, k_mat: np.ndarray) -> np.ndarray:
    """Pixels and depths -> camera-frame points, inverting the pinhole model (skew included).

    Args:
        xy: [..., 2] pixels (x, y).
        z: [...] depth along the optical axis, metres.
        k_mat: [3, 3] intrinsics K.

    Returns:
        [..., 3] points in the OpenCV camera frame (x right, y down, z forward).
    """
    fx, s, cx = k_mat[0]
    fy, cy = k_mat[1, 1], k_mat[1, 2]
    yn = (xy[..., 1] - cy) / fy
    xn = (xy[..., 0] - cx - s * yn) / fx
    return np.stack([xn * z, yn * z, z], axis=-1)


def project(points_cam: np.ndarray, k_mat: np.ndarray) -> np.ndarray:
    """Camera-frame points [..., 3] -> pixels [..., 2] (the inverse of `backproject`)."""
    uvw = points_cam @ np.asarray(k_mat, dtype=np.float64).T
    return uvw[..., :2] / uvw[..., 2:3]


def transform_points(transform: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Applies a 4x4 rigid transform to [..., 3] points (identity when it is None)."""
    if transform is None:
        return points
    return points @ transform[:3, :3].T + transform[:3, 3]


def fill_invisible(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Replaces invisible entries by the track's last visible value (before the first: first).

    Tracks never visible become 0. The result has no NaN; `visible` still says which entries
    are measurements.

    Args:
        points: [T, N, D] values, anything (NaN too) where invisible.
        visible: [T, N] bool.

    Returns:
        [T, N, D] float32.
    """
    t_count = points.shape[0]
    index = np.where(visible, np.arange(t_count)[:, None], -1)
    last = np.maximum.accumulate(index, axis=0)  # last visible frame at or before t
    first = np.argmax(visible, axis=0)  # first visible frame (0 if never)
    source = np.where(last >= 0, last, first[None, :])
    filled = np.take_along_axis(points, source[..., None], axis=0)
    ever = visible.any(axis=0)
    filled = np.where(ever[None, :, None], filled, 0.0)
    return np.nan_to_num(filled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def lift_tracks(
    tracks2d: formats.Tracks2D,
    depth: formats.DepthVideo,
    camera: formats.Camera,
    depth0: np.ndarray | None = None,
    *,
    scale: float | None = None,
    mask: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    sampling: str = "bilinear",
) -> formats.Tracks3D:
    """Lifts 2D tracks to metric world-frame 3D tracks.

    Args:
        tracks2d: T x N pixel tracks in the camera image.
        depth: [T, H', W'] relative depth or disparity, one per track frame; H', W' may differ
            from the camera image (the sampling coordinates are rescaled).
        camera: K and T_world_camera (identity when None).
        depth0: [H, W] first-frame metric depth (metres, 0 = invalid). Needed unless `scale`
            is given; its shape is the camera image size.
        scale: metric scale to use instead of estimating it from `depth0`.
        mask: [H, W] first-frame object mask for the scale estimate (else the track pixels).
        image_size: (H, W) of the camera image, needed only when `depth0` is None.
        sampling: "bilinear" or "nearest" depth sampling at the track pixels.

    Returns:
        World-frame Tracks3D, visible where the 2D track is visible, inside the image, every
        depth pixel its sample touches is valid and its metric depth and world point are finite
        (z > 0). An invisible entry holds the track's last visible point (see `fill_invisible`).

    Raises:
        ValueError: mismatched frame counts, neither depth0 nor scale given, or a scale that
            is not finite and positive.
    """
    tracks2d = formats.validate_tracks2d(tracks2d)
    depth = formats.validate_depth(depth)
    camera = formats.validate_camera(camera)
    depth_rel = relative_depth(depth)
    t_count, n_count = tracks2d.visible.shape
    if depth_rel.shape[0] != t_count:
        raise ValueError(f"the depth video has {depth_rel.shape[0]} frames but the 2D tracks have "
                         f"T = {t_count}; they must match frame for frame")
    if depth0 is not None:
        depth0 = formats.validate_depth0(depth0)
        image_size = depth0.shape
    elif image_size is None:
        image_size = depth_rel.shape[1:]
    if scale is None:
        if depth0 is None:
            raise ValueError("lift_tracks needs the first-frame metric depth0 or a scale")
        first = tracks2d.tracks[0][tracks2d.visible[0]]
        scale = estimate_metric_scale(depth_rel[0], depth0, mask=mask,
                                      pixels_xy=None if mask is not None else first)
    if not is_valid_depth(scale):
        raise ValueError(f"the metric scale must be finite and positive, got {scale}")
    h, w = image_size
    xy = tracks2d.tracks.astype(np.float64)
    inside = (xy[..., 0] >= -0.5) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] >= -0.5) & (
        xy[..., 1] <= h - 0.5)
    xy_depth = _rescale_pixels(xy, image_size, depth_rel.shape[1:])
    z = np.zeros((t_count, n_count), np.float64)
    valid = np.zeros((t_count, n_count), bool)
    for t in range(t_count):
        z[t], valid[t] = sample_depth(depth_rel[t], xy_depth[t], sampling)
    z = float(scale) * z
    points_world = transform_points(camera.T_world_camera, backproject(xy, z, camera.K))
    # The same validity rule on the metric depth, and a world point that float32 can hold.
    with np.errstate(over="ignore", invalid="ignore"):
        representable = np.isfinite(points_world.astype(np.float32)).all(axis=-1)
    visible = tracks2d.visible & inside & valid & is_valid_depth(z) & representable
    return formats.Tracks3D(fill_invisible(points_world, visible), visible)
