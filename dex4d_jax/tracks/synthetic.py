"""A rendered test scene: a textured box moving along a known trajectory, seen by a fixed camera.

`render_box_scene` renders RGB, metric depth and object masks with MuJoCo (offscreen; set
MUJOCO_GL, e.g. "egl", before anything imports mujoco: this module picks "egl" on Linux when
nothing was chosen and mujoco is not yet imported) and returns the ground-truth object poses.
`save_scene_files` writes the pipeline's inputs (MP4, mask, relative depth, camera, depth0), and
`ground_truth_points` gives the true 3D positions of the surface points seen at given
first-frame pixels, for measuring the pipeline's error or driving a simulation from the track.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import cv2
import numpy as np

from dex4d_jax import rotations
from dex4d_jax.tracks import formats, video

# MuJoCo cameras look along -z with y up; OpenCV cameras along +z with y down.
MUJOCO_TO_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass
class CameraSpec:
    """A fixed pinhole camera.

    Attributes:
        pos_world: [3] camera centre, metres.
        lookat_world: [3] point on the optical axis.
        fovy_deg: vertical field of view, degrees.
        width: image width, pixels (even, for MP4).
        height: image height, pixels (even).
    """

    pos_world: tuple[float, float, float] = (0.32, -0.26, 0.34)
    lookat_world: tuple[float, float, float] = (0.03, 0.0, 0.1)
    fovy_deg: float = 45.0
    width: int = 320
    height: int = 240


@dataclasses.dataclass
class RenderedScene:
    """A rendered clip and its ground truth.

    Attributes:
        rgb: [T, H, W, 3] uint8 frames.
        depth: [T, H, W] float32 metric depth along the optical axis (z), metres.
        masks: [T, H, W] bool object masks (from segmentation rendering).
        camera: K and T_world_camera (OpenCV camera axes: x right, y down, z forward).
        obj_pos_world: [T, 3] box centre, metres.
        obj_quat_world: [T, 4] box orientation, wxyz.
        half_sizes: [3] box half-sizes, metres.
        fps: frame rate.
    """

    rgb: np.ndarray
    depth: np.ndarray
    masks: np.ndarray
    camera: formats.Camera
    obj_pos_world: np.ndarray
    obj_quat_world: np.ndarray
    half_sizes: np.ndarray
    fps: float


def default_trajectory(num_frames: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A smooth lift-and-turn: 9 cm of translation and a 35 degree turn about a tilted axis.

    Returns:
        Tuple of positions [T, 3] metres and quaternions [T, 4] wxyz.
    """
    s = np.linspace(0.0, 1.0, num_frames)
    s = 3 * s**2 - 2 * s**3  # ease in and out
    start = np.array([0.0, 0.0, 0.1])
    pos = start + s[:, None] * np.array([0.06, 0.05, 0.04])
    quat = rotations.axis_angle_to_quat(np.array([0.3, 0.2, 1.0]), np.deg2rad(35.0) * s)
    return pos, quat


def table_demo(num_frames: int = 40):
    """The demo scene of `dex4d tracks demo`: `default_trajectory` raised above a table.

    The table is `ap2ap_wrench`'s (top at z = 0.6 m), so the track can drive
    `dex4d run --robot sim`.

    Returns:
        (half sizes [3], (positions [T, 3], quaternions [T, 4]), CameraSpec).
    """
    pos, quat = default_trajectory(num_frames)
    camera = CameraSpec(pos_world=(0.32, -0.26, 0.94), lookat_world=(0.03, 0.0, 0.7))
    return (0.05, 0.035, 0.03), (pos + np.array([0.0, 0.0, 0.6]), quat), camera


# ----------------------------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------------------------


def _noise_cube_texture(face: int, seed: int) -> bytes:
    """PNG bytes of a 3 x 4 cube-map grid of smooth random noise, a different tint per face."""
    key = np.random.default_rng(seed)
    grid = np.zeros((3 * face, 4 * face, 3), np.uint8)
    for row in range(3):
        for col in range(4):
            coarse = key.uniform(0, 1, (face // 8, face // 8, 1))
            fine = cv2.resize(coarse, (face, face), interpolation=cv2.INTER_CUBIC)[..., None]
            tint = key.uniform(0.35, 1.0, 3)
            img = np.clip(40 + 215 * fine * tint, 0, 255).astype(np.uint8)
            grid[row * face:(row + 1) * face, col * face:(col + 1) * face] = img
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    assert ok
    return png.tobytes()


def _camera_xyaxes(spec: CameraSpec) -> np.ndarray:
    """MuJoCo xyaxes (camera x right, y up) looking from pos to lookat, world z up."""
    forward = np.asarray(spec.lookat_world, float) - np.asarray(spec.pos_world, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.concatenate([right, up])


def scene_xml(half_sizes: np.ndarray, camera: CameraSpec) -> str:
    """The MJCF of the box (a mocap body), a floor and the camera."""
    hx, hy, hz = half_sizes
    xyaxes = " ".join(f"{v:.9f}" for v in _camera_xyaxes(camera))
    pos = " ".join(f"{v:.9f}" for v in camera.pos_world)
    return f"""
<mujoco model="tracks_box">
  <visual>
    <global offwidth="{camera.width}" offheight="{camera.height}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <map znear="0.01" zfar="20"/>
  </visual>
  <asset>
    <texture name="noise" type="cube" file="noise.png" gridsize="3 4" gridlayout=".U..LFRB.D.."/>
    <material name="box" texture="noise" specular="0" shininess="0"/>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.55 0.55 0.5" rgb2="0.45 0.45 0.42"
             width="256" height="256"/>
    <material name="floor" texture="floor" texrepeat="8 8" specular="0"/>
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 2" dir="0 0.2 -1" diffuse="0.3 0.3 0.3"
           specular="0 0 0" castshadow="false"/>
    <geom name="floor" type="plane" size="2 2 0.01" material="floor"/>
    <camera name="cam" pos="{pos}" xyaxes="{xyaxes}" fovy="{camera.fovy_deg}"/>
    <body name="object" mocap="true">
      <geom name="object" type="box" size="{hx} {hy} {hz}" material="box"
            contype="0" conaffinity="0"/>
    </body>
  </worldbody>
</mujoco>
"""


def intrinsics(camera: CameraSpec) -> np.ndarray:
    """K [3, 3] of a MuJoCo camera: square pixels, principal point at the image centre.

    MuJoCo's image plane spans the whole image, so with OpenCV's pixel convention (centre of
    the top-left pixel at (0, 0)) the principal point is ((W - 1) / 2, (H - 1) / 2).
    """
    f = 0.5 * camera.height / np.tan(0.5 * np.deg2rad(camera.fovy_deg))
    return np.array([[f, 0.0, (camera.width - 1) / 2],
                     [0.0, f, (camera.height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def render_box_scene(
    half_sizes=(0.05, 0.035, 0.03),
    *,
    num_frames: int = 40,
    camera: CameraSpec | None = None,
    poses: tuple[np.ndarray, np.ndarray] | None = None,
    fps: float = 20.0,
    texture_seed: int = 0,
) -> RenderedScene:
    """Renders a textured box moving along known poses from a fixed camera.

    Args:
        half_sizes: [3] box half-sizes, metres.
        num_frames: T, used when `poses` is None (then `default_trajectory(T)`).
        camera: the camera (default CameraSpec(): 320x240, 45 degrees, about 0.4 m away).
        poses: optional (positions [T, 3], quaternions [T, 4] wxyz) of the box.
        fps: frame rate recorded in the result.
        texture_seed: seed of the box's noise texture.

    Returns:
        The RenderedScene.
    """
    if "mujoco" not in sys.modules and sys.platform.startswith("linux"):
        os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco  # noqa: PLC0415 (rendering only; the rest of the package runs without it)

    camera = CameraSpec() if camera is None else camera
    half_sizes = np.asarray(half_sizes, dtype=np.float64)
    pos, quat = default_trajectory(num_frames) if poses is None else poses
    pos = np.asarray(pos, dtype=np.float64)
    quat = np.asarray(quat, dtype=np.float64)
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    model = mujoco.MjModel.from_xml_string(
        scene_xml(half_sizes, camera), {"noise.png": _noise_cube_texture(128, texture_seed)})
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "cam")
    geom_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "object")
    world_camera = np.eye(4)
    world_camera[:3, :3] = data.cam_xmat[cam_id].reshape(3, 3) @ MUJOCO_TO_OPENCV_CAMERA
    world_camera[:3, 3] = data.cam_xpos[cam_id]
    rgb, depth, masks = [], [], []
    renderer = mujoco.Renderer(model, camera.height, camera.width)
    try:
        for t in range(len(pos)):
            data.mocap_pos[0] = pos[t]
            data.mocap_quat[0] = quat[t]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=cam_id)
            rgb.append(renderer.render().copy())
            renderer.enable_depth_rendering()
            depth.append(renderer.render().copy())
            renderer.disable_depth_rendering()
            renderer.enable_segmentation_rendering()
            seg = renderer.render()
            renderer.disable_segmentation_rendering()
            masks.append((seg[..., 0] == geom_id) & (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM))
    finally:
        renderer.close()
    return RenderedScene(
        rgb=np.stack(rgb), depth=np.stack(depth).astype(np.float32), masks=np.stack(masks),
        camera=formats.Camera(intrinsics(camera), world_camera), obj_pos_world=pos,
        obj_quat_world=quat, half_sizes=half_sizes, fps=fps)


# ----------------------------------------------------------------------------------------------
# Files and ground truth.
# ----------------------------------------------------------------------------------------------


def save_scene_files(
    scene: RenderedScene,
    directory: str | os.PathLike,
    *,
    depth_kind: str = "depth",
    depth_scale: float = 0.37,
) -> dict[str, str]:
    """Writes the pipeline's inputs and the ground truth into `directory`.

    Files: video.mp4 (RGB), mask.png (first-frame object mask), depth.npz (relative: metric
    depth times `depth_scale`, or for "disparity" 1 / (depth_scale * depth)), camera.npz,
    depth0.npy (metric first-frame depth) and ground_truth.npz (obj_pos_world, obj_quat_world,
    half_sizes, depth [T, H, W] metric).

    Returns:
        The paths, keyed "video", "mask", "depth", "camera", "depth0", "ground_truth".
    """
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(os.fspath(directory), file) for name, file in [
        ("video", "video.mp4"), ("mask", "mask.png"), ("depth", "depth.npz"),
        ("camera", "camera.npz"), ("depth0", "depth0.npy"), ("ground_truth", "ground_truth.npz")]}
    video.write_video(paths["video"], scene.rgb, fps=scene.fps)
    formats.save_mask(paths["mask"], scene.masks[0])
    if depth_kind == "depth":
        rel = scene.depth * depth_scale
    elif depth_kind == "disparity":
        rel = 1.0 / (depth_scale * scene.depth)
    else:
        raise ValueError(f"depth_kind must be 'depth' or 'disparity', got {depth_kind!r}")
    formats.save_depth(paths["depth"], formats.DepthVideo(rel.astype(np.float32), depth_kind))
    formats.save_camera(paths["camera"], scene.camera)
    formats.save_depth0(paths["depth0"], scene.depth[0])
    np.savez(paths["ground_truth"], obj_pos_world=scene.obj_pos_world,
             obj_quat_world=scene.obj_quat_world, half_sizes=scene.half_sizes, depth=scene.depth,
             masks=scene.masks)
    return paths


def ground_truth_points(
    camera: formats.Camera,
    obj_pos_world: np.ndarray,
    obj_quat_world: np.ndarray,
    half_sizes: np.ndarray,
    points_xy0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """True world positions over time of the box surface points seen at first-frame pixels.

    Casts the ray of each pixel against the box at its frame-0 pose (exact ray/box slab test),
    expresses the hit in the box frame, and moves it with the box poses.

    Args:
        camera: K and T_world_camera.
        obj_pos_world: [T, 3].
        obj_quat_world: [T, 4] wxyz.
        half_sizes: [3].
        points_xy0: [N, 2] first-frame pixels.

    Returns:
        Tuple of points [T, N, 3] world metres and hit [N] bool (False: the ray misses the box;
        those points are NaN).
    """
    k_mat = np.asarray(camera.K, dtype=np.float64)
    pose = np.eye(4) if camera.T_world_camera is None else np.asarray(camera.T_world_camera)
    xy = np.asarray(points_xy0, dtype=np.float64)
    yn = (xy[:, 1] - k_mat[1, 2]) / k_mat[1, 1]
    xn = (xy[:, 0] - k_mat[0, 2] - k_mat[0, 1] * yn) / k_mat[0, 0]
    dirs_world = np.stack([xn, yn, np.ones_like(xn)], axis=1) @ pose[:3, :3].T
    rot0 = rotations.quat_to_matrix(obj_quat_world[0])
    origin_obj = rot0.T @ (pose[:3, 3] - obj_pos_world[0])
    dirs_obj = dirs_world @ rot0  # rows are R0^T d
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half_sizes - origin_obj) / dirs_obj
        t2 = (half_sizes - origin_obj) / dirs_obj
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (t_near <= t_far) & (t_far > 0)
    p_obj = origin_obj + t_near[:, None] * dirs_obj
    p_obj[~hit] = np.nan
    rots = rotations.quat_to_matrix(obj_quat_world)  # [T, 3, 3]
    points = np.einsum("tij,nj->tni", rots, p_obj) + obj_pos_world[:, None, :]
    return points, hit
