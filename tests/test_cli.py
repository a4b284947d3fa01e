"""The `dex4d` command: clear errors on bad input, and nothing written is destroyed."""

import json
import os

import pytest

from dex4d_jax.experiments.configs import teacher
from dex4d_jax.training import run_dir

from helpers import assert_one_error_line, run_cli


def test_bad_choices_list_the_valid_ones(capsys, tmp_path):
    code, text = run_cli(capsys, "train", "teacher", "--encoder", "transformer", "--out", str(tmp_path))
    assert code == 2 and "paired" in text and "decoupled" in text
    code, text = run_cli(capsys, "train", "teacher", "--env", "ap2ap_hand", "--out", str(tmp_path))
    assert code == 2 and "ap2ap_wrench" in text
    code, text = run_cli(capsys, "train", "teacher", "--out", str(tmp_path), "--set", "env.success_treshold=1")
    assert code == 2 and "did you mean env.success_threshold" in text
    code, text = run_cli(capsys, "train", "teacher")
    assert code == 2 and "--out" in text


def test_existing_output_directory_is_refused_and_kept(capsys, tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("precious")
    code, text = run_cli(capsys, "train", "teacher", "--out", str(tmp_path))
    assert code == 2 and "already exists" in text
    assert keep.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_resume_without_a_run_or_checkpoint_fails_clearly(capsys, tmp_path):
    code, text = run_cli(capsys, "train", "teacher", "--resume", "--out", str(tmp_path / "none"))
    assert code == 2 and "config.json" in text
    # A run whose setup was interrupted (config.json, no checkpoint yet) is resumable: it
    # starts from step 0 with its saved config.
    config = teacher.get_config("quick")
    run_dir.prepare_run_dir(str(tmp_path / "run"), config, resume=False)
    saved, step, path = run_dir.prepare_run_dir(str(tmp_path / "run"), None, resume=True,
                                                log=lambda _: None)
    assert (step, path) == (0, None) and saved.to_dict() == config.to_dict()


def test_corrupt_checkpoint_is_reported(tmp_path):
    config = teacher.get_config("quick")
    run = tmp_path / "run"
    run_dir.prepare_run_dir(str(run), config, resume=False)
    bad = run / "checkpoints" / "000000001000"
    (bad / "state").mkdir(parents=True)
    (bad / "_CHECKPOINT_METADATA").write_text("not json")
    (bad / "state" / "_METADATA").write_text("not json")
    with pytest.raises(RuntimeError, match="corrupt"):
        run_dir.prepare_run_dir(str(run), None, resume=True)
    # Saves that never completed (orbax's tmp folder, or no commit metadata) are skipped.
    (run / "checkpoints" / "000000002000").mkdir()
    tmp = run / "checkpoints" / "000000003000.orbax-checkpoint-tmp-17"
    tmp.mkdir()
    (tmp / "_CHECKPOINT_METADATA").write_text("{}")
    assert [s for s, _ in run_dir.list_checkpoints(str(run))] == [1000]


def test_init_from_needs_a_checkpoint_and_a_new_run(capsys, tmp_path):
    code, text = run_cli(capsys, "train", "teacher", "--out", str(tmp_path / "new"),
                         "--init-from", str(tmp_path / "missing"))
    assert code == 2 and "dex4d: error:" in text and "missing" in text
    assert not (tmp_path / "new").exists()  # nothing created for a run that cannot start
    code, text = run_cli(capsys, "train", "teacher", "--resume", "--out", str(tmp_path),
                         "--init-from", str(tmp_path))
    assert code == 2 and "--init-from starts a new run" in text


def test_resume_refuses_a_different_config(tmp_path):
    config = teacher.get_config("quick")
    run_dir.prepare_run_dir(str(tmp_path), config, resume=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["network"]["encoder"] == "paired"
    other = teacher.get_config("quick")
    other.network.encoder = "mlp"
    with pytest.raises(run_dir.RunDirError, match="different run"):
        run_dir.prepare_run_dir(str(tmp_path), other, resume=True)


def test_a_usage_error_shows_the_commands_own_usage(capsys):
    code, text = run_cli(capsys, "scene", "--object", "teapot")
    assert_one_error_line(code, text, "teapot")
    assert "usage: dex4d scene" in text and "{train,export" not in text


@pytest.mark.parametrize("value, named", [("foo", "MUJOCO_GL='foo'"),
                                          ("osmesa", "libosmesa6"), ("egl", "libegl1")])
def test_an_unusable_mujoco_gl_is_one_line(value, named, monkeypatch):
    """MuJoCo fails with a traceback at import on these; dex4d says what to do first."""
    from dex4d_jax.experiments.commands import common

    monkeypatch.setattr(common.ctypes.util, "find_library", lambda name: None)
    problem = common.gl_setting_problem({"MUJOCO_GL": value})
    assert problem is not None and named in problem
    assert common.gl_setting_problem({}) is None
    assert common.gl_setting_problem({"MUJOCO_GL": "disable"}) is None
