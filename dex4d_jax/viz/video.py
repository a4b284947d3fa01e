"""Frames and MP4s of a rollout file with native MuJoCo (no JAX): what a rendered video shows.

`render_frames` shows each step's qpos on the scene compiled from the rollout's `model_xml`,
seen from the environment's view (`CAMERAS`), with the current points as small yellow spheres
and the target points as magenta ones (`CURRENT_RGBA`, `TARGET_RGBA`), a green frame border and
"success" while d_t is below the threshold, an amber banner "goal k reached" for a second after a
goal is held, and the episode, time, d_t and goals held as text. Episodes play one after
another, one frame per control step; `write_video` writes them as an H.264 MP4 in real time
(1 / dt frames per second) with the rollout file beside it, each through a temporary name.
`scene_spec` is the native scene of an environment holding one of its objects (the rollout
file's `model_xml`). `dex4d_jax.viz.render` makes the rollouts.

Rendering needs an OpenGL context (`gl_problem` says why there is none): MUJOCO_GL=egl (Debian
packages libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0) or MUJOCO_GL=osmesa (libosmesa6), set
before mujoco is first imported.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import mujoco
import numpy as np

from dex4d_jax import object_library, robot, scene_models
from dex4d_jax.viz import rollout_file

ENVS = ("ap2ap_wrench", "ap2ap")


class FreeCamera(NamedTuple):
    """A MuJoCo free camera: it looks at `lookat` ([3] world, metres) from `distance` metres,
    turned `azimuth` degrees about the vertical and tilted `elevation` degrees (negative: from
    above)."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


# The view of each environment's videos: the robot scene's overview camera; for the wrench a
# closer view than its "front" camera (which shows the whole table), that still holds every
# goal of the workspace (+-15 cm around the centre, up to 30 cm above the table).
CAMERAS = {"ap2ap_wrench": FreeCamera((0.0, 0.0, 0.75), 0.6, 90.0, -20.0), "ap2ap": "overview"}
# Colours (RGBA in [0, 1]) of the drawn points; they glow (`emission`), so they keep their
# colour whatever the light, and no geom of the scenes has either colour.
CURRENT_RGBA = (1.0, 1.0, 0.0, 1.0)  # yellow: the object's keypoints now
TARGET_RGBA = (1.0, 0.0, 1.0, 1.0)  # magenta: the goal's keypoints
POINT_RADIUS = 0.004  # metres: drawn points (rollout videos and `dex4d run --video`)
HIDDEN_ALPHA = 0.25  # a point no camera sees (rollout `visible` False) is drawn faint
# Overlay colours (RGB, 0-255).
SUCCESS_RGB = (0, 200, 0)  # border and "success" text while d_t is below the threshold
BANNER_RGB = (255, 170, 0)  # background of the "goal k reached" banner
TEXT_RGB = (255, 255, 255)
# Largest frame side (pixels); H.264 needs even sides.
MAX_SIDE = 4096
# Sphere and capsule tessellation of the video's model (MuJoCo's defaults: 28 x 16): 256 drawn
# points at the default cost about 90 ms a 320x240 frame on a CPU (EGL with Mesa), at this about
# 30 ms; the points glow in one flat colour, so their facets do not show.
NUM_SLICES, NUM_STACKS = 12, 6
GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0"


class RenderError(RuntimeError):
    """Rendering cannot start (no OpenGL context); the message names the packages to install."""


def gl_problem() -> str | None:
    """Why no offscreen OpenGL context can be made in this process, as one line, or None.

    MuJoCo picks its backend (MUJOCO_GL) when it is first imported; this tries an 8x8 context.
    """
    try:
        with warnings.catch_warnings():  # glfw warns before it fails; the message says it all
            warnings.simplefilter("ignore")
            mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    except Exception as err:  # noqa: BLE001 (each backend fails its own way: ImportError, FatalError, ...)
        cause = " ".join(str(err).split())
        cause = cause if len(cause) <= 160 else cause[:157] + "..."
        chosen = os.environ.get("MUJOCO_GL") or "unset"
        return (f"no OpenGL backend for offscreen rendering (MUJOCO_GL={chosen}: {cause}); "
                f"install EGL (Debian: apt-get install {GL_PACKAGES}) and set MUJOCO_GL=egl, "
                "or install libosmesa6 and set MUJOCO_GL=osmesa")
    return None


# ------------------------------------------------------------------------------------------------
# Scenes.
# ------------------------------------------------------------------------------------------------


def wrench_scene_spec(obj) -> mujoco.MjSpec:
    """The `ap2ap_wrench` scene (mjcf/ap2ap_wrench.xml) holding `obj` (wrench slot layout)."""
    spec = scene_models.wrench_scene_spec()
    scene_models.set_object(spec, obj, scene_models.WRENCH_SLOT_GEOMS,
                            scene_models.WRENCH_SLOT_KINDS, None, robot.OBJECT_BODY)
    return spec


def robot_scene_spec(scene: Callable[[], mujoco.MjSpec], obj,
                     inertial: scene_models.Inertial | None) -> mujoco.MjSpec:
    """The robot scene (a fresh spec from `scene()`) holding `obj` (robot slot layout) with its
    mass properties."""
    spec = scene()
    scene_models.set_object(spec, obj, scene_models.ROBOT_SLOT_GEOMS, object_library.ROBOT_SLOTS,
                            inertial, robot.OBJECT_BODY)
    return spec


def scene_spec(env_name: str, env, object_id: int) -> mujoco.MjSpec:
    """The native scene of environment `env` holding its object `object_id`, uncompiled.

    `ap2ap_wrench`: the table scene with `env.objects[object_id]`; `ap2ap`: the robot scene
    with the environment's collision preset, contact caps and items (`env.scene`) and the
    library object with its mass properties. The time step is the environment's `sim_dt`.

    Raises:
      ValueError: an environment with no native scene here.
    """
    if env_name == "ap2ap_wrench":
        spec = wrench_scene_spec(env.objects[object_id])
    elif env_name == "ap2ap":
        library = env.scene.library
        inertial = scene_models.Inertial(library.mass[object_id], library.com[object_id],
                                         library.inertia[object_id], library.iquat[object_id])
        spec = robot_scene_spec(env.scene.scene_spec, library.spec(object_id), inertial)
    else:
        raise ValueError(f"no native scene of {env_name!r}; valid: {', '.join(ENVS)}")
    spec.option.timestep = float(env.config.sim_dt)
    return spec


def model_xml(spec: mujoco.MjSpec) -> str:
    """The MJCF text of a scene spec (compiled first, as MjSpec.to_xml needs)."""
    spec.compile()
    return spec.to_xml()



# ------------------------------------------------------------------------------------------------
# Frames and the video (numpy, MuJoCo and OpenCV).
# ------------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """`"WxH"` -> (width, height) in pixels.

    Raises:
      ValueError: not two whole numbers joined by x, a side below 16 or above MAX_SIDE, or an
        odd side (H.264 with 4:2:0 colour needs even ones).
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 640x480")
    width, height = (int(p) for p in parts)
    if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
        raise ValueError(f"--size {text}: each side must be between 16 and {MAX_SIDE} pixels")
    if width % 2 or height % 2:
        raise ValueError(f"--size {text}: the sides must be even (H.264 video)")
    return width, height


def add_spheres(scene: mujoco.MjvScene, points: np.ndarray, visible: np.ndarray,
                 rgba: tuple, radius: float) -> None:
    """Appends one glowing sphere per point [N, 3] (world frame, metres) to a scene, while room
    lasts; points not `visible` [N] are drawn faint (HIDDEN_ALPHA). Radius in metres."""
    size = np.array([radius, 0.0, 0.0])
    rot = np.eye(3).reshape(-1)
    for point, seen in zip(points, visible, strict=True):
        if scene.ngeom >= scene.maxgeom:
            return
        colour = np.array(rgba, np.float32)
        colour[3] *= 1.0 if seen else HIDDEN_ALPHA
        geom = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_SPHERE, size,
                            np.asarray(point, np.float64), rot, colour)
        geom.emission = 1.0
        geom.specular = 0.0
        scene.ngeom += 1


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float,
          rgb: tuple = TEXT_RGB) -> None:
    """Draws `text` with a dark outline (readable on any background), in place."""
    import cv2  # noqa: PLC0415 (only for videos)

    thickness = max(1, round(2 * scale))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2,
                cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, rgb, thickness, cv2.LINE_AA)


def text_scale(width: int, height: int) -> float:
    """OpenCV font scale of the overlay text at a frame size (0.7 at 640x480, at least 0.3)."""
    return max(0.3, 0.7 * min(width / 640, height / 480))


def border_width(height: int) -> int:
    """Pixels of the success border at a frame height."""
    return max(3, height // 60)


def banner_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the "goal k reached" banner: centred, above the legend line."""
    box_h = max(14, height // 10)
    x0, x1 = width // 5, width - width // 5
    y1 = height - border_width(height) - int(24 * text_scale(width, height)) - 10
    return x0, y1 - box_h, x1, y1


def _overlay(image: np.ndarray, *, episode: int, num_episodes: int, step: int, dt: float,
             distance: float, threshold: float | None, success: bool, goals: int,
             banner: int | None, legend: bool) -> None:
    """The text and marks of one frame, drawn in place on an [H, W, 3] uint8 RGB image."""
    import cv2  # noqa: PLC0415

    height, width = image.shape[:2]
    scale = text_scale(width, height)
    line = int(30 * scale) + 4
    _text(image, f"episode {episode + 1}/{num_episodes}  {step * dt:.2f} s", (8, line), scale)
    goal_text = f" (< {100 * threshold:.1f} cm)" if threshold is not None else ""
    _text(image, f"d_t {100 * distance:.1f} cm{goal_text}", (8, 2 * line), scale)
    _text(image, f"goals {goals}", (8, 3 * line), scale)
    if success:
        edge = border_width(height)
        cv2.rectangle(image, (0, 0), (width - 1, height - 1), SUCCESS_RGB, 2 * edge)
        size = cv2.getTextSize("success", cv2.FONT_HERSHEY_SIMPLEX, scale * 1.2, 1)[0]
        _text(image, "success", (width - size[0] - edge - 10, line), scale * 1.2, SUCCESS_RGB)
    if banner is not None:
        x0, y0, x1, y1 = banner_box(width, height)
        cv2.rectangle(image, (x0, y0), (x1, y1), BANNER_RGB, -1)
        text = f"goal {banner} reached"
        size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0]
        org = ((x0 + x1 - size[0]) // 2, (y0 + y1 + size[1]) // 2)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(1, round(2 * scale)), cv2.LINE_AA)
    if legend:
        y = height - border_width(height) - 6
        x = 8
        for name, rgba in (("current", CURRENT_RGBA), ("target", TARGET_RGBA)):
            rgb = tuple(int(255 * c) for c in rgba[:3])
            _text(image, name, (x, y), scale * 0.8, rgb)
            x += cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, 1)[0][0] + 12


def banner_goals(rollout: rollout_file.Rollout, banner_steps: int) -> np.ndarray:
    """[T] int: the goal number to announce at each step (0: no banner).

    A goal held at step t (goals_reached rising within an episode) is announced for
    `banner_steps` steps from t, within its episode.
    """
    goals = np.asarray(rollout.goals_reached)
    episode = np.asarray(rollout.episode)
    # Goals held before each step: the previous step's count within the same episode.
    before = np.zeros_like(goals)
    before[1:] = np.where(episode[1:] == episode[:-1], goals[:-1], 0)
    rises = goals > before
    out = np.zeros(len(goals), np.int64)
    for t in np.flatnonzero(rises):
        end = t + banner_steps
        same = np.flatnonzero(episode[t:end] == episode[t]) + t
        out[same] = goals[t]
    return out


def _camera(model: mujoco.MjModel, camera: str | FreeCamera | None) -> mujoco.MjvCamera | int:
    """What `Renderer.update_scene` takes for a camera name, a FreeCamera or None."""
    if isinstance(camera, str):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)  # -1: free
    view = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, view)
    if camera is not None:
        view.lookat[:] = camera.lookat
        view.distance, view.azimuth, view.elevation = (camera.distance, camera.azimuth,
                                                       camera.elevation)
    return view


def render_frames(rollout: rollout_file.Rollout, width: int, height: int,
                  threshold: float | None = None, camera: str | FreeCamera | None = None,
                  show_points: bool = True, point_radius: float = POINT_RADIUS,
                  banner_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """The frames of a rollout: one [height, width, 3] uint8 RGB image per control step.

    Args:
      rollout: episodes to show (its `model_xml` is compiled here, natively).
      width, height: frame size in pixels.
      threshold: the success threshold (metres) shown beside d_t; None shows none.
      camera: a named camera of the model or a FreeCamera; default `CAMERAS[rollout.env]`
        (MuJoCo's default free camera for another environment, or a name the model lacks).
      show_points: draw the current (yellow) and target (magenta) points and their legend.
      point_radius: radius of the drawn points, metres.
      banner_seconds: how long the "goal k reached" banner stays.

    Raises:
      RenderError: no OpenGL context (see `gl_problem`).
      ValueError: the model_xml does not compile, or its qpos size is not the rollout's.
    """
    model = mujoco.MjModel.from_xml_string(rollout.model_xml)
    if model.nq != rollout.qpos.shape[1]:
        raise ValueError(f"the rollout's qpos has {rollout.qpos.shape[1]} numbers; its model "
                         f"{model.nq}")
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    model.vis.quality.numslices, model.vis.quality.numstacks = NUM_SLICES, NUM_STACKS
    data = mujoco.MjData(model)
    view = _camera(model, camera or CAMERAS.get(rollout.env))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            renderer = mujoco.Renderer(model, height, width)
    except Exception as err:  # noqa: BLE001 (see gl_problem)
        raise RenderError(gl_problem() or f"no OpenGL context: {err}") from err
    banner = banner_goals(rollout, max(1, round(banner_seconds / rollout.dt)))
    episodes = np.unique(rollout.episode)
    number = {int(e): i for i, e in enumerate(episodes)}
    step_in_episode = np.zeros(rollout.num_steps, np.int64)
    for e in episodes:
        rows = np.flatnonzero(rollout.episode == e)
        step_in_episode[rows] = np.arange(1, len(rows) + 1)
    try:
        for t in range(rollout.num_steps):
            data.qpos[:] = rollout.qpos[t]
            mujoco.mj_kinematics(model, data)
            mujoco.mj_camlight(model, data)
            renderer.update_scene(data, view)
            if show_points:
                add_spheres(renderer.scene, rollout.points[t], rollout.visible[t],
                             CURRENT_RGBA, point_radius)
                add_spheres(renderer.scene, rollout.targets[t], rollout.visible[t],
                             TARGET_RGBA, point_radius)
            image = renderer.render()
            _overlay(image, episode=number[int(rollout.episode[t])], num_episodes=len(episodes),
                     step=int(step_in_episode[t]), dt=rollout.dt,
                     distance=float(rollout.distance[t]), threshold=threshold,
                     success=bool(rollout.success[t]), goals=int(rollout.goals_reached[t]),
                     banner=int(banner[t]) or None, legend=show_points)
            yield image
    finally:
        renderer.close()


def _temporary(path: str, suffix: str) -> str:
    """A fresh temporary file beside `path`, ending in `suffix` (the writer's format), with the
    permissions of any file the user writes (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=suffix,
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def rollout_path(video: str) -> str:
    """The rollout file beside a video: same folder and stem, `.npz`."""
    return os.path.splitext(video)[0] + ".npz"


def write_video(rollout: rollout_file.Rollout, path: str, width: int, height: int,
                threshold: float | None = None,
                progress_fn: Callable[[int, int], None] | None = None, **frame_options) -> int:
    """Renders a rollout to an MP4 (H.264, 1 / dt frames per second) and writes the rollout
    file beside it (`rollout_path(path)`), each through a temporary name and a rename.

    Args:
      rollout: the episodes.
      path: the .mp4 to write; its folder must exist.
      width, height: frame size in pixels (even).
      threshold: success threshold shown beside d_t (metres).
      progress_fn: called as `progress_fn(frames done, total)` after each frame.
      **frame_options: passed to `render_frames`.

    Returns:
      The number of frames (the rollout's steps).

    Raises:
      RenderError: no OpenGL context. OSError: a file cannot be written.
      rollout_file.RolloutFileError: the rollout is not valid.
    """
    import imageio.v2 as imageio  # noqa: PLC0415

    rollout = rollout_file.validate(rollout, "render")
    tmp = _temporary(path, ".mp4")
    count = 0
    try:
        writer = imageio.get_writer(tmp, format="FFMPEG", fps=1.0 / rollout.dt,
                                    codec="libx264", quality=8, macro_block_size=1,
                                    pixelformat="yuv420p", ffmpeg_log_level="error")
        try:
            with warnings.catch_warnings():
                # JAX warns at any fork; imageio starts ffmpeg (fork, then exec at once) on
                # the first frame.
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                        category=RuntimeWarning)
                for frame in render_frames(rollout, width, height, threshold, **frame_options):
                    writer.append_data(frame)
                    count += 1
                    if progress_fn is not None:
                        progress_fn(count, rollout.num_steps)
        finally:
            writer.close()
        rollout_file.save(rollout_path(path), rollout)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count
