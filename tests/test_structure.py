"""The project's import rules and its one way to configure a run.

Import rules (checked on the source, and by importing in a fresh interpreter):
  - nothing under training/, teacher/, student/, networks/ or export/ imports the environments
    (trainers are given theirs);
  - teacher/ and student/ never import each other.
(deploy/ importing no JAX is checked in tests/test_deploy.py.)
"""

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest
from dex4d_jax.experiments import configs
from dex4d_jax.experiments.configs import student, teacher
from helpers import run_cli

from dex4d_jax import envs

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ("training", "teacher", "student", "networks", "export")


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports (at any depth, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _files(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / "dex4d_jax" / package).glob("*.py"))


@pytest.mark.parametrize("package", LIBRARY)
def test_library_packages_do_not_import_the_environments(package):
    for path in _files(package):
        bad = {m for m in _imports(path) if m == "dex4d_jax.envs" or
               m.startswith("dex4d_jax.envs.") or m == "envs"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_teacher_and_student_do_not_import_each_other():
    for package, other in (("teacher", "student"), ("student", "teacher")):
        for path in _files(package):
            bad = {m for m in _imports(path) if m.startswith(f"dex4d_jax.{other}")}
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_library_modules_import_with_the_environments_unimportable():
    modules = [f"dex4d_jax.{p}.{f.stem}" for p in LIBRARY for f in _files(p)
               if f.stem != "__init__"]
    script = ("import sys\nsys.modules['dex4d_jax.envs'] = None\n"
              + "".join(f"import {m}\n" for m in modules) + "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_no_module_is_over_about_600_lines():
    long = [(str(p.relative_to(ROOT)), n) for folder in ("dex4d_jax", "envs", "experiments")
            for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 620]
    assert not long, long


# -- one way to configure a run ------------------------------------------------------------------


def test_teacher_config_holds_every_environment_setting():
    config = teacher.get_config("quick")
    defaults = envs.get_default_config("ap2ap_wrench").to_dict()
    assert {k: v for k, v in config.env.to_dict().items() if k != "name"} == defaults
    # A curriculum stage is written into the config itself.
    stage2 = teacher.get_config("smoke", "ap2ap", stage=2)
    assert stage2.env.arm_speed_scale == 1.5 and stage2.env.families == ("bottle",)
    assert stage2.env.num_objects == 16 and stage2.ppo.learning_rate == 3e-4


def test_settings_reach_the_environment_and_keep_types():
    config = configs.apply_settings(teacher.get_config("quick"), configs.parse_assignments(
        ["env.reward_weights.goal=2", "ppo.learning_rate=1e-4", "env.num_objects=3"]))
    assert config.ppo.learning_rate == 1e-4 and isinstance(config.ppo.learning_rate, float)
    env = envs.from_run_config(config)
    assert env.config.reward_weights.goal == 2.0 and env.config.num_objects == 3
    # The original is untouched.
    assert teacher.get_config("quick").env.reward_weights.goal == 1.0


@pytest.mark.parametrize("setting, message", [
    ("ppo.nope=1", "ppo.learning_rate"),                 # unknown key: the section's keys
    ("env.reward_weights.nope=1", "env.reward_weights.goal"),
    ("ppo.num_envs=abc", "ppo.num_envs"),                 # wrong type
    ("ppo.num_timesteps=1.5", "ppo.num_timesteps"),
    ("ppo", "SECTION.KEY=VALUE"),                          # not an assignment
])
def test_bad_settings_are_refused_naming_the_key(setting, message):
    with pytest.raises(configs.SettingError, match=message.replace(".", r"\.")):
        configs.apply_settings(teacher.get_config("quick"),
                               configs.parse_assignments([setting]))


def test_student_environment_comes_from_the_teacher():
    with pytest.raises(configs.SettingError, match="env section"):
        configs.apply_settings(student.get_config("quick"), {"env.num_objects": 2},
                               frozen=("env", "teacher"))
    typed = student.get_config("quick")  # a typed None: dagger.max_grad_norm
    with pytest.raises(configs.SettingError, match="max_grad_norm"):
        configs.apply_settings(typed, {"dagger.max_grad_norm": "abc"})
    assert configs.apply_settings(typed, {"dagger.max_grad_norm": 1}).dagger.max_grad_norm == 1.0


def test_cli_settings_are_checked_before_anything_is_written(capsys, tmp_path):
    out = tmp_path / "run"
    for setting in ("ppo.nope=1", "env.num_objects=many"):
        code, text = run_cli(capsys, "train", "teacher", "--out", str(out), "--set", setting)
        assert code == 2 and setting.split("=")[0] in text, text
        assert not out.exists()


def test_legacy_run_configs_are_still_read():
    """Runs written before the environment's settings were stored whole hold
    env = {name, overrides}; they resume and distil as before."""
    config = teacher.get_config("quick")
    config.env = {"name": "ap2ap_wrench", "overrides": {"num_objects": 3}}
    assert envs.from_run_config(config).config.num_objects == 3


def test_config_json_is_the_resolved_config(tmp_path):
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    config = configs.apply_settings(teacher.get_config("quick"), {"env.num_objects": 3})
    run_dir.prepare_run_dir(str(tmp_path / "run"), config, resume=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["env"]["num_objects"] == 3 and saved["env"]["name"] == "ap2ap_wrench"
    assert run_dir.read_run_config(str(tmp_path / "run")).to_dict() == config.to_dict()


# -- library summaries the command line prints ---------------------------------------------------


def test_family_table_counts_the_library():
    from dex4d_jax import object_library  # noqa: PLC0415

    library = object_library.ycb_objects()
    lines = object_library.family_table(library).splitlines()
    rows = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert rows.pop("total") == len(library) == sum(rows.values())
    assert library.find("mug") == list(library.names).index("mug")
    assert library.find("3") == 3
    with pytest.raises(KeyError, match="apple"):
        library.find("teapot")


def test_collision_pair_counts_and_scene_description():
    from dex4d_jax.envs import robot_scene  # noqa: PLC0415
    from mujoco.mjx._src import collision_driver  # noqa: PLC0415

    from dex4d_jax import object_library, robot  # noqa: PLC0415

    scene = robot_scene.build_scene_objects(object_library.ycb_objects().subset([0]))
    counts = robot_scene.collision_pair_counts(scene.mj_model)
    assert sum(counts.values()) == len(list(collision_driver.geom_pairs(scene.mj_model)))
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    text = robot_scene.describe(scene.mj_model, "default")
    assert f"{scene.mj_model.nu} actuators" in text and robot.JOINT_NAMES[0] in text


def test_commands_do_not_load_jax_for_help():
    """`dex4d --help` and `dex4d run --help` import neither JAX nor the environments."""
    for argv in (["--help"], ["run", "--help"]):
        script = ("import sys\nsys.modules['jax'] = None\nsys.modules['dex4d_jax.envs'] = None\n"
                  "from dex4d_jax.experiments import cli\n"
                  f"try:\n    cli.main({argv!r})\nexcept SystemExit as e:\n"
                  "    sys.exit(e.code)\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ})
        assert done.returncode == 0, done.stderr[-2000:]
        assert "usage: dex4d" in done.stdout
