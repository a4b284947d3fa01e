"""Tests of dex4d_jax.tracks: formats, lifting, Kabsch/RANSAC/waypoints, LK, rendered video."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_one_error_line, folder_files, run_cli, run_headless, skip_without_gl
from scipy.spatial.transform import Rotation

from dex4d_jax.tracks import clean, cli, formats, lift, pipeline, synthetic, trackers

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------------
# The package runs without JAX (robot computer).
# ----------------------------------------------------------------------------------------------


def test_tracks_package_imports_without_jax_mujoco_or_torch():
    script = ("import sys\n"
              "import dex4d_jax.tracks, dex4d_jax.tracks.formats, dex4d_jax.tracks.lift\n"
              "import dex4d_jax.tracks.clean, dex4d_jax.tracks.trackers, dex4d_jax.tracks.video\n"
              "import dex4d_jax.tracks.pipeline, dex4d_jax.tracks.cli, dex4d_jax.tracks.synthetic\n"
              "bad = [m for m in ('jax', 'mujoco', 'torch') if m in sys.modules]\n"
              "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------------------------
# Formats.
# ----------------------------------------------------------------------------------------------


def _tracks3d(t_count=5, n_count=7, seed=0):
    key = np.random.default_rng(seed)
    return formats.Tracks3D(key.normal(size=(t_count, n_count, 3)).astype(np.float32),
                            key.uniform(size=(t_count, n_count)) > 0.2)


def test_formats_round_trip(tmp_path):
    tracks = _tracks3d()
    formats.save_tracks3d(tmp_path / "t.npz", tracks)
    back = formats.load_tracks3d(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.points, tracks.points)
    np.testing.assert_array_equal(back.visible, tracks.visible)
    assert back.frame_indices is None
    t2 = formats.Tracks2D(np.ones((3, 4, 2)), np.ones((3, 4), bool))
    formats.save_tracks2d(tmp_path / "t2.npz", t2)
    assert formats.load_tracks2d(tmp_path / "t2.npz").tracks.shape == (3, 4, 2)
    formats.save_depth(tmp_path / "d.npz", formats.DepthVideo(np.ones((3, 4, 5)), "disparity"))
    assert formats.load_depth(tmp_path / "d.npz").kind == "disparity"
    depth0 = np.full((4, 5), 0.5)
    depth0[0, 0] = np.nan  # invalid -> 0
    formats.save_depth0(tmp_path / "d0.npy", np.where(np.isnan(depth0), 0, depth0))
    np.save(tmp_path / "raw.npy", depth0)
    assert formats.load_depth0(tmp_path / "raw.npy")[0, 0] == 0.0
    np.savez(tmp_path / "d0.npz", depth0=depth0)
    assert formats.load_depth0(tmp_path / "d0.npz").shape == (4, 5)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix()
    formats.save_camera(tmp_path / "c.npz", formats.Camera(np.diag([500.0, 500.0, 1.0]), pose))
    np.testing.assert_allclose(formats.load_camera(tmp_path / "c.npz").T_world_camera, pose)


def test_format_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="3D tracks file not found: .*nope.npz"):
        formats.load_tracks3d(tmp_path / "nope.npz")
    np.savez(tmp_path / "keys.npz", pts=np.zeros((2, 3, 3)), visible=np.ones((2, 3), bool))
    with pytest.raises(formats.FormatError, match="needs key 'points'; keys present: pts, visible"):
        formats.load_tracks3d(tmp_path / "keys.npz")
    np.savez(tmp_path / "shape.npz", points=np.zeros((2, 3, 2)), visible=np.ones((2, 3), bool))
    with pytest.raises(formats.FormatError, match=r"'points' must have shape \[\*, \*, 3\], got "
                                                  r"\[2, 3, 2\]"):
        formats.load_tracks3d(tmp_path / "shape.npz")
    points = np.zeros((2, 3, 3))
    points[1, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", points=points, visible=np.ones((2, 3), bool))
    with pytest.raises(formats.FormatError, match="'points' has 1 NaN or infinite values"):
        formats.load_tracks3d(tmp_path / "nan.npz")
    np.savez(tmp_path / "tn.npz", points=np.zeros((2, 3, 3)), visible=np.ones((2, 4), bool))
    with pytest.raises(formats.FormatError, match=r"'visible' must be \[T, N\] = \[2, 3\]"):
        formats.load_tracks3d(tmp_path / "tn.npz")
    np.savez(tmp_path / "vis.npz", points=np.zeros((2, 3, 3)), visible=np.full((2, 3), 0.5))
    with pytest.raises(formats.FormatError, match="'visible' must be bool"):
        formats.load_tracks3d(tmp_path / "vis.npz")
    np.savez(tmp_path / "t2.npz", tracks=np.zeros((2, 3, 2)))
    with pytest.raises(formats.FormatError, match="needs key 'visible'; keys present: tracks"):
        formats.load_tracks2d(tmp_path / "t2.npz")
    np.savez(tmp_path / "kind.npz", depth=np.ones((2, 3, 4)), kind=np.array("metric"))
    with pytest.raises(formats.FormatError, match="'kind' must be one of"):
        formats.load_depth(tmp_path / "kind.npz")
    np.savez(tmp_path / "k.npz", K=np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(formats.FormatError, match="positive focal lengths"):
        formats.load_camera(tmp_path / "k.npz")
    np.savez(tmp_path / "k2.npz", K=np.eye(3), T_world_camera=np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(formats.FormatError, match="orthonormal with determinant"):
        formats.load_camera(tmp_path / "k2.npz")
    np.savez(tmp_path / "k3.npz", K=np.eye(3), T_world_camera=np.ones((4, 4)))
    with pytest.raises(formats.FormatError, match=r"last row must be \[0, 0, 0, 1\]"):
        formats.load_camera(tmp_path / "k3.npz")
    np.savez(tmp_path / "d0.npz", depth=np.ones((3, 3)))
    with pytest.raises(formats.FormatError, match="needs key 'depth0'; keys present: depth"):
        formats.load_depth0(tmp_path / "d0.npz")
    np.save(tmp_path / "empty.npy", np.zeros((3, 3)))
    with pytest.raises(formats.FormatError, match="no valid"):
        formats.load_depth0(tmp_path / "empty.npy")
    np.save(tmp_path / "arr.npy", np.zeros((2, 3, 3)))
    with pytest.raises(formats.FormatError, match="expected an .npz archive"):
        formats.load_tracks3d(tmp_path / "arr.npy")


# ----------------------------------------------------------------------------------------------
# Lifting against a synthetic pinhole scene.
# ----------------------------------------------------------------------------------------------

_K = np.array([[520.0, 0.0, 319.5], [0.0, 510.0, 239.5], [0.0, 0.0, 1.0]])
_H, _W = 480, 640
_BACKGROUND_M = 1.5


def _pinhole_scene(seed=0, t_count=8, n_count=40):
    """Rigidly moving points seen by a posed camera, with depth maps exact at the track pixels.

    Each point's 2x2 pixel neighbourhood holds its true depth, so bilinear (and nearest)
    sampling recovers it exactly; everything else is a background at 1.5 m.
    """
    key = np.random.default_rng(seed)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec([0.4, -0.3, 0.2]).as_matrix()
    pose[:3, 3] = [0.3, -0.2, 0.5]
    # A jittered 8 x 5 grid, 2 cm apart across the view (about 17 px), so no two points share
    # depth pixels; random depth within +-3 cm.
    gx, gy = np.meshgrid(np.arange(8) - 3.5, np.arange(5) - 2.0)
    grid = np.stack([0.02 * gx.ravel(), 0.02 * gy.ravel(), np.zeros(40)], axis=1)[:n_count]
    p0_cam = grid + key.uniform([-0.003, -0.003, -0.03], [0.003, 0.003, 0.03], (n_count, 3))
    p0_cam += [0.0, 0.0, 0.6]
    centre = p0_cam.mean(axis=0)
    rots = Rotation.from_rotvec(np.linspace(0, 1, t_count)[:, None] * [0.0, 0.3, 0.1])
    shifts = np.linspace(0, 1, t_count)[:, None] * [0.05, -0.03, 0.04]
    p_cam = np.stack([rots[t].apply(p0_cam - centre) + centre + shifts[t]
                      for t in range(t_count)])
    xy = lift.project(p_cam, _K)
    depth = np.full((t_count, _H, _W), _BACKGROUND_M)
    for t in range(t_count):
        x0 = np.floor(xy[t, :, 0]).astype(int)
        y0 = np.floor(xy[t, :, 1]).astype(int)
        cells = set()
        for i in range(n_count):
            block = {(y0[i] + a, x0[i] + b) for a in (0, 1) for b in (0, 1)}
            assert not cells & block, "two points share depth pixels"
            cells |= block
            depth[t, y0[i]:y0[i] + 2, x0[i]:x0[i] + 2] = p_cam[t, i, 2]
    p_world = p_cam @ pose[:3, :3].T + pose[:3, 3]
    return dict(xy=xy.astype(np.float32), depth=depth, p_world=p_world, p_cam=p_cam,
                camera=formats.Camera(_K, pose))


@pytest.mark.parametrize("kind", ["depth", "disparity"])
@pytest.mark.parametrize("use_mask", [False, True])
def test_lift_recovers_world_points_within_1mm(kind, use_mask):
    scene = _pinhole_scene()
    scale = 0.37  # the unknown scale of the relative depth
    rel = scene["depth"] * scale if kind == "depth" else 1.0 / (scale * scene["depth"])
    t_count, n_count = scene["xy"].shape[:2]
    visible = np.ones((t_count, n_count), bool)
    visible[3, 5] = False  # the tracker lost it
    xy = scene["xy"].copy()
    xy[4, 6] = [-3.0, 100.0]  # off the image
    xy[2, 7] = [_W + 0.2, 50.0]
    rel_bad = rel.copy()
    x0, y0 = np.floor(xy[5, 8]).astype(int)
    rel_bad[5, y0, x0] = 0.0 if kind == "depth" else np.nan  # an invalid depth sample
    mask = (scene["depth"][0] < _BACKGROUND_M) if use_mask else None
    out = lift.lift_tracks(formats.Tracks2D(xy, visible), formats.DepthVideo(rel_bad, kind),
                           scene["camera"], scene["depth"][0], mask=mask)
    expected_invisible = {(3, 5), (4, 6), (2, 7), (5, 8)}
    assert {tuple(i) for i in np.argwhere(~out.visible)} == expected_invisible
    assert np.isfinite(out.points).all()
    err = np.linalg.norm(out.points - scene["p_world"], axis=-1)[out.visible]
    assert err.max() < 1e-3, err.max()
    # Invisible entries carry the last visible value, not zeros that look like data.
    np.testing.assert_allclose(out.points[3, 5], out.points[2, 5])
    # Nearest sampling is exact too (the 2x2 neighbourhood holds the depth).
    near = lift.lift_tracks(formats.Tracks2D(scene["xy"], np.ones_like(visible)),
                            formats.DepthVideo(rel, kind), scene["camera"], scene["depth"][0],
                            sampling="nearest")
    assert np.linalg.norm(near.points - scene["p_world"], axis=-1).max() < 1e-3


def test_lift_with_depth_noise_stays_within_stated_bound():
    # Multiplicative noise of sigma = 0.2 % on the relative depth. Bound per point:
    # |error| <= 1 mm + 6 sigma |p_cam| (about 1 + 7.8 mm at 0.65 m): bilinear sampling averages
    # four samples (sigma / 2) and the median-based scale adds well under one sigma.
    sigma = 0.002
    scene = _pinhole_scene(seed=0)
    key = np.random.default_rng(1)
    rel = 0.37 * scene["depth"] * (1.0 + sigma * key.standard_normal(scene["depth"].shape))
    mask = scene["depth"][0] < _BACKGROUND_M
    out = lift.lift_tracks(formats.Tracks2D(scene["xy"], np.ones(scene["xy"].shape[:2], bool)),
                           formats.DepthVideo(rel, "depth"), scene["camera"], scene["depth"][0],
                           mask=mask)
    err = np.linalg.norm(out.points - scene["p_world"], axis=-1)
    bound = 1e-3 + 6 * sigma * np.linalg.norm(scene["p_cam"], axis=-1)
    assert (err <= bound).all(), (err / bound).max()
    assert np.median(err) < 1e-3 + sigma * 0.65


def test_metric_scale_and_disparity_inversion():
    rel = np.full((4, 5), 2.0)
    depth0 = np.full((4, 5), 0.5)
    depth0[0, 0] = 0.0  # invalid sensor pixel is ignored
    rel[0, 0] = 100.0
    mask = np.ones((4, 5), bool)
    assert lift.estimate_metric_scale(rel, depth0, mask=mask) == pytest.approx(0.25)
    # depth = 1 / (disparity + 1e-6), as the authors' vision code does.
    assert lift.disparity_to_depth(np.array([4.0]))[0] == pytest.approx(1 / (4.0 + 1e-6))
    assert np.isnan(lift.disparity_to_depth(np.array([-1.0]))[0])
    with pytest.raises(ValueError, match="no first-frame pixel"):
        lift.estimate_metric_scale(rel, np.zeros((4, 5)), mask=mask)


def test_zero_disparity_hides_the_point_in_that_frame_only():
    """The issue's example: disparity 0.5 everywhere except a 0 patch in the last frame.

    Before the fix the 0 became depth 1 / 1e-6, a visible point at z = 4e5 m, and RANSAC then
    dropped the whole track. Now it is invisible in that frame only and the track is kept.
    """
    k_mat = np.array([[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]])
    t_count, h, w = 4, 48, 64
    start = np.array([[10.0, 10.0], [50.0, 12.0], [20.0, 40.0], [40.3, 30.6], [30.0, 20.0]])
    xy = (start[None] + np.arange(t_count)[:, None, None] * [1.0, 0.5]).astype(np.float32)
    disparity = np.full((t_count, h, w), 0.5, np.float32)
    x3, y3 = xy[-1, 3]
    disparity[-1, int(y3) - 2:int(y3) + 3, int(x3) - 2:int(x3) + 3] = 0.0
    depth0 = np.full((h, w), 0.8, np.float32)  # so the scale is 0.8 / 2 = 0.4
    tracks2d = formats.Tracks2D(xy, np.ones((t_count, 5), bool))
    pose = np.eye(4)
    pose[:3, 3] = [0.1, 0.2, 0.3]
    for sampling in ("bilinear", "nearest"):
        out = lift.lift_tracks(tracks2d, formats.DepthVideo(disparity, "disparity"),
                               formats.Camera(k_mat, pose), depth0, sampling=sampling)
        expected = np.ones((t_count, 5), bool)
        expected[-1, 3] = False
        np.testing.assert_array_equal(out.visible, expected)
        assert np.isfinite(out.points).all()
        np.testing.assert_allclose(out.points[out.visible][:, 2], 0.8 + 0.3, atol=1e-5)
        np.testing.assert_array_equal(out.points[-1, 3], out.points[-2, 3])  # last visible
        cleaned = clean.clean_tracks(out)
        np.testing.assert_array_equal(cleaned.track_indices, np.arange(5))
        np.testing.assert_array_equal(cleaned.tracks.visible, expected)


def test_invalid_depth_is_one_rule_for_conversion_sampling_and_scale():
    """Non-finite or non-positive depth/disparity, or one converting to such a depth, is unused."""
    disparity = np.array([0.0, -0.5, np.nan, np.inf, -np.inf, 1e-300, 2.0])
    depth = lift.disparity_to_depth(disparity)
    assert np.isnan(depth[:5]).all()
    assert depth[5] == pytest.approx(1e6) and depth[6] == pytest.approx(1 / (2.0 + 1e-6))
    video = formats.DepthVideo(np.array([[[0.0, -1.0, np.inf, 3.0]]], np.float32), "depth")
    rel = lift.relative_depth(video)
    assert np.isnan(rel[0, 0, :3]).all() and rel[0, 0, 3] == 3.0
    # Bilinear: a sample touching an invalid pixel with nonzero weight is invalid; on a pixel
    # centre the invalid neighbour has zero weight and is not touched.
    image = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    values, valid = lift.sample_depth(image, np.array([[0.5, 0.5], [1.5, 0.5], [1.0, 0.0]]))
    np.testing.assert_array_equal(valid, [True, False, True])
    np.testing.assert_allclose(values, [1.0, 0.0, 1.0])
    # The metric scale: invalid relative depth (here a 0 disparity over most of the mask) and
    # invalid sensor pixels never enter the medians.
    rel0 = lift.disparity_to_depth(np.where(np.arange(20).reshape(4, 5) < 12, 0.0, 0.5))
    depth0 = np.full((4, 5), 0.8)
    depth0[3, 4] = np.nan
    mask = np.ones((4, 5), bool)
    assert lift.estimate_metric_scale(rel0, depth0, mask=mask) == pytest.approx(0.4, rel=1e-5)
    with pytest.raises(ValueError, match="finite and positive"):
        lift.lift_tracks(formats.Tracks2D(np.zeros((1, 1, 2)), np.ones((1, 1), bool)),
                         formats.DepthVideo(np.ones((1, 4, 5)), "depth"),
                         formats.Camera(np.eye(3)), scale=float("nan"), image_size=(4, 5))


# ----------------------------------------------------------------------------------------------
# Kabsch, RANSAC, smoothing, waypoints.
# ----------------------------------------------------------------------------------------------


def test_kabsch_matches_scipy_align_vectors():
    key = np.random.default_rng(0)
    for trial in range(20):
        src = key.normal(size=(30, 3))
        rot = Rotation.random(random_state=trial)
        dst = rot.apply(src) + key.normal(size=3) + 0.01 * key.normal(size=(30, 3))
        weights = key.uniform(0.1, 2.0, 30)
        got_r, got_t = clean.kabsch(src, dst, weights)
        mean_src = np.average(src, axis=0, weights=weights)
        mean_dst = np.average(dst, axis=0, weights=weights)
        ref, _ = Rotation.align_vectors(dst - mean_dst, src - mean_src, weights=weights)
        np.testing.assert_allclose(got_r, ref.as_matrix(), atol=1e-9)
        np.testing.assert_allclose(got_t, mean_dst - ref.apply(mean_src), atol=1e-9)
    # A mirror image: the best orthogonal matrix is a reflection; Kabsch must stay a rotation.
    src = key.normal(size=(20, 3))
    got_r, _ = clean.kabsch(src, src * [1.0, 1.0, -1.0])
    assert np.linalg.det(got_r) == pytest.approx(1.0)
    # A bool mask is a weight: masked-out garbage does not matter.
    dst = Rotation.from_rotvec([0.3, 0.0, 0.2]).apply(src)
    dst_bad = dst.copy()
    dst_bad[:5] += 10.0
    mask = np.arange(20) >= 5
    np.testing.assert_allclose(clean.kabsch(src, dst_bad, mask)[0], clean.kabsch(src, dst)[0],
                               atol=1e-12)


def _rigid_tracks(seed=0, t_count=20, n_count=40, noise=0.001):
    key = np.random.default_rng(seed)
    p0 = key.uniform(-0.05, 0.05, (n_count, 3)) + [0.0, 0.0, 0.1]
    rots = Rotation.from_rotvec(np.linspace(0, 1, t_count)[:, None] * [0.2, 0.5, 0.1])
    shifts = np.linspace(0, 1, t_count)[:, None] * [0.1, 0.05, 0.08]
    points = np.stack([rots[t].apply(p0) + shifts[t] for t in range(t_count)])
    points += noise * key.standard_normal(points.shape)
    return points, key


def test_ransac_rejects_outlier_tracks_and_keeps_inliers():
    points, key = _rigid_tracks()
    t_count, n_count = points.shape[:2]
    outliers = np.zeros(n_count, bool)
    outliers[[3, 11, 19, 27, 35]] = True
    for i in np.flatnonzero(outliers):  # a tracker that slid off: a random drift
        points[1:, i] += np.cumsum(key.normal(0.0, 0.01, (t_count - 1, 3)), axis=0)
    points[7, 8] += [0.0, 0.05, 0.0]  # one brief slip of an inlier (1 frame of 20)
    visible = key.uniform(size=(t_count, n_count)) > 0.1
    visible[0] = True
    tracks = formats.Tracks3D(points.astype(np.float32), visible)
    inliers = clean.reject_outlier_tracks(tracks, threshold=0.01)
    np.testing.assert_array_equal(inliers, ~outliers)
    result = clean.clean_tracks(tracks, ransac_threshold=0.01)
    np.testing.assert_array_equal(result.track_indices, np.flatnonzero(~outliers))
    assert result.tracks.num_points == n_count - outliers.sum()
    kept_8 = int(np.flatnonzero(result.track_indices == 8)[0])
    assert not result.tracks.visible[7, kept_8]  # the slipped frame is no longer a measurement
    # With the outliers gone, the rigid fit explains the rest to the noise level.
    assert np.median(result.fit.residuals[:, ~outliers][visible[:, ~outliers]]) < 0.003


def test_smoothing_the_rigid_motion_removes_jitter():
    points, _ = _rigid_tracks(noise=0.0)
    truth = points.copy()
    key = np.random.default_rng(3)
    jitter = 0.003 * key.standard_normal((points.shape[0], 1, 3))  # per-frame shake
    jitter[0] = 0.0  # the first frame is the reference the motion starts from
    tracks = formats.Tracks3D((points + jitter).astype(np.float32),
                              np.ones(points.shape[:2], bool))
    raw = clean.clean_tracks(tracks, ransac_threshold=0.02)
    smooth = clean.clean_tracks(tracks, ransac_threshold=0.02, smooth_sigma_frames=2.0)
    err_raw = np.linalg.norm(raw.tracks.points - truth, axis=-1).mean()
    err_smooth = np.linalg.norm(smooth.tracks.points - truth, axis=-1).mean()
    assert err_smooth < 0.7 * err_raw
    assert smooth.tracks.visible.all()
    np.testing.assert_allclose(smooth.tracks.points[0], tracks.points[0], atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_waypoints_properties(seed):
    key = np.random.default_rng(seed)
    t_count, n_count = 60, 12
    steps = key.normal(0.0, 0.004, (t_count, 1, 3))
    steps = steps + key.normal(0.0, 0.0005, (t_count, n_count, 3))
    points = np.cumsum(steps, axis=0)
    visible = key.uniform(size=(t_count, n_count)) > 0.15
    tracks = formats.Tracks3D(points.astype(np.float32), visible)

    def moved(a, b):
        both = visible[a] & visible[b]
        return np.linalg.norm(points[b, both] - points[a, both], axis=-1).mean()

    for distance in (0.005, 0.01, 0.03):
        idx = clean.select_waypoints(tracks, distance)
        assert idx[0] == 0 and idx[-1] == t_count - 1
        assert (np.diff(idx) > 0).all()
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            for between in range(a + 1, b):  # no frame before the next waypoint moved enough
                assert moved(a, between) <= distance + 1e-6
            if b != idx[-1]:
                assert moved(a, b) > distance
        sub = clean.take_frames(tracks, idx)
        np.testing.assert_array_equal(sub.frame_indices, idx)
    np.testing.assert_array_equal(clean.select_waypoints(tracks, 0.0), np.arange(t_count))
    np.testing.assert_array_equal(clean.select_waypoints(tracks, 100.0), [0, t_count - 1])
    still = formats.Tracks3D(np.zeros((5, 3, 3), np.float32), np.ones((5, 3), bool))
    np.testing.assert_array_equal(clean.select_waypoints(still, 0.01), [0, 4])


# ----------------------------------------------------------------------------------------------
# Trackers.
# ----------------------------------------------------------------------------------------------


def _texture(h, w, seed=0):
    import cv2  # noqa: PLC0415

    key = np.random.default_rng(seed)
    coarse = key.uniform(0, 255, (h // 6, w // 6, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
        np.uint8)


def test_lucas_kanade_follows_a_known_shift_and_drops_points_leaving_the_image():
    big = _texture(300, 400)
    frames = [big[50:50 + 200, 40 + 0:40 + 300] for _ in range(1)]
    for t in range(1, 12):  # the scene moves 3 px right per frame: content shifts by +3 px
        frames.append(big[50:250, 40 - 3 * t:340 - 3 * t])
    mask = np.zeros((200, 300), bool)
    mask[40:160, 60:290] = True
    points = trackers.select_points(frames[0], mask, 40)
    assert points.shape == (40, 2)
    assert mask[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    assert len(np.unique(points, axis=0)) == 40
    tracks = trackers.track_video(trackers.LucasKanadeTracker(), frames, points)
    assert tracks.tracks.shape == (12, 40, 2)
    t_last = 11
    expected = points + [3.0 * t_last, 0.0]
    gone = expected[:, 0] > 299.5
    assert gone.any() and (~gone).sum() > 10
    assert not tracks.visible[t_last, gone].any()
    good = tracks.visible[t_last] & ~gone
    assert good.sum() >= 0.9 * (~gone).sum()
    np.testing.assert_allclose(tracks.tracks[t_last, good], expected[good], atol=0.2)


def test_select_points_tops_up_a_textureless_mask_from_a_grid():
    frame = np.full((60, 80, 3), 128, np.uint8)  # no corners at all
    mask = np.zeros((60, 80), bool)
    mask[10:50, 20:60] = True
    points = trackers.select_points(frame, mask, 25, margin_px=2)
    assert points.shape == (25, 2)
    assert len(np.unique(points, axis=0)) == 25
    assert mask[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    with pytest.raises(ValueError, match="fewer than"):
        trackers.select_points(frame, mask, 5000)


def test_model_adapters_fail_naming_what_is_missing(tmp_path, monkeypatch):
    for adapter in (trackers.CoTracker3Tracker, trackers.Sam2Segmenter,
                    trackers.VideoDepthAnything):
        with pytest.raises(FileNotFoundError, match="weights file .*none given"):
            adapter()
        with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
            adapter(weights=tmp_path / "missing.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    for adapter in (trackers.CoTracker3Tracker, trackers.Sam2Segmenter,
                    trackers.VideoDepthAnything):
        with pytest.raises(ImportError, match="needs PyTorch.*pip install torch"):
            adapter(weights=weights)


# ----------------------------------------------------------------------------------------------
# End to end on a rendered video.
# ----------------------------------------------------------------------------------------------

# Measured on the default scene (320x240, 40 frames, 64 points, LK): median 1.1 mm, 95th
# percentile 7.1 mm, max 13.7 mm over visible points (the error grows with LK's drift, to a
# per-frame median of 2.4 mm at the end). The limits leave about a 2x margin.
_E2E_MEDIAN_M = 0.003
_E2E_P95_M = 0.015


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    skip_without_gl()
    root = tmp_path_factory.mktemp("rendered")
    done = run_headless("""
        import sys
        from dex4d_jax.tracks import synthetic
        scene = synthetic.render_box_scene()
        synthetic.save_scene_files(scene, sys.argv[1] + "/depth", depth_kind="depth",
                                   depth_scale=0.37)
        synthetic.save_scene_files(scene, sys.argv[1] + "/disparity", depth_kind="disparity",
                                   depth_scale=2.5)
    """, str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _paths(folder):
    return {name: os.path.join(folder, file) for name, file in [
        ("video", "video.mp4"), ("mask", "mask.png"), ("depth", "depth.npz"),
        ("camera", "camera.npz"), ("depth0", "depth0.npy"), ("ground_truth", "ground_truth.npz")]}


@pytest.mark.parametrize("kind", ["depth", "disparity"])
def test_from_video_matches_ground_truth(rendered, kind):
    paths = _paths(rendered / kind)
    progress = []
    result = pipeline.run_pipeline(paths["video"], paths["mask"], paths["depth"], paths["camera"],
                                   paths["depth0"], num_points=64,
                                   progress_fn=lambda *a: progress.append(a))
    assert progress[-1] == ("track", 40, 40)
    gt = np.load(paths["ground_truth"])
    assert gt["obj_pos_world"].shape == (40, 3) and gt["obj_quat_world"].shape == (40, 4)
    camera = formats.load_camera(paths["camera"])
    truth, hit = synthetic.ground_truth_points(camera, gt["obj_pos_world"], gt["obj_quat_world"],
                                               gt["half_sizes"], result.tracks2d.tracks[0])
    assert hit.all()
    tracks = result.tracks
    truth = truth[:, result.cleaned.track_indices]
    err = np.linalg.norm(tracks.points - truth, axis=-1)[tracks.visible]
    assert np.median(err) < _E2E_MEDIAN_M, np.median(err)
    assert np.percentile(err, 95) < _E2E_P95_M, np.percentile(err, 95)
    assert tracks.num_points >= 40 and tracks.visible.mean() > 0.8
    # The relative depth is 0.37 x metric (depth) or 1 / (2.5 x metric) (disparity).
    assert result.scale == pytest.approx(1 / 0.37 if kind == "depth" else 1 / 2.5, rel=1e-3)


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return cli.run(args, parser)
    except SystemExit as exit_:
        return exit_.code


def test_cli_from_video_and_lift(rendered, tmp_path, capsys):
    paths = _paths(rendered / "depth")
    out = tmp_path / "tracks.npz"
    code = _run_cli(["tracks", "from-video", "--video", paths["video"], "--mask", paths["mask"],
                     "--depth", paths["depth"], "--camera", paths["camera"], "--depth0",
                     paths["depth0"], "--out", str(out), "--num-points", "32",
                     "--waypoint-distance", "0.01"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "frames: 40" in text and "RANSAC outliers:" in text and "waypoints:" in text
    tracks = formats.load_tracks3d(out)
    assert tracks.num_points >= 20 and 3 <= tracks.num_frames < 40
    assert tracks.frame_indices[0] == 0 and tracks.frame_indices[-1] == 39

    # lift: 2D tracks from a file (here the rendered scene's LK tracks) to 3D.
    result = pipeline.run_pipeline(paths["video"], paths["mask"], paths["depth"], paths["camera"],
                                   paths["depth0"], num_points=32)
    formats.save_tracks2d(tmp_path / "t2.npz", result.tracks2d)
    code = _run_cli(["tracks", "lift", "--tracks2d", str(tmp_path / "t2.npz"), "--depth",
                     paths["depth"], "--camera", paths["camera"], "--depth0", paths["depth0"],
                     "--mask", paths["mask"], "--out", str(tmp_path / "lifted.npz")])
    assert code == 0
    lifted = formats.load_tracks3d(tmp_path / "lifted.npz")
    np.testing.assert_allclose(lifted.points, result.tracks.points, atol=1e-5)


def test_cli_bad_input_is_a_usage_error(tmp_path, capsys):
    np.savez(tmp_path / "t2.npz", tracks=np.zeros((2, 3, 2)))
    common = ["--depth", str(tmp_path / "d.npz"), "--camera", str(tmp_path / "c.npz"),
              "--depth0", str(tmp_path / "d0.npy"), "--out", str(tmp_path / "o.npz")]
    code = _run_cli(["tracks", "lift", "--tracks2d", str(tmp_path / "t2.npz"), *common])
    err = capsys.readouterr().err
    assert code == 2 and "needs key 'visible'; keys present: tracks" in err
    assert "Traceback" not in err
    code = _run_cli(["tracks", "lift", "--tracks2d", str(tmp_path / "none.npz"), *common])
    assert code == 2 and "2D tracks file not found" in capsys.readouterr().err
    code = _run_cli(["tracks", "from-video", "--video", str(tmp_path / "v.mp4"), "--mask",
                     str(tmp_path / "m.png"), *common])
    assert code == 2 and "not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Fault discipline of `dex4d tracks`: one line `dex4d: error: ...` naming the argument, exit 2,
# no traceback, nothing written and no existing file changed.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, named", [
    ("full", "already exists and is not empty"),
    ("full/a.txt", "is a file"),
    ("full/a.txt/demo", "is a file, not a folder"),
])
def test_demo_refuses_a_folder_that_is_not_new_or_empty(where, named, tmp_path, capsys):
    """As the training commands do: the user's files are never overwritten (nothing rendered)."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a.txt").write_text("keep me")
    before = folder_files(tmp_path)
    out = str(tmp_path / where)
    code, text = run_cli(capsys, "tracks", "demo", "--out", out)
    assert_one_error_line(code, text, "--out", out, named)
    assert folder_files(tmp_path) == before


@pytest.mark.parametrize("argv, named", [
    (["--ransac-threshold", "nan"], "--ransac-threshold"),
    (["--ransac-threshold", "0"], "--ransac-threshold"),
    (["--smooth-sigma", "inf"], "--smooth-sigma"),
    (["--smooth-sigma", "-1"], "--smooth-sigma"),
    (["--waypoint-distance", "nan"], "--waypoint-distance"),
    (["--max-outlier-fraction", "1"], "--max-outlier-fraction"),
    (["--num-points", "0"], "--num-points"),
    (["--out", "missing/t.npz"], "does not exist"),
    (["--out", "in.npz/t.npz"], "is a file"),
    (["--out", "."], "is a folder"),
    (["--out", "t.json"], ".npz"),
])
def test_tracks_refuses_bad_numbers_and_outputs_before_reading(argv, named, tmp_path, capsys,
                                                               monkeypatch):
    """Checked before any input is read (the inputs here do not even exist)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.npz").write_bytes(b"not read")
    before = folder_files(tmp_path)
    inputs = ["--video", "v.mp4", "--mask", "m.png", "--depth", "d.npz", "--camera", "c.npz",
              "--depth0", "d0.npy"]
    code, text = run_cli(capsys, "tracks", "from-video", *inputs, "--out", "t.npz", *argv)
    assert_one_error_line(code, text, named)
    assert folder_files(tmp_path) == before and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["lift", "from-video", "demo"])
def test_tracks_help_shows_defaults_and_units_for_users(command, capsys):
    """Every option with a default says it; units are named; no developer text."""
    code, text = run_cli(capsys, "tracks", command, "--help")
    assert code == 0
    text = " ".join(text.split())  # argparse wraps the help
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["tracks"]
    sub = sub._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        default = action.default
        if default not in (None, False, argparse.SUPPRESS):
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"(default: {shown}" in text, action.dest
    if command != "demo":
        assert "metres" in text and "(default: 0.01)" in text
    for hidden in ("(default: None)", "dex4d_jax", "add_parser", "run(args"):
        assert hidden not in text, hidden
    code, text = run_cli(capsys, "tracks", "--help")
    assert code == 0 and "add_parser" not in text and "dex4d_jax" not in text
