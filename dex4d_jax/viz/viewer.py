"""A 3D viewer in the browser (Viser) of a point track, a rollout, or objects of the library.

`dex4d view` (experiments/commands/view.py) serves these scenes; from Python (a notebook):

    v = viewer.view(rollout_file.load("runs/student/rollout.npz"))  # or Tracks3D, ObjectLibrary
    print(v.url); v.scene.set_frame(40); ...; v.close()

or `show(make_server(), source)`, or a scene class on a server: `RolloutScene(server,
rollout)`, `TrackScene(server, tracks)`, `ObjectGridScene(server, library)`.

What each scene shows (world frame, z up, metres):
- 3D point tracks (points [T, N, 3], visible [T, N]): one frame's points, visible magenta,
  hidden grey (a checkbox hides them), a faint trail of the last frames, a slider and Play.
- A rollout: every drawable geom of its MuJoCo model (`model_xml`) in MuJoCo's colour, bodies
  placed by `mujoco.mj_kinematics` at the step's `qpos` (colliders, groups 3-5, behind a
  checkbox as in MuJoCo's viewer); the object's keypoints (magenta, grey where not visible),
  the targets (green) and lines joining each pair; a step slider, Play at the control rate, and
  the episode, d_t, success and goals reached in the panel.
- Objects: a grid of objects from their primitives, coloured by family, named, with their
  keypoints.

Viser (`pip install "dex4d-jax[viewer]"`) is imported only when a server starts. Servers
listen on 127.0.0.1 unless told otherwise: Viser's own default (every interface) would show
the scene to the whole network, unauthenticated.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

from dex4d_jax.tracks import formats
from dex4d_jax.viz import meshes, rollout_file
from dex4d_jax.viz.viser_server import (  # noqa: F401  (the viewer's public names)
    DEFAULT_HOST,
    DEFAULT_PORT,
    INSTALL_HINT,
    ViewerError,
    ViserMissingError,
    check_host,
    make_server,
    require_viser,
    stop_server,
    url_of,
)

if TYPE_CHECKING:
    import viser

    from dex4d_jax import object_library


# Colours (RGB 0-255).
CURRENT_RGB = (220, 20, 160)  # the object's points (magenta: apart from orange, blue objects)
HIDDEN_RGB = (150, 150, 150)  # points the camera does not see
TARGET_RGB = (44, 160, 44)  # the goal's points
PAIR_RGB = (120, 120, 120)  # lines joining a point to its target
TRAIL_RGB = (240, 170, 215)
FAMILY_RGB = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
              (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# Playback rate of a track (frames per second): tracks carry no time step.
TRACK_FPS = 10.0


def _frame_camera(server: viser.ViserServer, points: np.ndarray, min_distance: float = 0.3
                  ) -> None:
    """Points new clients' camera at `points` [..., 3] (`meshes.camera_framing`)."""
    position, look_at = meshes.camera_framing(points, min_distance)
    server.initial_camera.look_at = tuple(look_at)
    server.initial_camera.position = tuple(position)


# The time line shared by tracks and rollouts.
class Timeline:
    """A frame slider, Play/Pause and a frames-per-second slider in `server`'s GUI.

    `show_fn(t)` runs on every change of frame. While playing, a thread advances the frame `fps`
    times a second, wrapping at the end; the slider moves for every connected browser.
    `close()` stops the thread.

    Args:
      server: The server.
      label: The slider's label ("frame", "step").
      num_frames: T, frames 0 to T - 1.
      fps: Initial playback rate, frames per second.
      show_fn: Called with the frame index on every change.
    """

    def __init__(self, server: viser.ViserServer, label: str, num_frames: int, fps: float,
                 show_fn: Callable[[int], None]):
        """Adds the GUI (see the class)."""
        viser = require_viser()
        self.num_frames = int(num_frames)
        self._show_fn = show_fn
        single = self.num_frames < 2
        self.slider = server.gui.add_slider(label, 0, max(self.num_frames - 1, 1), 1, 0,
                                            disabled=single)
        self.play = server.gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY, disabled=single)
        self.fps = server.gui.add_slider("frames per second", 1.0, max(60.0, float(fps)), 0.5,
                                         float(fps))
        self._icons = (viser.Icon.PLAYER_PLAY, viser.Icon.PLAYER_PAUSE)
        self._stop = threading.Event()
        self._playing = threading.Event()
        self._thread: threading.Thread | None = None
        self.slider.on_update(lambda _: self._show_fn(min(int(self.slider.value),
                                                          self.num_frames - 1)))
        self.play.on_click(lambda _: self.toggle())

    @property
    def playing(self) -> bool:
        """Whether the frames are advancing."""
        return self._playing.is_set()

    def toggle(self) -> None:
        """Starts or pauses playback (what the Play button does)."""
        if self._playing.is_set():
            self._playing.clear()
            self.play.label, self.play.icon = "Play", self._icons[0]
            return
        self._playing.set()
        self.play.label, self.play.icon = "Pause", self._icons[1]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dex4d-view-play", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._playing.is_set():
                self.slider.value = (int(self.slider.value) + 1) % self.num_frames
                self._stop.wait(1.0 / max(float(self.fps.value), 1e-3))
            else:
                self._stop.wait(0.05)

    def close(self) -> None:
        """Stops playback and its thread."""
        self._stop.set()
        self._playing.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


# Scenes.
class _Scene:
    """What the scenes share: the server, their node names, a lock around frame changes."""

    def __init__(self, server: viser.ViserServer, root: str):
        self.server = server
        self.root = root.rstrip("/") or "/scene"
        self.node_names: list[str] = []
        self.timeline: Timeline | None = None
        self.frame = 0
        self._lock = threading.RLock()

    def _node(self, handle):
        self.node_names.append(handle.name)
        return handle

    def _cloud(self, name: str, points: np.ndarray, rgb, visible: bool = True) -> None:
        """Replaces the point cloud `root/name` (an empty one becomes a hidden speck)."""
        empty = len(points) == 0
        self.server.scene.add_point_cloud(
            f"{self.root}/{name}", np.zeros((1, 3), np.float32) if empty
            else np.asarray(points, np.float32), rgb, point_size=self._size,
            point_shape="circle", visible=bool(visible and not empty))

    def _set_visible(self, handles: Sequence, visible: bool) -> None:
        with self.server.atomic():
            for handle in handles:
                handle.visible = bool(visible)

    def set_frame(self, t: int) -> None:
        """Shows frame (step) `t`; moves the slider so browsers follow."""
        if self.timeline is not None and int(self.timeline.slider.value) != int(t):
            self.timeline.slider.value = int(t)  # calls _show back through the slider
        else:
            self._show(int(t))

    def _show(self, t: int) -> None:
        """Shows frame `t` (scenes with frames override this)."""

    def close(self) -> None:
        """Stops playback (the server keeps running; `stop_server` stops it)."""
        if self.timeline is not None:
            self.timeline.close()


class TrackScene(_Scene):
    """3D point tracks on a server: one frame's points, a trail, a frame slider (module doc).

    Args:
      server: The server.
      tracks: points [T, N, 3] (world frame, metres), visible [T, N].
      root: Scene node all of it hangs from.
      fps: Initial playback rate, frames per second.
      trail_frames: Initial trail length, frames.

    Attributes:
      tracks: The tracks shown.

    Raises:
      formats.FormatError: the tracks break their format's rules.
    """

    def __init__(self, server: viser.ViserServer, tracks: formats.Tracks3D,
                 root: str = "/tracks", fps: float = TRACK_FPS, trail_frames: int = 10):
        """Adds the nodes under `root` and the GUI; shows frame 0."""
        super().__init__(server, root)
        self.tracks = formats.validate_tracks3d(tracks, "tracks")
        points = self.tracks.points
        self._size = meshes.point_size(points)
        gui = server.gui
        gui.add_markdown(f"**3D point track**: {self.tracks.num_frames} frames, "
                         f"{self.tracks.num_points} points")
        self._info = gui.add_markdown("")
        self.show_hidden = gui.add_checkbox("hidden points (grey)", True)
        self.show_trail = gui.add_checkbox("trail", True)
        self.trail_frames = gui.add_slider("trail frames", 1, max(2, min(60, len(points))), 1,
                                           max(1, min(trail_frames, len(points))))
        for handle in (self.show_hidden, self.show_trail, self.trail_frames):
            handle.on_update(lambda _: self._show(self.frame))
        flat = points.reshape(-1, 3)
        extent = float(np.ptp(flat[:, :2], axis=0).max()) + 0.2
        self._node(server.scene.add_grid(f"{self.root}/grid", extent, extent, cell_size=0.05,
                                         section_size=0.25,
                                         position=(*flat[:, :2].mean(0), flat[:, 2].min())))
        self.node_names += [f"{self.root}/{name}" for name in ("visible", "hidden", "trail")]
        _frame_camera(server, points)
        self.timeline = Timeline(server, "frame", self.tracks.num_frames, fps, self._show)
        self._show(0)

    def _show(self, t: int) -> None:
        with self._lock:
            self.frame = t = int(np.clip(t, 0, self.tracks.num_frames - 1))
            points, visible = self.tracks.points, self.tracks.visible
            start = max(0, t - int(self.trail_frames.value))
            seen = visible[start:t] & visible[start + 1:t + 1]  # [K, N] segments seen at both ends
            segments = np.stack([points[start:t], points[start + 1:t + 1]], 2)[seen]  # [M, 2, 3]
            with self.server.atomic():
                self._cloud("visible", points[t][visible[t]], CURRENT_RGB)
                self._cloud("hidden", points[t][~visible[t]], HIDDEN_RGB, self.show_hidden.value)
                self.server.scene.add_line_segments(
                    f"{self.root}/trail", segments if len(segments)
                    else np.zeros((1, 2, 3), np.float32), TRAIL_RGB, thickness=self._size / 4,
                    visible=bool(self.show_trail.value and len(segments)))
            frame = self.tracks.frame_indices
            video = f" (video frame {int(frame[t])})" if frame is not None else ""
            self._info.content = (f"frame {t} of {self.tracks.num_frames - 1}{video}; "
                                  f"{int(visible[t].sum())} of {self.tracks.num_points} "
                                  "points visible")


class RolloutScene(_Scene):
    """A rollout on a server: the MuJoCo scene's geoms at each step, the points, the targets.

    Args:
      server: The server.
      rollout: The rollout (see `viz.rollout_file`).
      root: Scene node all of it hangs from.
      speed: Initial playback speed, times real time (1 / dt steps per second).
      model: The compiled `rollout.model_xml`, when the caller has it (`check_rollout`).

    Attributes:
      rollout, model: The rollout shown and its MuJoCo model.
      xpos: [T, nbody, 3] world positions of every body at every step, metres.
      xquat: [T, nbody, 4] world orientations (wxyz).
      geom_nodes: {geom id: viser mesh node name} of the geoms drawn.

    Raises:
      rollout_file.RolloutFileError: the rollout breaks the file format's rules.
      ViewerError: model_xml does not compile or does not fit qpos.
    """

    def __init__(self, server: viser.ViserServer, rollout: rollout_file.Rollout,
                 root: str = "/rollout", speed: float = 1.0,
                 model: mujoco.MjModel | None = None):
        """Adds the geoms, points and GUI under `root`; shows step 0."""
        super().__init__(server, root)
        self.rollout = rollout = rollout_file.validate(rollout, "rollout")
        self.model = check_rollout(rollout) if model is None else model
        self.xpos, self.xquat = meshes.body_trajectories(self.model, rollout.qpos)
        self._moving = np.flatnonzero((np.ptp(self.xpos, 0).max(-1) > 0)
                                      | (np.ptp(self.xquat, 0).max(-1) > 0))
        self._episode_start = {int(e): int(np.argmax(rollout.episode == e))
                               for e in np.unique(rollout.episode)}
        self._size = float(np.clip(meshes.point_size(rollout.points[0]), 0.003, 0.008))
        gui, episodes = server.gui, rollout.num_episodes
        gui.add_markdown(f"**{rollout.env}** rollout: {episodes} episode"
                         f"{'s' if episodes > 1 else ''}, {rollout.num_steps} steps of "
                         f"{rollout.dt * 1000:.0f} ms, {rollout.num_points} points")
        self._info = gui.add_markdown("")
        if rollout.num_episodes > 1:
            self.episode = gui.add_dropdown("episode", [str(e) for e in self._episode_start])
            self.episode.on_update(lambda _: self._jump_to_episode())
        self.show_targets = gui.add_checkbox("target points (green)", True)
        self.show_pairs = gui.add_checkbox("lines to targets", True)
        self.show_hidden = gui.add_checkbox("hidden points (grey)", True)
        self.show_colliders = gui.add_checkbox("collision geoms (groups 3-5)", False)
        for handle in (self.show_targets, self.show_pairs, self.show_hidden):
            handle.on_update(lambda _: self._show(self.frame))
        self.show_colliders.on_update(lambda _: self._set_visible(self._colliders,
                                                                  self.show_colliders.value))
        self.node_names += [f"{self.root}/{n}" for n in ("points", "hidden", "targets", "pairs")]
        with server.atomic():
            self._add_geoms()
        _frame_camera(server, np.concatenate([rollout.points, rollout.targets], 1),
                      min_distance=0.5)
        self.timeline = Timeline(server, "step", rollout.num_steps, speed / rollout.dt, self._show)
        self._show(0)

    def _add_geoms(self) -> None:
        """A frame per body that has drawable geoms, their meshes in it (`meshes.GeomVisual`)."""
        scene = self.server.scene
        self.geom_nodes: dict[int, str] = {}
        self._colliders, self._bodies = [], {}  # viser handles; {body id: frame handle}
        for v in meshes.model_visuals(self.model):
            if v.body not in self._bodies:
                self._bodies[v.body] = self._node(scene.add_frame(
                    f"{self.root}/bodies/b{v.body}", show_axes=False,
                    position=self.xpos[0, v.body], wxyz=self.xquat[0, v.body]))
            handle = scene.add_mesh_simple(
                f"{self.root}/bodies/b{v.body}/g{v.geom}", v.mesh.vertices, v.mesh.faces,
                color=tuple(int(c) for c in np.round(v.rgba[:3] * 255)),
                opacity=float(v.rgba[3]) if v.rgba[3] < 1 else None,
                flat_shading=v.kind in ("box", "plane"),
                side="double" if v.kind == "plane" else "front", position=v.pos, wxyz=v.quat,
                cast_shadow=v.kind != "plane", visible=not v.is_collider)
            self.geom_nodes[v.geom] = self._node(handle).name
            if v.is_collider:
                self._colliders.append(handle)

    def _jump_to_episode(self) -> None:
        """Shows the first step of the episode chosen in the dropdown.

        Nothing moves when the step shown already belongs to it (playback moved the dropdown).
        """
        chosen = int(self.episode.value)
        if int(self.rollout.episode[self.frame]) != chosen:
            self.set_frame(self._episode_start[chosen])

    def _show(self, t: int) -> None:
        with self._lock:
            r = self.rollout
            self.frame = t = int(np.clip(t, 0, r.num_steps - 1))
            scene = self.server.scene
            with self.server.atomic():
                for body in self._moving:
                    if int(body) in self._bodies:
                        frame = self._bodies[int(body)]
                        frame.position, frame.wxyz = self.xpos[t, body], self.xquat[t, body]
                seen = r.visible[t]
                self._cloud("points", r.points[t][seen], CURRENT_RGB)
                self._cloud("hidden", r.points[t][~seen], HIDDEN_RGB, self.show_hidden.value)
                self._cloud("targets", r.targets[t], TARGET_RGB, self.show_targets.value)
                scene.add_line_segments(f"{self.root}/pairs",
                                        np.stack([r.points[t], r.targets[t]], 1), PAIR_RGB,
                                        thickness=self._size / 5,
                                        visible=bool(self.show_pairs.value))
            episode = int(r.episode[t])
            if r.num_episodes > 1:
                self.episode.value = str(episode)
            start = self._episode_start[episode]
            length = int((r.episode == episode).sum())
            success = "yes" if r.success[t] else "no"
            self._info.content = (
                f"episode **{episode}**, step {t - start} of {length - 1} "
                f"({(t - start) * r.dt:.2f} s)  \n"
                f"d_t **{r.distance[t] * 1000:.1f} mm**, success **{success}**, "
                f"goals reached **{int(r.goals_reached[t])}**  \n"
                f"{int(r.visible[t].sum())} of {r.num_points} points visible")


def check_rollout(rollout: rollout_file.Rollout, where: str = "the rollout"
                  ) -> mujoco.MjModel:
    """Compiles a rollout's MJCF text and checks that its qpos fits the model.

    Returns:
      The compiled model.

    Raises:
      ViewerError: MuJoCo cannot compile `model_xml` (the message carries MuJoCo's first
        line), or qpos does not have the model's nq columns.
    """
    try:
        model = meshes.compile_model(rollout.model_xml)
    except ValueError as err:
        raise ViewerError(f"{where}: model_xml {err}") from err
    if rollout.qpos.shape[1] != model.nq:
        raise ViewerError(f"{where}: qpos has {rollout.qpos.shape[1]} entries per step, but "
                          f"the model of its model_xml has nq = {model.nq}")
    return model


class ObjectGridScene(_Scene):
    """Objects of the library on a grid of a server, from their primitives, coloured by family.

    Args:
      server: The server.
      library: The objects, all of them shown.
      root: Scene node all of it hangs from.
      keypoints: Show each object's keypoints at first (a checkbox toggles them).
      labels: Show each object's name at first (a checkbox toggles them).

    Attributes:
      library: The objects shown, in grid order (`meshes.grid_positions`).
      positions: [N, 3] world position of each object's frame, metres.
      primitive_nodes: viser node names of the primitives' meshes, object by object.

    Raises:
      ViewerError: the library is empty.
    """

    def __init__(self, server: viser.ViserServer, library: object_library.ObjectLibrary,
                 root: str = "/objects", keypoints: bool = True, labels: bool = True):
        """Adds the objects and the GUI under `root`."""
        super().__init__(server, root)
        self.library = library
        count = len(library)
        if count == 0:
            raise ViewerError("no objects to show")
        spacing = 1.5 * max(float(np.ptp(library.keypoints.reshape(-1, 3), 0).max()), 0.05)
        self.positions = meshes.grid_positions(count, spacing)
        scene = server.scene
        self._keypoint_nodes, self._label_nodes = [], []
        self.primitive_nodes: list[str] = []
        server.gui.add_markdown(f"**{count} objects**, {spacing * 100:.0f} cm apart; colour "
                                "by family")
        self.show_keypoints = server.gui.add_checkbox("keypoints", keypoints)
        self.show_labels = server.gui.add_checkbox("names", labels)
        with server.atomic():
            for i, spec in enumerate(library.spec(i) for i in range(count)):
                name = f"{self.root}/o{i}"
                self._node(scene.add_frame(name, show_axes=False, position=self.positions[i]))
                rgb = FAMILY_RGB[int(library.family_ids[i]) % len(FAMILY_RGB)]
                for k, part in enumerate(spec.primitives):
                    mesh = meshes.primitive(part.kind, part.size)
                    self.primitive_nodes.append(self._node(scene.add_mesh_simple(
                        f"{name}/p{k}", mesh.vertices, mesh.faces, color=rgb,
                        flat_shading=part.kind == "box", position=part.pos,
                        wxyz=part.quat)).name)
                self._keypoint_nodes.append(self._node(scene.add_point_cloud(
                    f"{name}/keypoints", library.keypoints[i].astype(np.float32), (30, 30, 30),
                    point_size=0.0025, point_shape="circle", visible=keypoints)))
                label = spec.name if spec.name.startswith(spec.family) else (
                    f"{spec.name} ({spec.family})")
                self._label_nodes.append(self._node(scene.add_label(
                    f"{name}/label", label, anchor="bottom-center", visible=labels,
                    position=(0.0, 0.0, float(library.keypoints[i][:, 2].max()) + 0.02))))
        self.show_keypoints.on_update(lambda _: self._set_visible(
            self._keypoint_nodes, self.show_keypoints.value))
        self.show_labels.on_update(lambda _: self._set_visible(
            self._label_nodes, self.show_labels.value))
        _frame_camera(server, self.positions[:, None] + library.keypoints)

# Entry points.
def show(server: viser.ViserServer, source, **kwargs) -> _Scene:
    """Adds the scene that suits `source` to `server`; kwargs go to the scene's class.

    A `formats.Tracks3D` gets a `TrackScene`, a `rollout_file.Rollout` a `RolloutScene`, an
    `object_library.ObjectLibrary` an `ObjectGridScene`.

    Raises:
      TypeError: `source` is none of them.
      ViewerError, rollout_file.RolloutFileError, formats.FormatError: the scene's checks.
    """
    from dex4d_jax import object_library  # noqa: PLC0415

    if isinstance(source, formats.Tracks3D):
        return TrackScene(server, source, **kwargs)
    if isinstance(source, rollout_file.Rollout):
        return RolloutScene(server, source, **kwargs)
    if isinstance(source, object_library.ObjectLibrary):
        return ObjectGridScene(server, source, **kwargs)
    raise TypeError(f"cannot show a {type(source).__name__}: give Tracks3D, Rollout or "
                    "ObjectLibrary")


@dataclasses.dataclass
class Viewer:
    """A running viewer: the server, the scene on it, and the URL to open."""

    server: Any  # viser.ViserServer
    scene: _Scene
    url: str

    def close(self) -> None:
        """Stops playback and the server."""
        self.scene.close()
        stop_server(self.server)


def view(source, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
         environment_map: bool = False, **kwargs) -> Viewer:
    """Starts a server showing `source`; returns at once (the server runs in its threads).

    `source` is a `formats.Tracks3D`, `rollout_file.Rollout` or `object_library.ObjectLibrary`
    (files load with `formats.load_tracks3d`, `rollout_file.load`); `host`, `port` and
    `environment_map` are `make_server`'s, kwargs go to the scene's class (see `show`).

    Returns:
      The Viewer; call `close()` to stop it.

    Raises:
      ViserMissingError, ViewerError, TypeError, ...: as `make_server` and `show` raise them
        (the server is stopped again).
    """
    server = make_server(host, port, environment_map=environment_map)
    try:
        scene = show(server, source, **kwargs)
    except BaseException:
        stop_server(server)
        raise
    return Viewer(server, scene, url_of(server))
