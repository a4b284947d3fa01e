"""Fault discipline of the command line and the run folders (issue: one clear line and exit 2
for every bad input; run folders never left unusable).

Every bad input ends with exit code 2 and one line `dex4d: error: ...` that names the file or
argument, no traceback, and no existing file changed. Nothing here compiles a training program:
the checks all happen before.
"""

import json
import os

import numpy as np
import pytest
from dex4d_jax.experiments.configs import student, teacher
from helpers import assert_one_error_line, folder_files, run_cli

from dex4d_jax.training import checkpoint, loop, run_dir


def _fake_run(folder, config_text: str) -> None:
    """A run folder with the given config.json and one (empty) checkpoint marked complete."""
    ckpt = folder / "checkpoints" / f"{0:012d}"
    ckpt.mkdir(parents=True)
    (ckpt / "_CHECKPOINT_METADATA").write_text("{}")
    (folder / "config.json").write_text(config_text)


def _wrong_type() -> str:
    config = teacher.get_config("quick").to_dict()
    config["ppo"]["num_envs"] = "abc"
    return json.dumps(config)


@pytest.mark.parametrize("config_text, named", [
    ("not json {", "not readable JSON"),
    ("{}", "neither a teacher"),
    (_wrong_type(), "ppo.num_envs"),
])
def test_a_bad_config_json_is_one_line_everywhere(config_text, named, tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(run, config_text)
    before = folder_files(tmp_path)
    for argv in (["train", "teacher", "--resume", "--out", str(run)],
                 ["export", "--policy", str(run), "--out", str(tmp_path / "p.onnx")],
                 ["train", "student", "--teacher", str(run), "--env", "ap2ap_wrench",
                  "--out", str(tmp_path / "student")]):
        code, text = run_cli(capsys, *argv)
        assert_one_error_line(code, text, named, "config.json")
    assert folder_files(tmp_path) == before and not (tmp_path / "student").exists()


def test_resume_with_the_other_trainer_names_the_right_command(tmp_path, capsys):
    """A student run resumed by `train teacher` (or the reverse) is refused by name, not as a
    corrupt checkpoint, and nothing in the run changes."""
    runs = {"teacher": teacher.get_config("quick"), "student": student.get_config("quick")}
    for kind, config in runs.items():
        run = tmp_path / kind
        _fake_run(run, config.to_json())
        before = folder_files(run)
        other = "student" if kind == "teacher" else "teacher"
        code, text = run_cli(capsys, "train", other, "--resume", "--out", str(run))
        assert_one_error_line(code, text, f"is a {kind} run",
                              f"dex4d train {kind} --resume --out {run}")
        assert folder_files(run) == before


def test_export_wants_a_run_folder(tmp_path, capsys):
    policy_file = tmp_path / "student.onnx"
    policy_file.write_bytes(b"onnx")
    code, text = run_cli(capsys, "export", "--policy", str(policy_file), "--out",
                         str(tmp_path / "out.onnx"))
    assert_one_error_line(code, text, str(policy_file), "run folder")
    assert policy_file.read_bytes() == b"onnx" and not (tmp_path / "out.onnx").exists()


def test_a_student_run_is_not_a_teacher(tmp_path, capsys):
    run = tmp_path / "student_run"
    config = student.get_config("quick")
    config.env = {"name": "ap2ap_wrench"}
    _fake_run(run, config.to_json())
    code, text = run_cli(capsys, "train", "student", "--teacher", str(run), "--env",
                         "ap2ap_wrench", "--out", str(tmp_path / "s"))
    assert_one_error_line(code, text, "not a teacher run")


@pytest.mark.parametrize("setting, named", [
    ("env.success_threshold=abc", "expected float"),
    ("env.episode_length=1.5", "expected int"),
    ("env.episode_length=0", "must be >= 1"),
    ("env.success_threshold=-1", "must be > 0"),
    ("env.num_objects=0", "must be >= 1"),
    ("env.families=('bottle', 'teapot')", "'teapot' is not one of"),
    ("ppo.num_envs=-4", "must be >= 1"),
    ("ppo.learning_rate=nan", "must be finite"),
])
def test_teacher_settings_have_types_and_ranges(setting, named, tmp_path, capsys):
    out = tmp_path / "run"
    code, text = run_cli(capsys, "train", "teacher", "--out", str(out), "--set", setting)
    assert_one_error_line(code, text, setting.split("=")[0], named)
    assert not out.exists()


@pytest.mark.parametrize("setting, named", [
    ("dagger.num_envs=0", "must be >= 1"),
    ("dagger.num_envs=-4", "must be >= 1"),
    ("masking.hide_above=2", "must be <= 1"),
    ("dagger.beta=1.5", "must be <= 1"),
    ("network.arch=cnn", "not one of"),
])
def test_student_settings_have_types_and_ranges(setting, named, tmp_path, capsys):
    teacher_run = tmp_path / "teacher"
    _fake_run(teacher_run, teacher.get_config("quick").to_json())
    out = tmp_path / "student"
    code, text = run_cli(capsys, "train", "student", "--teacher", str(teacher_run), "--env",
                         "ap2ap_wrench", "--out", str(out), "--set", setting)
    assert_one_error_line(code, text, setting.split("=")[0], named)
    assert not out.exists()


def test_an_output_that_cannot_be_created_is_refused_first(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, text = run_cli(capsys, "train", "teacher", "--out", str(blocker / "run"))
    assert_one_error_line(code, text, str(blocker))
    assert blocker.read_text() == "x"


def test_one_process_per_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    with run_dir.exclusive(str(run), resume=False):
        run_dir.prepare_run_dir(str(run), teacher.get_config("quick"), resume=False)
        code, text = run_cli(capsys, "train", "teacher", "--resume", "--out", str(run))
        assert_one_error_line(code, text, f"run in use by PID {os.getpid()}")
        with pytest.raises(run_dir.RunDirError, match="run in use"):
            with run_dir.exclusive(str(run), resume=True):
                pass
    with run_dir.exclusive(str(run), resume=True):  # released on exit
        pass


def test_incomplete_checkpoint_folders_are_moved_aside(tmp_path):
    run = tmp_path / "run"
    run_dir.prepare_run_dir(str(run), teacher.get_config("quick"), resume=False)
    bare = run / "checkpoints" / f"{512:012d}"
    (bare / "state").mkdir(parents=True)  # a step-named folder without orbax's marker
    messages = []
    config, step, path = run_dir.prepare_run_dir(str(run), None, resume=True,
                                                 log=messages.append)
    assert (step, path) == (0, None) and not bare.exists()
    moved = [n for n in os.listdir(run / "checkpoints") if n.startswith(f"{512:012d}.incomplete")]
    assert len(moved) == 1 and any("moved it aside" in m for m in messages)
    assert run_dir.list_checkpoints(str(run)) == []


def test_a_failed_setup_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), run_dir.exclusive(str(out), resume=False):
        run_dir.prepare_run_dir(str(out), teacher.get_config("quick"), resume=False)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            assert run_dir.remove_unfinished(str(out))
            raise
    assert not out.exists()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path, capsys):
    from dex4d_jax.teacher import train  # noqa: PLC0415

    def interrupted(*args, **kwargs):
        raise loop.Interrupted("Interrupted. Last checkpoint: step 512. Continue with --resume")

    monkeypatch.setattr(train, "train_teacher", interrupted)
    code, text = run_cli(capsys, "train", "teacher", "--out", str(tmp_path / "run"))
    assert code == 130 and "Interrupted. Last checkpoint: step 512" in text
    assert "Traceback" not in text


def test_metrics_after_a_resume_have_no_repeated_step_and_the_time_counts_on(tmp_path):
    """A resumed run keeps the records up to its restore point, drops those past it (and a
    line cut short by a kill), skips its first evaluation when that step is logged, and counts
    its time on from the last record."""
    from dex4d_jax.training.loop import LoopState, Schedule, run_epochs  # noqa: PLC0415

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    records = [{"step": s, "time": 10.0 * (i + 1)} for i, s in enumerate((0, 100, 200, 300))]
    (out / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"step": 4')
    evaluated = []

    def epoch(state):
        return LoopState(None, state.key, state.env_steps + 100), {"training/sps": 1e9}, True

    def evaluate(state):
        evaluated.append(state.env_steps)
        return {"episode_reward": 0.0, "success_rate": 0.0}

    state = LoopState(None, np.zeros(2, np.uint32), 200)
    run_epochs(str(out), state, Schedule(100, 1, 4), epoch, lambda *a: None, evaluate,
               lambda step, m: "diverged", progress=False, start_step=200)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 100, 200, 300, 400]
    assert evaluated == [300, 400]  # not 200 again
    assert lines[3]["time"] > 30.0 and lines[4]["time"] > lines[3]["time"]


def test_interrupted_training_says_where_to_resume(tmp_path):
    from dex4d_jax.training.loop import LoopState, Schedule, run_epochs  # noqa: PLC0415

    def epoch(state):
        raise KeyboardInterrupt

    with pytest.raises(loop.Interrupted, match="Continue with --resume"):
        run_epochs(str(tmp_path), LoopState(None, np.zeros(2, np.uint32), 0), Schedule(1, 1, 2),
                   epoch, lambda *a: None, lambda s: {"episode_reward": 0, "success_rate": 0},
                   lambda step, m: "", progress=False)


def test_checkpoint_errors_are_short(tmp_path):
    bad = tmp_path / f"{1000:012d}"
    (bad / "state").mkdir(parents=True)
    (bad / "_CHECKPOINT_METADATA").write_text("not json")
    (bad / "state" / "_METADATA").write_text("not json")
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.read_checkpoint(str(bad))
    assert len(str(err.value)) < 400 and str(bad) in str(err.value)
