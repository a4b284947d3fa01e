"""PPO with Paired Point Encoding learns `ap2ap_wrench` (and a resume restores what it learnt),
and DAgger distils the trained teacher into the masked-point student (slow)."""

import json

import numpy as np
import pytest
from dex4d_jax.experiments.configs import student, teacher

from dex4d_jax import sim2sim
from dex4d_jax.deploy.policy import OnnxPolicy
from dex4d_jax.export import policy as export
from dex4d_jax.student import train as student_train
from dex4d_jax.training import run_dir
from tests.helpers import (envs_of, run_cli, run_headless, skip_without_gl, train_student,
                           train_teacher)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """The teacher trained (and resumed) by test_teacher_learns_and_resumes."""
    return tmp_path_factory.mktemp("teacher") / "run"


@pytest.mark.slow
def test_teacher_learns_and_resumes(teacher_run):
    config = teacher.get_config("quick")
    # A smaller version of the quick run: rotations up to 0.5 rad, 240k steps.
    config.env.update(first_goal_max_angle=0.5, num_objects=10)
    config.ppo.num_timesteps = 240_000
    config.ppo.num_evals = 4
    config.eval.num_episodes = 128
    out = teacher_run
    result = train_teacher(config, str(out), progress=False)
    # An untrained policy never reaches and holds a 2 cm goal (measured success 0.0).
    assert result.success_rate >= 0.3, result
    assert result.min_distance < 0.04, result
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert "eval/success_rate" in lines[-1] and "training/policy_loss" in lines[-1]
    assert lines[-1]["step"] >= 240_000
    steps = [s for s, _ in run_dir.list_checkpoints(str(out))]
    assert steps[-1] >= 240_000 and len(steps) >= 2

    # Resuming the finished run restores the trained policy (no relearning from scratch) and
    # rewrites the same eval.json. (The bit-exact redo of an interrupted epoch is checked by
    # tests/test_resume.py's SIGKILL test, on the same code with the tiny config; redoing an
    # epoch here would cost the suite about 100 s.)
    before = (out / "eval.json").read_text()
    resumed = train_teacher(None, str(out), resume=True, progress=False)
    assert resumed == result
    assert (out / "eval.json").read_text() == before
    assert (out / "metrics.jsonl").read_text().splitlines() == [json.dumps(x) for x in lines]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """The student distilled by test_student_distils_the_teacher."""
    return tmp_path_factory.mktemp("student") / "run"


@pytest.mark.slow
def test_student_distils_the_teacher(teacher_run, student_run):
    """The masked-point student reaches most of the teacher's success and its next-state
    predictions beat "nothing changes" (the quick preset, on a third of its budget)."""
    if not (teacher_run / "eval.json").exists():
        pytest.skip("needs test_teacher_learns_and_resumes's teacher")
    config = student.get_config("quick")
    config.dagger.update(num_timesteps=100_000, num_evals=3)
    config.eval.num_episodes = 128
    config = student_train.bind_teacher(config, str(teacher_run), "ap2ap_wrench")
    result = train_student(config, str(student_run), progress=False)
    teacher_success = result["teacher"]["success_rate"]
    assert teacher_success >= 0.3, result
    # An untrained student never holds a goal (measured success 0.0 at step 0).
    assert result["student"]["success_rate"] >= 0.75 * teacher_success, result
    wm = result["world_model"]
    assert wm["next_qvel"] < 0.9 * wm["next_qvel_unchanged"], wm


@pytest.fixture(scope="module")
def exported_student(student_run, tmp_path_factory):
    if not (student_run / "eval.json").exists():
        pytest.skip("needs test_student_distils_the_teacher's student")
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    config = run_dir.read_run_config(str(student_run))
    export.export_policy(str(student_run), str(path), envs_of(config)[1])
    return path


@pytest.mark.slow
def test_exported_student_on_native_mujoco(student_run, exported_student):
    """Sim-to-sim: the exported student, through the deploy runtime (onnxruntime, simulated
    camera visibility instead of the training masks) on native MuJoCo, succeeds on the MJX
    evaluation's own episodes within 10 points of its MJX success rate."""
    config = run_dir.read_run_config(str(student_run))
    mjx_success = json.loads((student_run / "eval.json").read_text())["student"]["success_rate"]
    env = envs_of(config)[1]
    episodes = sim2sim.evaluate_native(OnnxPolicy(str(exported_student)), env,
                                         config.eval.num_episodes, config.eval.seed,
                                         config.dagger.episode_length)
    native_success = float(np.mean([e.success for e in episodes]))
    assert abs(native_success - mjx_success) <= 0.10, (native_success, mjx_success)


@pytest.mark.slow
def test_video_track_drives_the_student(exported_student, tmp_path, capsys):
    """End to end: a box rendered moving (9 cm, 35 degrees) -> LK tracks lifted with a
    disparity video -> cleaned waypoints -> `dex4d run --robot sim` moves a simulated box of
    the same size from the first frame's pose to the last frame's."""
    skip_without_gl()
    done = run_headless("""
        import sys
        from dex4d_jax.experiments import cli
        sys.exit(cli.main(["tracks", "demo", "--disparity", "--out", sys.argv[1]]))
    """, str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    files = {k: str(tmp_path / v) for k, v in (("video", "video.mp4"), ("mask", "mask.png"),
             ("depth", "depth.npz"), ("camera", "camera.npz"), ("depth0", "depth0.npy"))}
    track = tmp_path / "track.npz"
    code, text = run_cli(capsys, "tracks", "from-video", *[x for k, v in files.items()
                                                           for x in (f"--{k}", v)],
                         "--out", str(track), "--waypoint-distance", "0.01")
    assert code == 0, text
    truth = np.load(tmp_path / "ground_truth.npz")
    pos0, quat0 = truth["obj_pos_world"][0], truth["obj_quat_world"][0]
    report = tmp_path / "report.json"
    code, text = run_cli(capsys, "run", "--onnx", str(exported_student), "--tracks", str(track),
                         "--robot", "sim", "--object", "box:0.05,0.035,0.03", "--pose",
                         *map(str, [*pos0, *quat0]), "--steps", "200", "--report", str(report))
    assert code == 0 and "success" in text, text
    result = json.loads(report.read_text())
    assert result["final_true_distance"] < 0.02, result
