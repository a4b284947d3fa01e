"""`dex4d view`: geom meshes, body poses, inputs and refusals, the served scenes, and a browser.

The scene tests need Viser (the `viewer` extra) and skip without it; the browser test also
needs Chromium (Debian's `chromium`) and skips without it. The browser renders with
SwiftShader, Chromium's software WebGL.
"""

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import mujoco
import numpy as np
import pytest
from dex4d_jax.experiments.commands import view
from helpers import assert_one_error_line, run_cli

from dex4d_jax import rotations, scene_models
from dex4d_jax.deploy import sim_setup
from dex4d_jax.tracks import formats
from dex4d_jax.viz import meshes, rollout_file, viewer

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The wrench scene's object colour (mjcf/ap2ap_wrench.xml, object_box_a), RGB 0-255.
_OBJECT_RGB = (51, 128, 204)


# ----------------------------------------------------------------------------------------------
# Inputs made here: a rollout of the wrench scene stepped in native MuJoCo, and a track.
# ----------------------------------------------------------------------------------------------


def _box_keypoints(half) -> np.ndarray:
    """[26, 3] corners, edge midpoints and face centres of a box (object frame, metres)."""
    grid = np.stack(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (grid[np.abs(grid).sum(1) > 0] * np.asarray(half)).astype(np.float64)


def make_wrench_rollout(steps_per_episode: int = 12, episodes: int = 2) -> rollout_file.Rollout:
    """Episodes of a 6 x 4 x 3 cm box in the ap2ap_wrench scene, driven by a constant twist
    (native MuJoCo, gravity off), with keypoints, a lifted and turned goal, and a visibility
    mask of the side the scene's camera faces (-y)."""
    half = np.array([0.03, 0.02, 0.015])
    spec = scene_models.wrench_scene_spec()
    scene_models.set_object(spec, sim_setup.box_object(half), scene_models.WRENCH_SLOT_GEOMS,
                            scene_models.WRENCH_SLOT_KINDS, None, "object")
    model = spec.compile()
    data = mujoco.MjData(model)
    keypoints = _box_keypoints(half)
    ctrl_dt, substeps = 0.1, 4
    model.opt.timestep = ctrl_dt / substeps
    goal_turn = rotations.quat_to_matrix(rotations.axis_angle_to_quat(np.array([0, 0, 1.0]),
                                                                      np.pi / 2))
    fields = {k: [] for k in ("qpos", "points", "targets", "visible", "distance", "success",
                              "goals_reached", "episode")}
    for episode in range(episodes):
        mujoco.mj_resetData(model, data)
        data.qpos[:3] = (0.0, 0.0, 0.7)
        start = data.qpos[:3].copy()
        goal_pos = start + (0.08, 0.04, 0.06)
        targets = keypoints @ goal_turn.T + goal_pos
        reached = 0
        for _ in range(steps_per_episode):
            data.qvel[:6] = (0.08, 0.04, 0.06, 0.0, 0.0, 1.2)  # m/s, rad/s
            mujoco.mj_step(model, data, substeps)
            mujoco.mj_kinematics(model, data)  # the poses of the new qpos
            rot = data.xmat[model.body("object").id].reshape(3, 3)
            points = keypoints @ rot.T + data.xpos[model.body("object").id]
            distance = float(np.linalg.norm(points - targets, axis=1).mean())
            reached += int(distance < 0.03 and reached == 0)
            for key, value in (("qpos", data.qpos.copy()), ("points", points),
                               ("targets", targets), ("visible", points[:, 1] <= data.qpos[1]),
                               ("distance", distance), ("success", distance < 0.03),
                               ("goals_reached", reached), ("episode", episode)):
                fields[key].append(value)
    return rollout_file.validate(rollout_file.Rollout(
        "ap2ap_wrench", spec.to_xml(), ctrl_dt, **{k: np.array(v) for k, v in fields.items()}))


@pytest.fixture(scope="module")
def rollout():
    return make_wrench_rollout()


@pytest.fixture(scope="module")
def files(rollout, tmp_path_factory):
    """{kind: path}: a run folder with an old and a new rollout, a track file, bad files."""
    folder = tmp_path_factory.mktemp("view")
    run = folder / "run"
    (run / "videos").mkdir(parents=True)
    rollout_file.save(run / "old.npz", rollout)
    newest = run / "videos" / "rollout_000100.npz"
    rollout_file.save(newest, rollout)
    os.utime(run / "old.npz", (1e9, 1e9))
    tracks = folder / "track.npz"
    formats.save_tracks3d(tracks, formats.Tracks3D(rollout.points, rollout.visible))
    np.savez(folder / "other.npz", tracks=np.zeros((3, 4, 2)))
    (folder / "notes.txt").write_text("not an archive")
    (folder / "empty_run").mkdir()
    (folder / "empty_run" / "config.json").write_text('{"env": {"name": "ap2ap_wrench"}}')
    return {"run": run, "newest": newest, "tracks": tracks, "other": folder / "other.npz",
            "text": folder / "notes.txt", "empty_run": folder / "empty_run",
            "rollout": run / "old.npz"}


# ----------------------------------------------------------------------------------------------
# Meshes and poses (no Viser needed).
# ----------------------------------------------------------------------------------------------


def _extent(mesh: meshes.Mesh) -> np.ndarray:
    return mesh.vertices.max(0) - mesh.vertices.min(0)


def test_primitive_meshes_have_mujoco_sizes_and_outward_faces():
    box = meshes.box([0.03, 0.02, 0.01])
    np.testing.assert_allclose(_extent(box), [0.06, 0.04, 0.02], rtol=1e-6)
    capsule = meshes.capsule(0.01, 0.05)  # length 2 * (half-length + radius) along z
    np.testing.assert_allclose(_extent(capsule), [0.02, 0.02, 0.12], rtol=1e-6)
    cylinder = meshes.cylinder(0.02, 0.05)
    np.testing.assert_allclose(_extent(cylinder), [0.04, 0.04, 0.1], rtol=1e-6)
    ellipsoid = meshes.ellipsoid([0.01, 0.02, 0.03])
    np.testing.assert_allclose(_extent(ellipsoid), [0.02, 0.04, 0.06], rtol=1e-6)
    np.testing.assert_allclose(_extent(meshes.primitive("plane", [0.5, 0.25, 0.05])),
                               [1.0, 0.5, 0.0])
    np.testing.assert_allclose(_extent(meshes.primitive("plane", [0, 0, 1])), [10, 10, 0])
    # Closed meshes wind outward: their signed volume is the solid's (less the facets' chords).
    volumes = {"box": (box, 8 * 0.03 * 0.02 * 0.01),
               "capsule": (capsule, np.pi * 1e-4 * 0.1 + 4 / 3 * np.pi * 1e-6),
               "cylinder": (cylinder, np.pi * 4e-4 * 0.1),
               "sphere": (meshes.sphere(0.02), 4 / 3 * np.pi * 0.02 ** 3),
               "ellipsoid": (ellipsoid, 4 / 3 * np.pi * 6e-6)}
    for name, (mesh, volume) in volumes.items():
        assert 0.97 < meshes.signed_volume(mesh) / volume <= 1.0 + 1e-6, name
        assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices), name
    with pytest.raises(ValueError, match="hfield"):
        meshes.primitive("hfield", [1, 1, 1])


_ALL_GEOMS = """
<mujoco>
  <asset>
    <texture name="checker" type="2d" builtin="checker" rgb1="1 1 1" rgb2="0 0 0" width="8"
             height="8"/>
    <material name="floor" texture="checker" rgba="1 0.5 1 1"/>
    <material name="red" rgba="1 0 0 1"/>
    <mesh name="tet" vertex="0 0 0  0.1 0 0  0 0.1 0  0 0 0.1"/>
  </asset>
  <worldbody>
    <geom name="floor" type="plane" size="1 2 0.1" material="floor"/>
    <body name="arm" pos="0 0 0.5" euler="0.3 0.2 0.1">
      <joint name="hinge" type="hinge" axis="0 1 0"/>
      <geom name="box" type="box" size="0.1 0.2 0.3" pos="0.1 0 0" material="red"/>
      <geom name="capsule" type="capsule" fromto="0 0 0 0.3 0 0.4" size="0.02"
            material="red" rgba="0 0 1 0.5"/>
      <body name="hand" pos="0.3 0 0.4">
        <joint name="slide" type="slide" axis="1 0 0"/>
        <geom name="sphere" type="sphere" size="0.05"/>
        <geom name="cylinder" type="cylinder" size="0.03 0.1" euler="1 0 0"/>
        <geom name="ellipsoid" type="ellipsoid" size="0.01 0.02 0.03"/>
        <geom name="tet" type="mesh" mesh="tet" pos="0 0.2 0"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_geom_meshes_colours_and_body_poses_follow_mujoco():
    model = mujoco.MjModel.from_xml_string(_ALL_GEOMS)
    data = mujoco.MjData(model)
    capsule = model.geom("capsule").id
    np.testing.assert_allclose(_extent(meshes.geom_mesh(model, capsule))[2],
                               0.5 + 2 * 0.02, rtol=1e-5)  # fromto: 0.5 m between the ends
    tet = meshes.geom_mesh(model, model.geom("tet").id)
    assert len(tet.vertices) == 4 and len(tet.faces) == 4
    # Colours: a geom's own rgba; its material's where the rgba is MuJoCo's default; a
    # texture's mean colour times the material's.
    np.testing.assert_allclose(meshes.geom_rgba(model, capsule), [0, 0, 1, 0.5])
    np.testing.assert_allclose(meshes.geom_rgba(model, model.geom("box").id), [1, 0, 0, 1])
    np.testing.assert_allclose(meshes.geom_rgba(model, model.geom("floor").id),
                               [0.5, 0.25, 0.5, 1], atol=0.01)
    np.testing.assert_allclose(meshes.geom_rgba(model, model.geom("sphere").id),
                               meshes.DEFAULT_GEOM_RGBA)
    # Body poses from qpos (mj_kinematics) are MuJoCo's, and a geom placed in its body's frame
    # by geom_pos / geom_quat (as the viewer nests them) lands where MuJoCo puts it.
    data.qpos[:] = (0.7, -0.05)
    mujoco.mj_forward(model, data)
    xpos, xquat = meshes.body_poses(model, np.array([0.7, -0.05]))
    np.testing.assert_allclose(xpos, data.xpos, atol=1e-12)
    np.testing.assert_allclose(xquat, data.xquat, atol=1e-12)
    for geom in range(model.ngeom):
        body = model.geom_bodyid[geom]
        rot = rotations.quat_to_matrix(xquat[body])
        np.testing.assert_allclose(xpos[body] + rot @ model.geom_pos[geom], data.geom_xpos[geom],
                                   atol=1e-9)
        np.testing.assert_allclose(rot @ rotations.quat_to_matrix(model.geom_quat[geom]),
                                   data.geom_xmat[geom].reshape(3, 3), atol=1e-9)
    with pytest.raises(ValueError, match="nq"):
        meshes.body_poses(model, np.zeros(3))


def test_the_robot_scene_draws_its_visual_geoms_and_hides_its_colliders():
    model = scene_models.robot_scene_spec().compile()
    visuals = meshes.model_visuals(model)
    drawn = {v.geom for v in visuals}
    assert drawn == {g for g in range(model.ngeom) if meshes.geom_rgba(model, g)[3] > 0}
    for v in visuals:
        assert v.is_collider == (model.geom_group[v.geom] >= 3), model.geom(v.geom).name
        assert v.body == model.geom_bodyid[v.geom] and len(v.mesh.faces)
    table = model.geom("table_visual").id  # a material's colour (mjcf/dex4d_scene.xml)
    np.testing.assert_allclose(next(v.rgba for v in visuals if v.geom == table),
                               [0.72, 0.58, 0.42, 1], atol=1e-6)
    assert sum(not v.is_collider for v in visuals) > 50  # the arm and the hand


def test_camera_framing_and_grid():
    points = np.random.default_rng(0).uniform([0.3, -0.1, 0.6], [0.5, 0.1, 0.8], (200, 3))
    position, look_at = meshes.camera_framing(points, min_distance=0.1)
    np.testing.assert_allclose(look_at, [0.4, 0.0, 0.7], atol=0.02)
    axis = (look_at - position) / np.linalg.norm(look_at - position)
    rays = points - position
    angle = np.degrees(np.arccos(rays @ axis / np.linalg.norm(rays, axis=1)))
    assert angle.max() < 37.5  # inside the viewer's 75 degree field of view
    grid = meshes.grid_positions(5, 0.2)
    np.testing.assert_allclose(grid, [[0, 0, 0], [0.2, 0, 0], [0.4, 0, 0], [0, -0.2, 0],
                                      [0.2, -0.2, 0]], atol=1e-12)


def test_body_poses_of_a_rollout_match_its_stepped_data(rollout):
    model = viewer.check_rollout(rollout)
    data = mujoco.MjData(model)
    for t in (0, 5, rollout.num_steps - 1):
        data.qpos[:] = rollout.qpos[t]
        mujoco.mj_forward(model, data)
        xpos, xquat = meshes.body_poses(model, rollout.qpos[t])
        np.testing.assert_allclose(xpos, data.xpos, atol=1e-6)
        np.testing.assert_allclose(xquat, data.xquat, atol=1e-6)
        # The keypoints were recorded from the same pose: the object's box frame carries them.
        rot = rotations.quat_to_matrix(xquat[model.body("object").id])
        keypoints = (rollout.points[t] - xpos[model.body("object").id]) @ rot
        np.testing.assert_allclose(np.abs(keypoints).max(0), [0.03, 0.02, 0.015], atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Inputs and refusals (no Viser needed: inputs are checked before the server starts).
# ----------------------------------------------------------------------------------------------


def test_inputs_are_chosen_by_content(files):
    assert view.newest_rollout(files["run"]) == str(files["newest"])
    assert isinstance(view.load_input(files["run"]), rollout_file.Rollout)
    assert isinstance(view.load_input(files["rollout"]), rollout_file.Rollout)
    tracks = view.load_input(files["tracks"])
    assert isinstance(tracks, formats.Tracks3D) and tracks.points.shape == (24, 26, 3)
    assert len(view.load_objects("ycb")) == 9 and len(view.load_objects("ycb", 3)) == 3


def test_wrong_inputs_are_refused_in_one_line(capsys, files, tmp_path):
    cases = [
        ((str(tmp_path / "missing.npz"),), ("missing.npz",)),
        ((str(files["other"]),), ("neither", "points")),
        ((str(files["text"]),), ("not an .npz",)),
        ((str(files["empty_run"]),), ("dex4d render --policy", "--env ap2ap_wrench",
                                      "rollout.mp4")),
        (("--objects", "validation"), ("train, unseen, ycb",)),
        (("--objects", "ycb", "--count", "10"), ("--count",)),
        (("--objects", "train", str(files["tracks"])), ("one of",)),
        ((), ("one of",)),
        ((str(files["tracks"]), "--count", "3"), ("--objects",)),
        ((str(files["tracks"]), "--port", "70000"), ("--port",)),
        ((str(files["tracks"]), "--host", "no-such-host.invalid"), ("--host",)),
        ((str(files["tracks"]), "--host", "192.0.2.1"), ("cannot listen",)),
    ]
    for argv, named in cases:
        code, text = run_cli(capsys, "view", *argv)
        assert_one_error_line(code, text, *named)
        assert "serving" not in text
    # A rollout whose model does not fit its qpos.
    bad = tmp_path / "bad.npz"
    good = rollout_file.load(files["rollout"])
    rollout_file.save(bad, rollout_file.Rollout(**{**good.__dict__, "qpos": good.qpos[:, :5]}))
    code, text = run_cli(capsys, "view", str(bad))
    assert_one_error_line(code, text, "nq")


def test_without_viser_the_command_says_how_to_install_it(capsys, files, monkeypatch):
    monkeypatch.setitem(sys.modules, "viser", None)  # `import viser` raises ImportError
    code, text = run_cli(capsys, "view", str(files["tracks"]))
    assert_one_error_line(code, text, 'pip install "dex4d-jax[viewer]"')


def test_the_default_host_is_loopback():
    parser = argparse.ArgumentParser()
    view.add_arguments(parser)
    args = parser.parse_args(["x.npz"])
    assert args.host == viewer.DEFAULT_HOST == "127.0.0.1"
    assert view.is_loopback("127.0.0.1") and view.is_loopback("localhost")
    assert not view.is_loopback("0.0.0.0")


# ----------------------------------------------------------------------------------------------
# Scenes on a server (Viser needed).
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _server(**kwargs):
    pytest.importorskip("viser", reason='the viewer extra: pip install "dex4d-jax[viewer]"')
    server = viewer.make_server(port=0, **kwargs)
    try:
        yield server
    finally:
        viewer.stop_server(server)


def test_rollout_scene_places_every_geom_and_follows_the_steps(rollout):
    with _server() as server:
        assert server.get_host() == "127.0.0.1"
        scene = viewer.show(server, rollout)
        assert isinstance(scene, viewer.RolloutScene)
        model = scene.model
        drawn = [g for g in range(model.ngeom) if meshes.geom_rgba(model, g)[3] > 0]
        assert sorted(scene.geom_nodes) == drawn  # table and the object's three slots
        for name in scene.node_names:
            assert server.scene.get_handle_by_name(name) is not None, name
        body = model.body("object").id
        frame = server.scene.get_handle_by_name(f"/rollout/bodies/b{body}")
        for t in (7, rollout.num_steps - 1, 0):
            scene.set_frame(t)
            assert scene.timeline.slider.value == t
            np.testing.assert_allclose(frame.position, rollout.qpos[t, :3], atol=1e-6)
            np.testing.assert_allclose(np.abs(frame.wxyz @ rollout.qpos[t, 3:7]), 1, atol=1e-6)
        points = server.scene.get_handle_by_name("/rollout/points")
        np.testing.assert_allclose(points.points, rollout.points[0][rollout.visible[0]],
                                   atol=2e-4)  # float16 on the wire
        scene.set_frame(13)  # episode 1's second step
        assert "episode **1**, step 1 of 11" in scene._info.content
        assert f"{rollout.distance[13] * 1000:.1f} mm" in scene._info.content
        assert scene.episode.value == "1"
        scene.episode.value = "0"  # the dropdown jumps to the episode's first step
        assert scene.frame == 0
        scene.timeline.fps.value = 60.0
        scene.timeline.toggle()  # Play: the frames advance on their own
        deadline = time.monotonic() + 10
        while scene.frame < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        scene.close()
        assert scene.frame >= 3 and not scene.timeline.playing


def test_track_and_object_scenes(rollout):
    tracks = formats.Tracks3D(rollout.points, rollout.visible, np.arange(rollout.num_steps) * 3)
    with _server() as server:
        scene = viewer.TrackScene(server, tracks)
        scene.set_frame(5)
        seen = rollout.visible[5]
        assert server.scene.get_handle_by_name("/tracks/visible").points.shape == (seen.sum(), 3)
        assert server.scene.get_handle_by_name("/tracks/hidden").points.shape == ((~seen).sum(),
                                                                                   3)
        assert "video frame 15" in scene._info.content
        trail = server.scene.get_handle_by_name("/tracks/trail")
        assert trail.visible and trail.points.shape[1:] == (2, 3)
        scene.show_hidden.value = False
        assert not server.scene.get_handle_by_name("/tracks/hidden").visible
        scene.close()
    with _server() as server:
        library = view.load_objects("ycb", 4)
        scene = viewer.ObjectGridScene(server, library)
        assert len(scene.primitive_nodes) == sum(len(library.spec(i).primitives)
                                                 for i in range(4))
        for name in scene.node_names:
            assert server.scene.get_handle_by_name(name) is not None, name
        scene.show_keypoints.value = False
        assert not server.scene.get_handle_by_name("/objects/o0/keypoints").visible


def test_the_command_serves_until_ctrl_c(files):
    pytest.importorskip("viser", reason='the viewer extra: pip install "dex4d-jax[viewer]"')
    process = subprocess.Popen(
        [sys.executable, "-m", "dex4d_jax.experiments.cli", "view", str(files["run"]), "--port",
         "0"], cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = process.stdout.readline()  # blocks until the server is up (or the command dies)
        assert "serving the rollout" in line and "http://127.0.0.1:" in line, (
            line, process.stderr.read() if process.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read(2000).lower()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)  # a deadline: shutting down is quick when idle
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Stopped." in err


# ----------------------------------------------------------------------------------------------
# A browser.
# ----------------------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium for the browser test (Debian: apt-get install chromium)")


# Headless Chromium's WebGL on a machine without a GPU: SwiftShader through ANGLE.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--disable-dev-shm-usage", "--mute-audio",
                  "--no-first-run", "--window-size=640,480")


def _colour_share(image: np.ndarray, rgb, hue_tolerance: float = 0.04) -> float:
    """Share of the pixels of `image` [H, W, 3 or 4] uint8 in the colour `rgb` under some light:
    the same hue, at least 60 % of its saturation, not black (lighting changes brightness and
    whitens highlights, not the hue)."""
    pixels = image[..., :3].astype(np.float64) / 255.0
    top, bottom = pixels.max(-1), pixels.min(-1)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-9), 0.0)

    def hue(rgb_array):
        r, g, b = np.moveaxis(np.asarray(rgb_array, np.float64), -1, 0)
        return (np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b) / (2 * np.pi)) % 1.0

    want = np.asarray(rgb, np.float64) / 255.0
    want_saturation = (want.max() - want.min()) / want.max()
    distance = np.abs((hue(pixels) - hue(want) + 0.5) % 1.0 - 0.5)
    near = ((distance < hue_tolerance) & (saturation > 0.6 * want_saturation) & (top > 0.15))
    return float(near.mean())


def test_a_browser_loads_and_renders_the_scene(rollout):
    browser = _chromium()
    with _server() as server:
        viewer.RolloutScene(server, rollout)
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
            process = subprocess.Popen(  # its own process group: the browser and its helpers
                [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", viewer.url_of(server)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                # Two deadlines, each generous: on a loaded 2-core machine Chromium's start alone
                # has taken most of a minute (CI once ran out of one shared 60 s deadline with
                # the scene half drawn).
                deadline = time.monotonic() + 120
                while not server.get_clients() and time.monotonic() < deadline:
                    assert process.poll() is None, "chromium exited"
                    time.sleep(0.05)
                clients = list(server.get_clients().values())
                assert clients, "no browser connected within 120 s"
                client = clients[0]
                # Aim at the object, then have the browser render its WebGL canvas for us until
                # the whole scene is in it, seen from there (the first frames may come before
                # the scene's messages or the camera's).
                object_pos = rollout.qpos[0, :3]
                client.camera.position = tuple(object_pos + (0.1, -0.25, 0.15))
                client.camera.look_at = tuple(object_pos)  # after: position moves look_at
                deadline = time.monotonic() + 120
                while True:
                    image = client.get_render(480, 640, transport_format="png", timeout=60)
                    if all(_scene_checks(image)) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert image.shape == (480, 640, 4)
    blue, green, magenta, yellow = _scene_checks(image)
    assert blue, _colour_share(image, _OBJECT_RGB)
    assert green, _colour_share(image, viewer.TARGET_RGB)
    assert magenta, _colour_share(image, viewer.CURRENT_RGB)
    assert yellow, _colour_share(image, (255, 230, 0))


def _scene_checks(image: np.ndarray) -> tuple[bool, bool, bool, bool]:
    """Whether the browser's render of the rollout scene holds what it should, colour by colour.

    Shares of the image measured when this was written: 0.9 %, 0.17 %, 0.03 %, 0.001 %.
    """
    return (_colour_share(image, _OBJECT_RGB) > 0.004,  # the blue box, 6 x 4 x 3 cm
            _colour_share(image, viewer.TARGET_RGB) > 0.0005,  # the green targets
            _colour_share(image, viewer.CURRENT_RGB) > 0.0001,  # the magenta points on the box
            _colour_share(image, (255, 230, 0)) < 0.0001)  # nothing yellow: the measure tells
