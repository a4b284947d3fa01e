"""Rollout videos: `dex4d render`, training's `--video-every`, and what their frames show.

Everything that renders runs in one fresh Python process (MuJoCo picks its GL backend when first
imported), the `rendered` fixture: a tiny teacher run (test_resume's `tiny_config(epochs=1)`,
through `dex4d train teacher --set ...`) with `--video-every 1`, its last epoch redone by
`--resume --video-every 2`, `dex4d render` of a wrench student run (`make_wrench_student_run`),
native renders of that rollout with marks forced on and with points off, and of the robot scene.
The tests then read its files here (about 45 s of one process in all: those tests are marked
slow). Refusals run in this process, before any rendering.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest
from helpers import (
    assert_one_error_line,
    magenta_pixels as _magenta,
    envs_of,
    make_wrench_student_run,
    run_cli,
    skip_without_gl,
    yellow_pixels as _yellow,
)
from test_resume import _ROOT, _subprocess_env, tiny_config

from dex4d_jax.training import checkpoint, run_dir
from dex4d_jax.viz import render, rollout_file, video

SIZE = (160, 120)
STEPS = 20  # control steps per episode of the rendered student
# `tiny_config(epochs=1)` as command-line flags (the test checks the config.json they make).
TINY_FLAGS = ["--preset", "quick", "--steps", "512", "--set", "env.num_objects=2",
              "--set", "network.policy_hidden=(32,)", "--set", "network.value_hidden=(32,)",
              "--set", "network.point_hidden=(16,)", "--set", "ppo.num_envs=16",
              "--set", "ppo.unroll_length=4", "--set", "ppo.batch_size=16",
              "--set", "ppo.num_minibatches=4", "--set", "ppo.num_updates_per_batch=2",
              "--set", "ppo.num_evals=2", "--set", "ppo.episode_length=20",
              "--set", "ppo.num_eval_envs=8", "--set", "ppo.learning_rate=3e-4",
              "--set", "eval.num_episodes=8"]

SCRIPT = """
import dataclasses, json, os, shutil, sys, types
import numpy as np
from dex4d_jax.experiments import cli

teacher, student, out = sys.argv[1:4]
tiny = json.loads(sys.argv[4])
width, height = json.loads(sys.argv[5])


def dex4d(*argv):
    code = cli.main(list(argv))
    assert code == 0, (argv, code)


# 1. A tiny teacher run with a video at every evaluation (steps 0 and 512).
dex4d("train", "teacher", "--out", teacher, *tiny, "--video-every", "1", "--no-progress")
last = os.path.join(teacher, "checkpoints", f"{512:012d}")
shutil.copytree(last, os.path.join(out, "uninterrupted_512"))
shutil.copy(os.path.join(teacher, "metrics.jsonl"), os.path.join(out, "uninterrupted.jsonl"))
shutil.copytree(os.path.join(teacher, "videos"), os.path.join(out, "videos_first"))
# 2. Its last epoch again, resumed with videos every 2nd evaluation: evaluation 1 (step 512)
# gets none, and nothing of the video at step 0 leaked into the training.
shutil.rmtree(last)
for name in os.listdir(os.path.join(teacher, "videos")):
    os.remove(os.path.join(teacher, "videos", name))
dex4d("train", "teacher", "--resume", "--out", teacher, "--video-every", "2", "--no-progress")

# 3. `dex4d render` of a (random) student: 2 episodes.
dex4d("render", "--policy", student, "--env", "ap2ap_wrench", "--out",
      os.path.join(out, "student.mp4"), "--episodes", "2", "--steps", "%(steps)d",
      "--size", f"{width}x{height}")

# 4. Its rollout rendered natively (lossless frames): with points, without, and with success
# and a held goal forced on (steps 5-9 succeed, goal 1 is held at step 8 of episode 0).
from dex4d_jax.viz import render, rollout_file, video
rollout = rollout_file.load(os.path.join(out, "student.npz"))
success = np.zeros(rollout.num_steps, bool)
success[5:10] = True
goals = np.where((np.arange(rollout.num_steps) >= 8) & (rollout.episode == 0), 1, 0)
forced = dataclasses.replace(rollout, success=success, goals_reached=goals.astype(np.int32))
frames = {
    "points": list(video.render_frames(rollout, width, height, threshold=0.02)),
    "bare": list(video.render_frames(rollout, width, height, show_points=False)),
    "forced": list(video.render_frames(forced, width, height, threshold=0.02,
                                        banner_seconds=0.25)),
}

# 5. The robot scene (ap2ap) with a library object, natively: the grasp-ready robot, the object
# on the table and its points, the target 12 cm nearer the camera and 5 cm up; success forced
# on the second frame.
from dex4d_jax import object_library, rotations
from dex4d_jax.envs import robot_scene
library = object_library.load_library("train", 1, 0)
scene = robot_scene.build_scene_objects(library)
env = types.SimpleNamespace(scene=scene, config=types.SimpleNamespace(sim_dt=1 / 120))
xml = video.model_xml(video.scene_spec("ap2ap", env, 0))
model, data = robot_scene.grasp_ready_data(scene, 0)
pos, quat = data.qpos[-7:-4], data.qpos[-4:]
points = (library.keypoints[0] @ rotations.quat_to_matrix(quat).T + pos).astype(np.float32)
robot = rollout_file.Rollout(
    "ap2ap", xml, 1 / 30, np.stack([data.qpos] * 2).astype(np.float32), np.stack([points] * 2),
    np.stack([points + [0, -0.12, 0.05]] * 2).astype(np.float32), np.ones((2, len(points)), bool),
    np.full(2, 0.1, np.float32), np.array([False, True]), np.zeros(2, np.int32),
    np.zeros(2, np.int32))
frames["robot"] = list(video.render_frames(robot, width, height, threshold=0.05))
np.savez_compressed(os.path.join(out, "frames.npz"),
                    **{k: np.stack(v) for k, v in frames.items()})
"""


def _green(image):
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (g > 150) & (r < 90) & (b < 90)


def _amber(image):
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 200) & (g > 120) & (g < 220) & (b < 90)


def _object_coloured(image, rgba):
    """Pixels whose channels rank as the object's colour does (shading keeps the ranking)."""
    order = np.argsort(rgba[:3])  # darkest to brightest channel
    x = image.astype(int)
    return (x[..., order[1]] > x[..., order[0]] + 25) & (x[..., order[2]] > x[..., order[1]] + 25)


def _border(image, width):
    """The pixels of a frame's outer band `width` pixels wide."""
    return np.concatenate([image[:width].reshape(-1, 3), image[-width:].reshape(-1, 3),
                           image[:, :width].reshape(-1, 3), image[:, -width:].reshape(-1, 3)])


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """A wrench student run (random weights) whose environment holds 2 objects (cheaper to
    build than the default 20)."""
    run = make_wrench_student_run(tmp_path_factory.mktemp("student") / "run")[0]
    config = json.loads((run / "config.json").read_text())
    config["env"]["num_objects"] = 2
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, student_run):
    """Runs SCRIPT in a fresh process; returns {"teacher", "out", "stdout"}."""
    skip_without_gl()
    base = tmp_path_factory.mktemp("render")
    paths = {"teacher": base / "teacher", "out": base / "out"}
    paths["out"].mkdir()
    env = _subprocess_env(MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT % {"steps": STEPS}), str(paths["teacher"]),
         str(student_run), str(paths["out"]), json.dumps(TINY_FLAGS), json.dumps(SIZE)],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    paths["stdout"] = result.stdout
    return paths


def _video_frames(path):
    import imageio.v2 as imageio

    with warnings.catch_warnings():  # JAX's warning at imageio's fork (then exec) of ffmpeg
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        with imageio.get_reader(str(path)) as reader:
            return np.stack([frame for frame in reader])  # list() would ask its length: inf


# ------------------------------------------------------------------------------------------------
# dex4d render
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the `rendered` fixture: about 45 s of one process
def test_render_writes_the_video_and_its_rollout_file(rendered):
    out = rendered["out"]
    rollout = rollout_file.load(out / "student.npz")
    encoded = _video_frames(out / "student.mp4")
    assert rollout.env == "ap2ap_wrench" and rollout.num_episodes == 2
    assert rollout.num_steps == 2 * STEPS == len(encoded)
    assert encoded.shape[1:] == (SIZE[1], SIZE[0], 3)
    assert rollout.dt == pytest.approx(0.05) and rollout.num_points == 128
    np.testing.assert_array_equal(rollout.episode, np.repeat([0, 1], STEPS))
    # d_t is the mean distance between the recorded point pairs (Eq. 4), in the world frame
    # (the object starts on the table, 0.6 m up), and success is d_t below 2 cm.
    pairs = np.linalg.norm(rollout.points - rollout.targets, axis=-1).mean(-1)
    np.testing.assert_allclose(rollout.distance, pairs, atol=1e-5)
    np.testing.assert_array_equal(rollout.success, rollout.distance < 0.02)
    assert rollout.points[[0, STEPS], :, 2].min() > 0.55
    # The two episodes start differently, with the same object (one scene per rollout file).
    assert not np.allclose(rollout.points[0], rollout.points[STEPS])
    extent = np.ptp(rollout.points[0], axis=0)
    np.testing.assert_allclose(np.ptp(rollout.points[STEPS], axis=0).max(), extent.max(),
                               rtol=0.3)
    # The scene is the MJCF text of the table holding the object; qpos fits it.
    import mujoco

    model = mujoco.MjModel.from_xml_string(rollout.model_xml)
    assert model.nq == rollout.qpos.shape[1] == 7
    assert "Wrote" in rendered["stdout"] and "frame 40/40" in rendered["stdout"]
    # Nothing temporary is left beside the outputs.
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    # The points the student saw: of the 128, at most the 64 its plane mask kept for the
    # episode (the same 64 at every step), fewer where the height mask hid some that step.
    seen = rollout.visible.reshape(2, STEPS, 128)
    for episode in seen:
        assert 0 < episode.sum(-1).min() and episode.sum(-1).max() <= 64
        assert episode.any(0).sum() <= 64


@pytest.mark.slow  # the `rendered` fixture: about 45 s of one process
def test_frames_show_the_object_and_both_point_sets_and_change(rendered):
    frames = np.load(rendered["out"] / "frames.npz")
    points, bare = frames["points"], frames["bare"]
    rollout = rollout_file.load(rendered["out"] / "student.npz")
    import mujoco

    model = mujoco.MjModel.from_xml_string(rollout.model_xml)
    rgba = model.geom_rgba[model.geom("object_box_a").id]
    scene_rows = slice(0, int(0.75 * SIZE[1]))  # above the legend line
    for t in (0, STEPS):  # each episode's first frame: the object sits on the table
        assert _object_coloured(bare[t], rgba).sum() > 15
        assert _yellow(points[t][scene_rows]).sum() > 5
        assert _magenta(points[t][scene_rows]).sum() > 5
    # Without points, neither colour appears anywhere (no legend either).
    assert not _yellow(bare).any() and not _magenta(bare).any()
    # The scene moves: the object's pixels differ between the first and last frame of episode 0.
    first, last = (_object_coloured(bare[t], rgba) for t in (0, STEPS - 1))
    assert (first ^ last).sum() > 10
    # The encoded video is the lossless frames up to compression.
    encoded = _video_frames(rendered["out"] / "student.mp4").astype(int)
    assert np.abs(encoded - points.astype(int)).mean() < 12


@pytest.mark.slow  # the `rendered` fixture: about 45 s of one process
def test_success_and_goal_marks_follow_the_rollout(rendered):
    forced = np.load(rendered["out"] / "frames.npz")["forced"]
    edge = video.border_width(SIZE[1])
    x0, y0, x1, y1 = video.banner_box(*SIZE)
    # Success at steps 5-9: a green border, and only then.
    for t, frame in enumerate(forced):
        green = _green(_border(frame, edge - 1)).mean()
        assert (green > 0.8) if 5 <= t < 10 else (green < 0.2), (t, green)
    # Goal 1 held at step 8: the banner for 0.25 s (5 steps at 20 Hz), within episode 0.
    banner = [_amber(frame[y0:y1, x0:x1]).mean() for frame in forced]
    shown = [t for t, b in enumerate(banner) if b > 0.4]
    assert shown == list(range(8, 13)), banner
    assert max(b for t, b in enumerate(banner) if t not in shown) < 0.05


@pytest.mark.slow  # the `rendered` fixture: about 45 s of one process
def test_robot_scene_renders_natively(rendered):
    robot = np.load(rendered["out"] / "frames.npz")["robot"]
    assert robot.shape == (2, SIZE[1], SIZE[0], 3)
    scene_rows = slice(0, int(0.75 * SIZE[1]))
    assert _yellow(robot[0][scene_rows]).sum() > 3 and _magenta(robot[0][scene_rows]).sum() > 3
    edge = video.border_width(SIZE[1])
    assert _green(_border(robot[0], edge - 1)).mean() < 0.2
    assert _green(_border(robot[1], edge - 1)).mean() > 0.8
    assert robot[0].std() > 20  # a scene, not a blank image


# ------------------------------------------------------------------------------------------------
# --video-every
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the `rendered` fixture: about 45 s of one process
def test_video_every_writes_videos_and_changes_no_training(rendered):
    teacher, out = rendered["teacher"], rendered["out"]
    config = json.loads((teacher / "config.json").read_text())
    assert config == json.loads(tiny_config(epochs=1).to_json())
    # Every evaluation of the first run (steps 0 and 512) has its video and rollout file.
    first = out / "videos_first"
    assert sorted(os.listdir(first)) == ["eval_0.mp4", "eval_0.npz", "eval_512.mp4",
                                         "eval_512.npz"]
    for step in (0, 512):
        rollout = rollout_file.load(first / f"eval_{step}.npz")
        assert rollout.num_episodes == 1 and rollout.num_steps == 20
        assert len(_video_frames(first / f"eval_{step}.mp4")) == 20
        assert rollout.visible.all()  # a teacher sees every point
    before, after = (rollout_file.load(first / f"eval_{s}.npz") for s in (0, 512))
    np.testing.assert_array_equal(before.targets[0], after.targets[0])  # the same episode
    # The resumed run (--video-every 2: evaluation 1, at step 512, is not due) redid the last
    # epoch bit for bit, without the video at step 0 before it: videos change no training.
    assert os.listdir(teacher / "videos") == []
    redone = teacher / "checkpoints" / f"{512:012d}"
    (a, meta_a), (b, meta_b) = (checkpoint.read_checkpoint(str(p))
                                for p in (redone, out / "uninterrupted_512"))
    assert meta_a == meta_b
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    def results(path):
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        return [{k: v for k, v in line.items()
                 if not (k == "time" or k.endswith("sps") or k.endswith("walltime"))}
                for line in lines]

    assert results(teacher / "metrics.jsonl") == results(out / "uninterrupted.jsonl")
    assert [s for s, _ in run_dir.list_checkpoints(str(teacher))] == [0, 512]


def test_video_every_without_gl_warns_once_and_trains_on(monkeypatch):
    import mujoco

    def no_gl(*args, **kwargs):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded")

    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    config = tiny_config(epochs=1)
    env = envs_of(config)[1]
    messages = []
    videos = render.TrainingVideos(env, "ap2ap_wrench", config, "unused", 1, log=messages.append)
    assert len(messages) == 1 and "libegl1" in messages[0] and "without videos" in messages[0]
    assert videos(0, 0, None) is None and videos(1, 512, None) is None
    assert len(messages) == 1 and not os.path.exists("unused")
    # (An object outside the environment's set is refused before anything compiles.)
    with pytest.raises(ValueError, match=r"object 2: the environment has objects 0\.\.1"):
        render.episode_keys(env, 0, 2, object_id=2)


def test_video_every_must_be_positive(capsys, tmp_path):
    code, text = run_cli(capsys, "train", "teacher", "--out", str(tmp_path / "run"),
                         "--video-every", "0")
    assert_one_error_line(code, text, "--video-every")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# Refusals and the student's rollout (no rendering)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def keep_gl_setting(monkeypatch):
    """`dex4d render` chooses MUJOCO_GL for its process; restore it after the test."""
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", ""))
    if not os.environ["MUJOCO_GL"]:
        monkeypatch.delenv("MUJOCO_GL")


def test_render_refusals_are_one_line(capsys, tmp_path, student_run, keep_gl_setting):
    out = str(tmp_path / "r.mp4")
    base = ["render", "--env", "ap2ap_wrench", "--out", out]
    no_checkpoint = tmp_path / "empty_run"
    no_checkpoint.mkdir()
    (no_checkpoint / "config.json").write_text((student_run / "config.json").read_text())
    (tmp_path / "policy.onnx").write_text("")
    cases = [
        (["render", "--policy", str(tmp_path / "nothing"), "--env", "ap2ap_wrench", "--out", out],
         ["nothing", "does not exist"]),
        (["render", "--policy", str(no_checkpoint), "--env", "ap2ap_wrench", "--out", out],
         ["checkpoint"]),
        (["render", "--policy", str(tmp_path / "policy.onnx"), "--env", "ap2ap_wrench",
          "--out", out], ["is a file"]),
        (["render", "--policy", str(student_run), "--env", "ap2ap", "--out", out],
         ["ap2ap_wrench, not ap2ap"]),
        ([*base, "--policy", str(student_run), "--episodes", "0"], ["--episodes"]),
        ([*base, "--policy", str(student_run), "--steps", "0"], ["--steps"]),
        ([*base, "--policy", str(student_run), "--size", "640"], ["--size", "WIDTHxHEIGHT"]),
        ([*base, "--policy", str(student_run), "--size", "641x480"], ["--size", "even"]),
        ([*base, "--policy", str(student_run), "--size", "0x480"], ["--size", "between"]),
        (["render", "--policy", str(student_run), "--env", "ap2ap_wrench", "--out",
          str(tmp_path / "missing" / "r.mp4")], ["does not exist"]),
        ([*base[:-1], str(tmp_path / "r.avi"), "--policy", str(student_run)], [".mp4"]),
    ]
    for argv, named in cases:
        code, text = run_cli(capsys, *argv)
        assert_one_error_line(code, text, *named)
    assert sorted(os.listdir(tmp_path)) == ["empty_run", "policy.onnx"]  # nothing written


def test_render_without_gl_names_the_packages(capsys, tmp_path, student_run, monkeypatch,
                                             keep_gl_setting):
    import mujoco

    def no_gl(*args, **kwargs):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded")

    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    code, text = run_cli(capsys, "render", "--policy", str(student_run), "--env",
                         "ap2ap_wrench", "--out", str(tmp_path / "r.mp4"))
    assert_one_error_line(code, text, "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0",
                          "libosmesa6", "MUJOCO_GL=osmesa")
    assert os.listdir(tmp_path) == []


def test_banner_goals_and_sizes():
    rollout = rollout_file.Rollout(
        "ap2ap_wrench", "<mujoco/>", 0.05, np.zeros((8, 1)), np.zeros((8, 1, 3)),
        np.zeros((8, 1, 3)), np.ones((8, 1), bool), np.zeros(8), np.zeros(8, bool),
        np.array([0, 1, 1, 1, 1, 0, 0, 1]), np.array([0, 0, 0, 0, 0, 1, 1, 1]))
    # Goal 1 held at step 1 (shown 3 steps), and at step 7 in episode 1 (cut by the end).
    np.testing.assert_array_equal(video.banner_goals(rollout, 3), [0, 1, 1, 1, 0, 0, 0, 1])
    assert video.parse_size("320x240") == (320, 240)
    for bad in ("320", "320x", "axb", "8x8", "321x240", "320x240x3", "5000x240"):
        with pytest.raises(ValueError, match="--size"):
            video.parse_size(bad)
    assert video.rollout_path("out/rollout.mp4") == "out/rollout.npz"


def test_an_unstable_episode_is_named_not_written():
    steps = render.Steps(np.zeros((2, 3, 7), np.float32), np.zeros((2, 3, 4, 3), np.float32),
                         np.zeros((2, 3, 4, 3), np.float32), np.zeros((2, 3), np.float32),
                         np.zeros((2, 3), bool), np.zeros((2, 3), np.int32),
                         np.zeros(2, np.int32), np.ones((2, 3, 4), bool))
    assert render.to_rollout("ap2ap", "<mujoco/>", 0.05, steps).num_steps == 6
    steps.qpos[1, 2, 0] = np.nan
    with pytest.raises(rollout_file.RolloutFileError, match="episode 2 .* control step 3"):
        render.to_rollout("ap2ap", "<mujoco/>", 0.05, steps)
