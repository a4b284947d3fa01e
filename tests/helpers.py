"""Test helpers: offscreen rendering in a fresh Python process, and running the CLI."""

import os
import subprocess
import sys
import textwrap

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_headless(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs Python in a fresh process (MuJoCo picks its GL backend once, at import)."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def skip_without_gl() -> None:
    """Skips the calling test, saying why, when no OpenGL context can be created."""
    probe = run_headless("""
        import mujoco
        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    """)
    if probe.returncode != 0:
        pytest.skip(f"no OpenGL backend for offscreen rendering: {probe.stderr.strip()[-300:]}")


def yellow_pixels(image):
    """[H, W] bool: the pixels of an RGB frame in the drawn current points' yellow
    (`dex4d_jax.viz.video.CURRENT_RGBA`, glowing: unshaded)."""
    return (image[..., 0] > 180) & (image[..., 1] > 180) & (image[..., 2] < 100)


def magenta_pixels(image):
    """[H, W] bool: the pixels in the drawn target points' magenta (`TARGET_RGBA`)."""
    return (image[..., 0] > 180) & (image[..., 1] < 100) & (image[..., 2] > 180)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Runs `dex4d ARGV` in-process; returns (exit code, stdout + stderr)."""
    from dex4d_jax.experiments import cli  # noqa: PLC0415

    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out + out.err


def envs_of(config) -> tuple:
    """(training env, evaluation env) of a run config, built as the command line builds them."""
    from dex4d_jax import envs  # noqa: PLC0415

    return envs.from_run_config(config), envs.from_run_config(config, evaluation=True)


def train_teacher(config, out: str, resume: bool = False, **kwargs):
    """`teacher.train.train_teacher` with the environments the command line would build (from
    `config`, or on resume from the run's saved config).
    """
    from dex4d_jax.teacher import train  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    source = run_dir.read_run_config(out) if config is None else config
    return train.train_teacher(config, out, *envs_of(source), resume=resume, **kwargs)


def train_student(config, out: str, resume: bool = False, **kwargs):
    """`student.train.train_student` with the environments the command line would build."""
    from dex4d_jax.student import train  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    source = run_dir.read_run_config(out) if config is None else config
    return train.train_student(config, out, *envs_of(source), resume=resume, **kwargs)


def folder_files(folder) -> dict:
    """{relative path: bytes} of every file under `folder` (to assert nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return out


def assert_one_error_line(code, text, *named, forbidden=()):
    """Exit code 2 and exactly one short `dex4d: error:` line naming each of `named`, with no
    traceback (nor any of `forbidden`) in the output."""
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("dex4d: error:")]
    assert len(errors) == 1 and len(errors[0]) < 500, text
    for bad in ("Traceback", "Event loop is closed", *forbidden):
        assert bad not in text, text
    for name in named:
        assert name in errors[0], (name, text)


def pressed_into_index_pad(scene):
    """Native (model, data) of object 0 pressed 3 mm up into the index fingertip pad of the
    grasp-ready hand, after mj_forward (the fingertip-force tests' shared setup)."""
    import mujoco
    import numpy as np

    from dex4d_jax import robot

    model = scene.native_model(0)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(robot.GRASP_READY_KEY).id)
    mujoco.mj_forward(model, data)
    pad = model.geom("if_tip_pad").id
    rot = data.geom_xmat[pad].reshape(3, 3)
    bottom = data.geom_xpos[pad, 2] - np.abs(rot[2]) @ model.geom_size[pad]
    top = float(scene.keypoints[0][:, 2].max())
    i = robot.NUM_JOINTS
    data.qpos[i:i + 3] = [data.geom_xpos[pad, 0], data.geom_xpos[pad, 1], bottom + 0.003 - top]
    data.qpos[i + 3:i + 7] = [1, 0, 0, 0]
    mujoco.mj_forward(model, data)
    return model, data


def native_fingertip_forces(model, data):
    """[4, 3] world-frame forces of the object on each robot.FINGERTIP_SITES body, summed over
    native MuJoCo's contacts with mj_contactForce (the reference the MJX decoders match)."""
    import mujoco
    import numpy as np

    from dex4d_jax import robot

    obj = model.body(robot.OBJECT_BODY).id
    forces = np.zeros((4, 3))
    for f, site in enumerate(robot.FINGERTIP_SITES):
        tip = model.site_bodyid[model.site(site).id]
        for c in range(data.ncon):
            contact = data.contact[c]
            b1, b2 = model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]
            force = np.zeros(6)
            mujoco.mj_contactForce(model, data, c, force)
            world = contact.frame.reshape(3, 3).T @ force[:3]
            if (b1, b2) == (obj, tip):
                forces[f] += world
            elif (b1, b2) == (tip, obj):
                forces[f] -= world
    return forces


def make_wrench_student_run(run, preset: str = "quick"):
    """A wrench student run folder at `run` (a pathlib.Path): config.json and one DAgger
    checkpoint of a `preset`-sized network with random weights, each nudged off its
    initialisation (zero biases would hide mirror mistakes in an export).

    Returns:
      (run, network, params).
    """
    import json  # noqa: PLC0415

    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import optax  # noqa: PLC0415
    from dex4d_jax.experiments.configs import student  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.export import policy as export  # noqa: PLC0415
    from dex4d_jax.student import dagger  # noqa: PLC0415
    from dex4d_jax.student.policy import make_student  # noqa: PLC0415
    from dex4d_jax.training.loop import LoopState  # noqa: PLC0415

    config = student.get_config(preset)
    config.teacher = {"path": "/nonexistent/teacher", "step": 0}
    config.env = envs.run_env_config("ap2ap_wrench").to_dict()
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    net = make_student(config.network, 6)
    x = export.random_student_inputs({"joint_pos": 0, "joint_vel": 6, "action": 6,
                                      "points": 64}, 1)
    params = net.init(jax.random.PRNGKey(3), *x.values())
    params = jax.tree_util.tree_map(lambda p: p + 0.02 * jnp.sin(jnp.arange(p.size).reshape(
        p.shape)), params)
    state = LoopState(dagger.StudentTrainingState(optax.adam(1e-4).init(params), params),
                      np.zeros(2, np.uint32), 0)
    dagger.save_checkpoint(str(run / "checkpoints"), state, 0)
    return run, net, params


def benchmark_setup(suite, env_name: str, env_config):
    """`rollout.make_setup` of the environment `rollout.env_arguments` describes, as
    `dex4d eval` builds it."""
    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.benchmark import rollout  # noqa: PLC0415

    config, kwargs = rollout.env_arguments(suite, env_name, env_config)
    env = envs.build(env_name, config, init_kwargs=kwargs)
    return rollout.make_setup(suite, env_name, env, env_config)


def robot_student_metadata(sizes: dict) -> dict:
    """The `dex4d.*` metadata of a 22-joint ap2ap student, from the robot's facts alone
    (ap2ap's deploy_info without building the environment and its object library)."""
    from dex4d_jax import contract, envs, robot, scene_models  # noqa: PLC0415

    ranges = robot.joint_ranges(scene_models.robot_scene_spec().compile())
    info = {"joint_names": robot.JOINT_NAMES, "control_frequency_hz": 30.0,
            "action_mapping": {"kind": "arm_delta_hand_absolute", "num_arm": 6,
                               "arm_step": 10 / 60, "joint_low": ranges[:, 0].tolist(),
                               "joint_high": ranges[:, 1].tolist()},
            "points_origin_in_world": [0, 0, 0.6], "success_threshold": 0.05, "hold_steps": 30}
    return contract.metadata(contract.STUDENT_CONTRACT, "ap2ap", {}, info, sizes,
                             envs.get_default_config("ap2ap").to_dict())
