"""Properties of dex4d_jax.tracks: lift -> clean -> smooth -> waypoints moves with the world.

Moving the camera and the world together by a rigid G (T_world_camera -> G @ T_world_camera)
changes nothing the camera sees, so the output must be the original output moved by G: the
points by G, the visibility, kept tracks and waypoints unchanged. Checked over random scenes
(random object motions, outlier tracks, brief slips, invalid depth pixels, depth or disparity
video), random camera poses and random G (any rotation, translations up to 100 m).
"""

from __future__ import annotations

import numpy as np
import pytest

from dex4d_jax import rotations
from dex4d_jax.tracks import clean, formats, lift

_K = np.array([[330.0, 0.0, 159.5], [0.0, 320.0, 119.5], [0.0, 0.0, 1.0]])
_H, _W = 240, 320
_BACKGROUND_M = 2.0
_THRESHOLD_M = 0.01
_NUM_CASES = 20
_OBJECT_HALF_SIZE_M = 0.05


def _random_rotation(key: np.random.Generator) -> np.ndarray:
    """[3, 3] uniformly random rotation (a normalised Gaussian quaternion)."""
    return rotations.quat_to_matrix(key.normal(size=4))


def _small_rotation(key: np.random.Generator, max_angle: float) -> np.ndarray:
    """[3, 3] rotation by up to `max_angle` radians about a random axis."""
    quat = rotations.axis_angle_to_quat(key.normal(size=3), key.uniform(0.0, max_angle))
    return rotations.quat_to_matrix(quat)


def _random_pose(key: np.random.Generator, max_translation_m: float) -> np.ndarray:
    """[4, 4] rigid transform: any rotation, translation uniform in a cube of half-side max."""
    pose = np.eye(4)
    pose[:3, :3] = _random_rotation(key)
    pose[:3, 3] = key.uniform(-max_translation_m, max_translation_m, 3)
    return pose


def _random_scene(seed: int, t_count: int = 12, n_count: int = 30) -> dict:
    """A rigid object moving randomly in front of a pinhole camera, as the pipeline's inputs.

    Everything is in the camera frame, so the same inputs serve any camera pose. The object's
    points get 0.3 mm of noise; three tracks are outliers (off the rigid motion by 5-15 cm
    after frame 0), two entries are one-frame slips (5 cm), and a few entries see an invalid
    depth pixel (0, negative, NaN or inf, in depth or disparity). Each visible point owns its
    2x2 depth pixels (points that would share one are lost by the "tracker"), so bilinear
    sampling reads exactly its depth.

    Returns:
        dict with tracks2d (Tracks2D), depth (DepthVideo, relative), depth0 [H, W] metres,
        outliers [N] bool, slips [(t, i)], invalid [(t, i)].
    """
    key = np.random.default_rng(1000 + seed)
    p_obj = key.uniform(-_OBJECT_HALF_SIZE_M, _OBJECT_HALF_SIZE_M, (n_count, 3))
    rot = _random_rotation(key)
    centre = np.array([0.0, 0.0, 0.75]) + key.uniform(-0.05, 0.05, 3)
    p_cam = np.zeros((t_count, n_count, 3))
    for t in range(t_count):
        if t > 0:  # a random walk in pose: up to 0.25 rad and about 2.5 cm per frame
            rot = _small_rotation(key, 0.25) @ rot
            centre = centre + key.normal(0.0, 0.015, 3)
        p_cam[t] = p_obj @ rot.T + centre
    outliers = np.zeros(n_count, bool)
    outliers[key.choice(n_count, 3, replace=False)] = True
    for i in np.flatnonzero(outliers):
        direction = key.normal(size=3)
        p_cam[1:, i] += key.uniform(0.05, 0.15) * direction / np.linalg.norm(direction)
    slips = [(int(key.integers(1, t_count)), int(i))
             for i in key.choice(np.flatnonzero(~outliers), 2, replace=False)]
    for t, i in slips:
        p_cam[t, i] += [0.0, 0.05, 0.0]
    p_cam += key.normal(0.0, 0.0003, p_cam.shape)

    in_front = p_cam[..., 2] > 0.1
    xy = np.where(in_front[..., None], lift.project(p_cam, _K), -10.0)
    visible = in_front & (key.uniform(size=(t_count, n_count)) > 0.05)
    visible[0] = in_front[0]  # the reference frame: RANSAC can check only tracks seen in it
    # Each point needs its own 2x2 block of depth pixels; lose points that would share one.
    corner = np.floor(xy).astype(np.int64)
    for t in range(t_count):
        owners: dict[tuple[int, int], list[int]] = {}
        for i in np.flatnonzero(visible[t]):
            for dy in (0, 1):
                for dx in (0, 1):
                    owners.setdefault((corner[t, i, 1] + dy, corner[t, i, 0] + dx), []).append(i)
        for shared in (o for o in owners.values() if len(o) > 1):
            visible[t, shared] = False
    metric = np.full((t_count, _H, _W), _BACKGROUND_M)
    for t, i in zip(*np.nonzero(visible), strict=True):
        x0, y0 = corner[t, i]
        metric[t, max(y0, 0):max(y0 + 2, 0), max(x0, 0):max(x0 + 2, 0)] = p_cam[t, i, 2]
    kind = "disparity" if seed % 2 else "depth"
    unknown_scale = key.uniform(0.2, 5.0)
    rel = metric * unknown_scale if kind == "depth" else 1.0 / (unknown_scale * metric)
    invalid = []
    candidates = np.argwhere(visible[1:]) + [1, 0]
    for t, i in candidates[key.choice(len(candidates), 4, replace=False)]:
        x0, y0 = corner[t, i]
        rel[t, max(y0, 0):max(y0 + 2, 0), max(x0, 0):max(x0 + 2, 0)] = key.choice(
            [0.0, -1.0, np.nan, np.inf])
        invalid.append((int(t), int(i)))
    return dict(tracks2d=formats.Tracks2D(xy.astype(np.float32), visible),
                depth=formats.DepthVideo(rel.astype(np.float32), kind),
                depth0=metric[0].astype(np.float32), outliers=outliers, slips=slips,
                invalid=invalid)


def _run(scene: dict, pose: np.ndarray | None, smooth_sigma: float, waypoint_distance: float):
    """Lift with the camera at `pose`, then clean (RANSAC, slips, smoothing, waypoints)."""
    raw = lift.lift_tracks(scene["tracks2d"], scene["depth"], formats.Camera(_K, pose),
                           scene["depth0"])
    cleaned = clean.clean_tracks(raw, ransac_threshold=_THRESHOLD_M,
                                 smooth_sigma_frames=smooth_sigma,
                                 waypoint_distance=waypoint_distance)
    return raw, cleaned


def _moved(g: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points.astype(np.float64) @ g[:3, :3].T + g[:3, 3]


def _assert_points_moved(g, before: formats.Tracks3D, after: formats.Tracks3D, what: str):
    """`after` == G `before` to 1e-6 of the coordinates' magnitude, visibility identical.

    Returns:
        The tolerance used, metres.
    """
    np.testing.assert_array_equal(after.visible, before.visible, err_msg=what)
    # Tracks never visible hold 0 (no measurement), not a point that moves with the world.
    ever = before.visible.any(axis=0)
    expected = _moved(g, before.points[:, ever])
    tol = 1e-6 * max(1.0, float(np.abs(expected).max()))
    err = np.abs(after.points[:, ever] - expected).max()
    assert err <= tol, f"{what}: off by {err:.3g} m > {tol:.3g} m"
    return tol


@pytest.mark.parametrize("seed", range(_NUM_CASES))
def test_pipeline_is_equivariant_to_the_world_frame(seed):
    """Moving camera and world by a random G moves every output by G and changes nothing else.

    Points agree to 1e-6 of the coordinates' magnitude (float32 storage rounds world points
    to 6e-8 of it). The fitted rotations agree to that error divided by the object's size,
    the precision a rigid fit on float32 points can have.
    """
    scene = _random_scene(seed)
    key = np.random.default_rng(seed)
    pose = None if seed % 5 == 0 else _random_pose(key, 100.0)
    g = _random_pose(key, 100.0)
    moved_pose = g if pose is None else g @ pose
    outputs = {}
    for smooth_sigma, waypoint_distance in ((0.0, 0.0), (1.5, 0.0), (0.0, 0.04), (1.5, 0.04)):
        raw, out = _run(scene, pose, smooth_sigma, waypoint_distance)
        raw_g, out_g = _run(scene, moved_pose, smooth_sigma, waypoint_distance)
        what = f"sigma {smooth_sigma}, waypoints {waypoint_distance} m"
        _assert_points_moved(g, raw, raw_g, f"lifted ({what})")
        np.testing.assert_array_equal(out_g.inliers, out.inliers, err_msg=what)
        np.testing.assert_array_equal(out_g.track_indices, out.track_indices, err_msg=what)
        np.testing.assert_array_equal(out_g.waypoints, out.waypoints, err_msg=what)
        tol = _assert_points_moved(g, out.tracks, out_g.tracks, f"cleaned ({what})")
        # The fitted motion is conjugated by G and its pivot moved by G.
        np.testing.assert_allclose(out_g.fit.rotations,
                                   g[:3, :3] @ out.fit.rotations @ g[:3, :3].T,
                                   atol=tol / _OBJECT_HALF_SIZE_M, err_msg=what)
        np.testing.assert_allclose(out_g.fit.center, _moved(g, out.fit.center), atol=tol,
                                   err_msg=what)
        outputs[smooth_sigma, waypoint_distance] = out
    # The scene exercises every stage: invalid depth hidden, outliers dropped, slips hidden,
    # smoothing moved the points, waypoints dropped frames.
    for t, i in scene["invalid"]:
        assert not raw.visible[t, i]
    plain = outputs[0.0, 0.0]
    assert not plain.inliers[scene["outliers"] & raw.visible[0]].any()
    assert plain.inliers.sum() >= 0.8 * (~scene["outliers"]).sum()
    kept = {int(i): k for k, i in enumerate(plain.track_indices)}
    for t, i in scene["slips"]:
        if raw.visible[0, i] and raw.visible[t, i] and i in kept:
            assert not plain.tracks.visible[t, kept[i]], (t, i)
    smoothed = outputs[1.5, 0.0]
    assert np.abs(smoothed.tracks.points - plain.tracks.points).max() > 1e-4
    assert 1 < len(outputs[0.0, 0.04].waypoints) < raw.num_frames


def test_smoothing_does_not_depend_on_the_world_origin():
    """A pure shift of the world by 100 m shifts the smoothed tracks by exactly that."""
    # Smoothing the translation t_t of p_t = R_t p_0 + t_t directly would not commute with a
    # change of origin: t_t is the path of the world origin, which swings with R_t by the
    # object's distance from it. Far from the origin that error is large; here it must be 0.
    key = np.random.default_rng(7)
    t_count, n_count = 15, 20
    p0 = key.uniform(-0.05, 0.05, (n_count, 3))
    angles = 0.3 * np.sin(np.linspace(0.0, 3.0, t_count)) + key.normal(0.0, 0.02, t_count)
    rots = rotations.quat_to_matrix(rotations.axis_angle_to_quat(np.array([0.2, 1.0, 0.3]),
                                                                 angles))
    path = np.cumsum(key.normal(0.0, 0.01, (t_count, 3)), axis=0)
    points = np.einsum("tij,nj->tni", rots, p0) + path[:, None]
    visible = np.ones((t_count, n_count), bool)
    near = clean.clean_tracks(formats.Tracks3D(points.astype(np.float32), visible),
                              smooth_sigma_frames=2.0)
    g = np.eye(4)
    g[:3, 3] = [80.0, -60.0, 40.0]
    far = clean.clean_tracks(formats.Tracks3D(_moved(g, points).astype(np.float32), visible),
                             smooth_sigma_frames=2.0)
    err = np.abs(far.tracks.points - _moved(g, near.tracks.points)).max()
    assert err < 1e-4, err  # float32 at 100 m is 8e-6 m
