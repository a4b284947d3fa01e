"""Deploy runtime: no JAX, Eq. 4 goal advancing, action mapping, guards, the simulated camera,
and native MuJoCo against MJX (sim-to-sim)."""

import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from dex4d_jax.envs import load

import dex4d_jax.deploy
from dex4d_jax import contract, robot, sim2sim
from dex4d_jax.deploy import runtime, sim, sim_setup
from dex4d_jax.deploy.policy import OnnxPolicy
from dex4d_jax.export import onnx_graph
from dex4d_jax.export import policy as export
from dex4d_jax.networks.student import StudentNetwork
from dex4d_jax.tracks import formats
from tests.helpers import (
    assert_one_error_line,
    folder_files,
    magenta_pixels,
    robot_student_metadata,
    run_cli,
    skip_without_gl,
    yellow_pixels,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wrench():
    return load("ap2ap_wrench")


@pytest.fixture(scope="module")
def untrained_policy(wrench, tmp_path_factory):
    """An untrained wrench student as an ONNX file with the real metadata."""
    sizes = {"joint_pos": 0, "joint_vel": 6, "action": 6, "points": 64}
    net = StudentNetwork(action_size=6, width=32, num_layers=1, num_heads=4,
                         point_hidden=(32, 32))
    params = net.init(jax.random.PRNGKey(0), *export.random_student_inputs(sizes, 1).values())
    meta = contract.metadata(contract.STUDENT_CONTRACT, "ap2ap_wrench", {}, wrench.deploy_info,
                             sizes, wrench.config.to_dict())
    model = onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params),
                                     {"width": 32, "num_layers": 1, "num_heads": 4,
                                      "arch": "transformer", "encoder": "paired"}, sizes, meta)
    path = tmp_path_factory.mktemp("policy") / "untrained.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def robot_policy(tmp_path_factory):
    """An untrained 22-joint (ap2ap) student as an ONNX file, and a two-frame track of 64
    points lifted by 10 cm above the table in front of the hand."""
    sizes = {"joint_pos": 22, "joint_vel": 22, "action": 22, "points": 64}
    net = StudentNetwork(action_size=22, width=32, num_layers=1, num_heads=4,
                         point_hidden=(32, 32))
    params = net.init(jax.random.PRNGKey(0), *export.random_student_inputs(sizes, 1).values())
    meta = robot_student_metadata(sizes)
    mapping = json.loads(meta["dex4d.action_mapping"])
    ranges = np.column_stack([mapping["joint_low"], mapping["joint_high"]])  # [22, 2] rad
    model = onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params),
                                     {"width": 32, "num_layers": 1, "num_heads": 4,
                                      "arch": "transformer", "encoder": "paired"}, sizes, meta)
    folder = tmp_path_factory.mktemp("robot_policy")
    path = folder / "robot.onnx"
    path.write_bytes(model.SerializeToString())
    pts = np.random.default_rng(0).uniform(-0.03, 0.03, (64, 3))
    frames = np.stack([pts + [0.45, 0, 0.64], pts + [0.45, 0, 0.74]]).astype(np.float32)
    tracks = folder / "t.npz"
    formats.save_tracks3d(tracks, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
    return str(path), str(tracks), frames, ranges


# Run in a fresh interpreter in which importing jax, jaxlib or flax raises ImportError.
_NO_JAX = """
import sys
sys.modules.update(jax=None, jaxlib=None, flax=None)
"""
_JAX_MODULES = ("(v is not None and m.split('.')[0] in ('jax', 'jaxlib', 'flax') "
                "for m, v in list(sys.modules.items()))")


def _without_jax(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_JAX + textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_deploy_imports_no_jax(untrained_policy):
    """Every module under dex4d_jax/deploy/, and the contract, imports in an interpreter where
    importing jax raises; a policy loads and runs there."""
    names = ["dex4d_jax.contract"] + [
        f"dex4d_jax.deploy.{m.name}" for m in pkgutil.iter_modules(dex4d_jax.deploy.__path__)]
    assert "dex4d_jax.deploy.sim_setup" in names
    done = _without_jax(f"""
        import importlib
        import numpy as np
        for name in {names!r}:
            importlib.import_module(name)
        from dex4d_jax.deploy import policy
        p = policy.OnnxPolicy({untrained_policy!r})
        out = p(np.zeros(0), np.zeros(6), np.zeros(6), np.zeros((64, 6)), np.ones(64, bool))
        assert out["action"].shape == (6,)
        assert not any({_JAX_MODULES})
        print("ok")
    """)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def _run_args(kind: str, untrained_policy, robot_policy, tmp_path, wrench) -> list[str]:
    if kind == "wrench":
        kp = np.asarray(wrench.keypoints[0])
        frames = np.stack([kp + [0, 0, 0.7], kp + [0.05, 0, 0.75]]).astype(np.float32)
        tracks = tmp_path / "t.npz"
        formats.save_tracks3d(tracks, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
        return ["run", "--onnx", untrained_policy, "--tracks", str(tracks), "--robot", "sim",
                "--object", "0", "--pose", "0", "0", "0.7", "1", "0", "0", "0", "--steps", "12"]
    path, tracks, _, _ = robot_policy
    return ["run", "--onnx", path, "--tracks", tracks, "--robot", "sim", "--object",
            "box:0.03,0.03,0.03", "--pose", "0.45", "0", "0.64", "1", "0", "0", "0", "--steps",
            "5"]


@pytest.mark.parametrize("kind", ["wrench", "robot"])
def test_dex4d_run_sim_without_jax(kind, untrained_policy, robot_policy, wrench, tmp_path,
                                   capsys):
    """`dex4d run --robot sim` end to end where importing jax raises: the simulation is built
    from the policy file alone, and the run's report is the one a process with JAX writes."""
    argv = _run_args(kind, untrained_policy, robot_policy, tmp_path, wrench)
    code, text = run_cli(capsys, *argv, "--report", str(tmp_path / "with_jax.json"))
    assert code == 1 and "timeout after" in text, text  # untrained: no success
    done = _without_jax(f"""
        from dex4d_jax.experiments.cli import main
        code = main({argv + ["--report", str(tmp_path / "no_jax.json")]!r})
        assert not any({_JAX_MODULES}), sorted(sys.modules)
        sys.exit(code)
    """)
    assert done.returncode == 1 and "timeout after" in done.stdout, done.stdout + done.stderr
    with_jax = json.loads((tmp_path / "with_jax.json").read_text())
    no_jax = json.loads((tmp_path / "no_jax.json").read_text())
    assert no_jax == with_jax


def test_run_video_draws_the_tracked_and_target_points(untrained_policy, wrench, tmp_path):
    """`dex4d run --robot sim --video`, without JAX: a frame per tick, each showing the
    tracked points (yellow) and the target frame's points (magenta)."""
    skip_without_gl()
    argv = _run_args("wrench", untrained_policy, None, tmp_path, wrench)
    video = tmp_path / "run.mp4"
    done = _without_jax(f"""
        from dex4d_jax.experiments.cli import main
        code = main({argv + ["--video", str(video)]!r})
        assert not any({_JAX_MODULES}), sorted(sys.modules)
        sys.exit(code)
    """)
    assert done.returncode == 1 and f"Wrote {video}" in done.stdout, done.stdout + done.stderr
    import imageio.v2 as imageio

    with imageio.get_reader(str(video)) as reader:
        frames = np.stack(list(reader.iter_data()))
    assert frames.shape == (12, 480, 640, 3)  # --steps 12, all of them (no success)
    for frame in frames[[0, -1]]:
        assert yellow_pixels(frame).sum() > 20 and magenta_pixels(frame).sum() > 20


def test_a_file_without_the_env_config_loads_but_cannot_run_in_sim(untrained_policy, tmp_path,
                                                                   capsys):
    """Files exported before dex4d.env_config existed: the policy loads (a robot can run it);
    `dex4d run --robot sim` asks for a re-export (exit 2)."""
    import onnx

    model = onnx.load(untrained_policy)
    keep = [p for p in model.metadata_props if p.key != "dex4d.env_config"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    assert OnnxPolicy(str(old)).info.env_config is None
    frames = np.zeros((2, 8, 3), np.float32)
    frames[:, :, 2] = 0.7
    tracks = tmp_path / "t.npz"
    formats.save_tracks3d(tracks, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
    code, text = run_cli(capsys, "run", "--onnx", str(old), "--tracks", str(tracks))
    assert code == 2 and "re-export" in text and "env_config" in text, text


def test_goal_advancer_eq4():
    points = np.zeros((3, 4, 3))
    points[1, :, 0] = 0.10
    points[2, :, 0] = 0.20
    visible = np.ones((3, 4), bool)
    goals = runtime.GoalAdvancer(points, visible, threshold=0.02)
    assert goals.index == 1
    current = np.zeros((4, 3))
    assert goals.update(current, np.ones(4, bool)) == pytest.approx(0.10)
    assert goals.index == 1
    current[:, 0] = 0.09  # 1 cm from frame 1: advance, d_t now to frame 2
    assert goals.update(current, np.ones(4, bool)) == pytest.approx(0.11)
    assert goals.index == 2
    current[:, 0] = 0.195
    assert goals.update(current, np.ones(4, bool)) == pytest.approx(0.005)
    assert goals.index == 2 and goals.at_last  # never past the last frame
    # Only points visible in both count; none visible gives None, never NaN.
    current[0, 0] = 5.0
    mask = np.array([False, True, True, True])
    assert goals.update(current, mask) == pytest.approx(0.005)
    assert goals.update(current, np.zeros(4, bool)) is None
    with pytest.raises(ValueError, match=r"\[T, N, 3\]"):
        runtime.GoalAdvancer(np.zeros((3, 4)), visible, 0.02)


def test_action_mapping_and_guard():
    low = -np.ones(8)
    high = np.ones(8)
    low[6:], high[6:] = 0.0, 2.0
    mapper = runtime.ActionMapper({"kind": "arm_delta_hand_absolute", "num_arm": 6,
                                   "arm_step": 0.1, "joint_low": low.tolist(),
                                   "joint_high": high.tolist()})
    previous = np.array([0.0, 0.5, 0.95, -0.95, 0, 0, 1.0, 1.0])
    action = np.array([1.0, -1.0, 1.0, -1.0, 0.5, 3.0, -1.0, 0.5])
    cmd = mapper(action, previous)
    # arm: previous + 0.1 a (a clipped to 1), clipped to the range; hand: absolute mapping.
    np.testing.assert_allclose(cmd, [0.1, 0.4, 1.0, -1.0, 0.05, 0.1, 0.0, 1.5])
    guard = runtime.SafetyGuard(low, high, max_step=0.2)
    np.testing.assert_allclose(guard(cmd, previous), [0.1, 0.4, 1.0, -1.0, 0.05, 0.1, 0.8, 1.2])
    with pytest.raises(ValueError, match="non-finite"):
        guard(np.full(8, np.nan), previous)
    twist = runtime.ActionMapper({"kind": "twist", "max_lin_speed": 0.3, "max_ang_speed": 2.0})
    np.testing.assert_allclose(twist(np.array([1, -2, 0.5, 1, 0, -1.0]), None),
                               [0.3, -0.3, 0.15, 2.0, 0.0, -2.0])


def test_point_selector_keeps_slots_and_frame():
    selector = runtime.PointSelector(100, 64, seed=0)
    current = np.random.default_rng(0).normal(size=(100, 3))
    target = current + 1.0
    visible = np.ones(100, bool)
    paired, mask = selector(current, target, visible, np.array([0.0, 0.0, 0.6]))
    assert mask.all() and paired.shape == (64, 6)
    np.testing.assert_allclose(paired[:, 3:] - paired[:, :3], 1.0, atol=1e-6)
    first = selector.order[0]
    np.testing.assert_allclose(paired[0, :3], current[first] - [0, 0, 0.6], atol=1e-6)
    # Fewer visible points than slots: the rest hidden and zero; a visible point keeps its slot.
    visible[selector.order[1:60]] = False
    paired2, mask2 = selector(current, target, visible, np.zeros(3))
    assert mask2.sum() == 41 and not paired2[~mask2].any()
    np.testing.assert_allclose(paired2[0, :3], current[first], atol=1e-6)


def test_simulated_camera_sees_the_near_side_only(wrench):
    box = sim_setup.box_object([0.03, 0.03, 0.03])
    model = sim_setup.wrench_model(wrench.config.sim_dt, box)
    s = sim.WrenchSim(model, wrench.dt)
    s.set_object_pose(np.array([0.0, 0.0, 0.75]), np.array([1.0, 0, 0, 0]))
    # Face centres in the object frame: -y faces the camera (at y = -0.75), +y faces away.
    faces = np.array([[0, -0.03, 0], [0, 0.03, 0], [0, 0, 0.03], [0, 0, -0.03],
                      [0.15, 0, 0]])  # the last is outside the box: in the open, visible
    cam = sim.CameraPoints(s, faces, "front")
    vis = cam.visibility(cam.true_points())
    assert vis.tolist() == [True, False, True, False, True]
    # A point outside the field of view is not visible.
    assert not cam.visibility(np.array([[5.0, 0.0, 0.75]]))[0]


def test_wrench_native_mujoco_agrees_with_mjx(wrench):
    """Free flight (the object never touches the table): position within 1e-5 m, rotation
    within 2e-3 rad over 100 control steps (5 s); measured 2.4e-7 m and 4.2e-4 rad (float32
    in MJX). Pressed into the table while turning for 2 s: within 2 cm and 0.3 rad; measured
    7 mm and 0.1 rad (MJX's and MuJoCo's contact solvers differ)."""
    rng = np.random.default_rng(0)
    free = np.clip(rng.normal(0, 0.5, (100, 6)), -1, 1)
    free[:, 2] = np.abs(free[:, 2]) * 0.3
    free[:10, 2] = 1.0
    contact = np.zeros((40, 6))
    contact[:, 0], contact[:, 2], contact[:, 3] = 0.3, -1.0, 0.5

    def errors(actions):
        r = sim2sim.compare_wrench(wrench, actions, seed=1)
        pos = np.abs(r["mjx"][:, :3] - r["native"][:, :3]).max()
        dot = np.abs(np.sum(r["mjx"][:, 3:] * r["native"][:, 3:], axis=1))
        return pos, 2 * np.arccos(np.clip(dot, 0, 1)).max(), r["native"][:, 2].min()

    pos, ang, zmin = errors(free)
    assert pos < 1e-5 and ang < 2e-3 and zmin > 0.64
    pos, ang, zmin = errors(contact)
    assert zmin < 0.64  # it did reach the table (top at 0.6 m)
    assert pos < 0.02 and ang < 0.3


@pytest.mark.slow
def test_robot_native_mujoco_agrees_with_mjx():
    """The xArm6 + LEAP hand following the same random-walk joint targets from the grasp-ready
    pose for 1 s (30 control steps). Before the hand first touches the object (8 steps): joint
    angles within 5e-3 rad (measured 7e-4). The contact knocks the object, differently in the
    two engines (its position differs by 4 cm by the end: contact is where MJX and MuJoCo
    differ), and the joints with it: within 0.05 rad throughout (measured 0.021), and back
    within 5e-3 rad over the last 10 steps (measured 1e-3) as the servos pull them to their
    targets."""
    from dex4d_jax.envs import robot_scene

    from dex4d_jax import object_library

    scene = robot_scene.build_scene_objects(object_library.load_library("train", 2, 0))
    model, data = robot_scene.grasp_ready_data(scene, 0)
    model.opt.timestep = 1 / 120
    ranges = robot.joint_ranges(model)
    rng = np.random.default_rng(0)
    targets = data.qpos[:22] + np.cumsum(rng.normal(0, 0.01, (30, 22)), 0)
    targets = np.clip(targets, ranges[:, 0], ranges[:, 1])
    r = sim2sim.compare_robot(model, data.qpos.copy(), targets, 1 / 30)
    joints = np.abs(r["mjx"][:, :22] - r["native"][:, :22]).max(axis=1)
    moved = np.abs(r["native"][-1, :22] - data.qpos[:22]).max()
    assert moved > 0.05, moved
    assert joints[:8].max() < 5e-3 and joints.max() < 0.05 and joints[-10:].max() < 5e-3, joints


def test_controller_stops_on_stale_or_empty_tracking(untrained_policy):
    policy = OnnxPolicy(untrained_policy)

    class Robot:
        holds = commands = 0

        def observe(self):
            return runtime.RobotState(np.zeros(0), np.zeros(6))

        def command(self, c):
            assert np.all(np.abs(c[:3]) <= 0.3 + 1e-9) and np.all(np.abs(c[3:]) <= 2 + 1e-9)
            self.commands += 1

        def hold(self):
            self.holds += 1

        def wait(self):
            pass

    track = np.zeros((2, 10, 3))
    track[1, :, 0] = 0.1
    now = [0.0]

    class Points:
        def __init__(self, visible, age):
            self.visible, self.age = visible, age

        def read(self):
            return runtime.PointFrame(np.zeros((10, 3)), self.visible, now[0] - self.age)

    for points, why in ((Points(np.zeros(10, bool), 0.0), "0 tracked points visible"),
                        (Points(np.ones(10, bool), 1.0), "stale")):
        robot = Robot()
        controller = runtime.Controller(policy, robot, points, track, np.ones((2, 10), bool),
                                        patience=5, clock=lambda: now[0])
        report = controller.run(100)
        assert report.status.startswith("stopped") and why in report.status
        assert report.steps == 5 and robot.holds == 5 and robot.commands == 0
        assert report.distances == [None] * 5
    robot = Robot()
    controller = runtime.Controller(policy, robot, Points(np.ones(10, bool), 0.0), track,
                                    np.ones((2, 10), bool), clock=lambda: now[0])
    report = controller.run(7)
    assert report.status == "timeout" and robot.commands == 7
    assert report.distances == [pytest.approx(0.1)] * 7


def test_run_cli(untrained_policy, wrench, tmp_path, capsys):
    kp = np.asarray(wrench.keypoints[0])
    frames = np.stack([kp + [0, 0, 0.7], kp + [0.05, 0, 0.75]]).astype(np.float32)
    tracks = tmp_path / "t.npz"
    formats.save_tracks3d(tracks, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
    report = tmp_path / "r.json"
    code, text = run_cli(capsys, "run", "--onnx", untrained_policy, "--tracks", str(tracks),
                         "--object", "0", "--pose", "0", "0", "0.7", "1", "0", "0", "0",
                         "--steps", "12", "--report", str(report))
    assert code == 1 and "timeout after 12 ticks" in text, text  # untrained: no success
    data = json.loads(report.read_text())
    assert len(data["distances"]) == 12 and data["distances"][0] == pytest.approx(
        np.linalg.norm([0.05, 0, 0.05]), abs=1e-5)
    for argv, message in (
            (["--tracks", str(tmp_path / "none.npz")], "not found"),
            (["--tracks", str(tracks), "--object", "box:1,2"], "box:HX,HY,HZ"),
            (["--tracks", str(tracks), "--object", "99"], "objects 0.."),
            (["--tracks", str(tracks), "--steps", "0"], "--steps must be positive")):
        code, text = run_cli(capsys, "run", "--onnx", untrained_policy, *argv)
        assert code == 2 and message in text, text
    code, text = run_cli(capsys, "run", "--onnx", str(tmp_path / "x.onnx"), "--tracks",
                         str(tracks))
    assert code == 2 and "not found" in text


def test_run_drives_the_arm_and_hand_within_limits(robot_policy):
    """An (untrained) 22-joint student on the xArm6 + LEAP scene through the loop `dex4d run
    --robot sim` runs (the command itself: test_dex4d_run_sim_without_jax): every command
    within the joint limits and at most `max_joint_step` from the previous one, and the robot
    moves."""
    path, _, frames, ranges = robot_policy
    policy = OnnxPolicy(path)
    s, camera = sim_setup.simulation(policy.info, [0.03, 0.03, 0.03])
    s.set_object_pose(np.array([0.45, 0, 0.64]), np.array([1.0, 0, 0, 0]))
    start = s.observe().joint_pos.copy()
    points = sim.CameraPoints(s, frames[0] - [0.45, 0, 0.64], camera)
    controller = runtime.Controller(policy, s, points, frames, np.ones((2, 64), bool),
                                    clock=s.time, max_joint_step=0.2)
    previous = start.astype(np.float64)
    for _ in range(10):
        assert controller.tick()[1] is None
        cmd = s.data.ctrl.copy()
        assert np.all(cmd >= ranges[:, 0] - 1e-9) and np.all(cmd <= ranges[:, 1] + 1e-9)
        assert np.abs(cmd - previous).max() <= 0.2 + 1e-9
        previous = cmd
        s.wait()
    assert np.abs(s.observe().joint_pos - start).max() > 0.05


# ----------------------------------------------------------------------------------------------
# Faults: a fake robot, point source and policy drive the Controller through each one.
# ----------------------------------------------------------------------------------------------

_NOW = 100.0  # the controller's clock in these tests (seconds), fixed
_ARM_LOW = np.array([-1.0] * 6 + [0.0, 0.0])
_ARM_HIGH = np.array([1.0] * 6 + [2.0, 2.0])
_STEP = 0.2  # max_joint_step


def _arm_info(hold_steps: int = 3) -> contract.PolicyInfo:
    """A 6-joint arm with a 2-joint hand: arm in [-1, 1] rad, hand in [0, 2] rad."""
    return contract.PolicyInfo(
        contract=contract.STUDENT_CONTRACT, version="test", env="fake", env_overrides={},
        joint_names=[f"arm{i}" for i in range(6)] + ["hand0", "hand1"],
        action_mapping={"kind": "arm_delta_hand_absolute", "num_arm": 6, "arm_step": 0.1,
                        "joint_low": _ARM_LOW.tolist(), "joint_high": _ARM_HIGH.tolist()},
        control_frequency_hz=20.0, num_points=64, points_origin_in_world=np.zeros(3),
        sizes={"joint_pos": 8, "joint_vel": 8, "action": 8, "points": 64},
        success_threshold=0.02, hold_steps=hold_steps, checkpoint="", step=0)


class FakePolicy:
    """OnnxPolicy's interface with scripted actions: `action_fn(call index) -> [A]`."""

    def __init__(self, info, action_fn):  # noqa: D107
        self.info, self.action_fn, self.calls = info, action_fn, 0

    @property
    def action_size(self):
        """A."""
        return int(self.info.sizes["action"])

    def __call__(self, joint_pos, joint_vel, last_action, paired_points, point_mask):
        """{"action": the scripted action}; the inputs must be finite."""
        assert np.all(np.isfinite(joint_pos)) and np.all(np.isfinite(paired_points))
        action = np.asarray(self.action_fn(self.calls), np.float32)
        self.calls += 1
        return {"action": action}


class CorruptedPolicy:
    """A real OnnxPolicy whose action entry 2 becomes `value` from call `after` on."""

    def __init__(self, policy, value, after):  # noqa: D107
        self.policy, self.value, self.after, self.calls = policy, value, after, 0
        self.info, self.action_size = policy.info, policy.action_size

    def __call__(self, *inputs):
        """The policy's outputs, the action corrupted."""
        out = dict(self.policy(*inputs))
        if self.calls >= self.after:
            out["action"] = out["action"].copy()
            out["action"][2] = self.value
        self.calls += 1
        return out


class FakeRobot:
    """A Robot recording its commands and holds.

    `faults` maps a method name to (the call from which it misbehaves, what it raises or, for
    observe, the joint positions it reports).
    """

    def __init__(self, joint_pos, faults=None):  # noqa: D107
        self.joint_pos = np.asarray(joint_pos, np.float64)
        self.faults = faults or {}
        self.commands, self.holds, self.observes, self.waits = [], 0, 0, 0

    def _fault(self, name, count):
        when, what = self.faults.get(name, (None, None))
        if when is not None and count >= when:
            if isinstance(what, BaseException):
                raise what
            return what
        return None

    def observe(self):
        """`joint_pos`, or the faulty joints; zero velocities."""
        bad = self._fault("observe", self.observes)
        self.observes += 1
        pos = self.joint_pos if bad is None else bad
        return runtime.RobotState(pos.copy(), np.zeros(len(self.joint_pos)))

    def command(self, c):
        """Records the command."""
        self._fault("command", len(self.commands))
        self.commands.append(np.array(c, np.float64))

    def hold(self):
        """Counts holds."""
        self.holds += 1
        self._fault("hold", 0)

    def wait(self):
        """Returns at once."""
        self._fault("wait", self.waits)
        self.waits += 1


class FakePoints:
    """A PointSource: `frame_fn(read index) -> PointFrame` (or it raises)."""

    def __init__(self, frame_fn):  # noqa: D107
        self.frame_fn, self.reads = frame_fn, 0

    def read(self):
        """The next scripted frame."""
        frame = self.frame_fn(self.reads)
        self.reads += 1
        return frame


def _track():
    """Two frames of 10 points, the target 10 cm along x from the start."""
    track = np.zeros((2, 10, 3))
    track[1, :, 0] = 0.1
    return track, np.ones((2, 10), bool)


def _frame(points=None, visible=None, timestamp=_NOW):
    return runtime.PointFrame(np.zeros((10, 3)) if points is None else points,
                              np.ones(10, bool) if visible is None else visible, timestamp)


def _controller(policy, robot, frame_fn, **kwargs):
    track, visible = _track()
    return runtime.Controller(policy, robot, FakePoints(frame_fn), track, visible,
                              max_joint_step=_STEP, clock=lambda: _NOW, **kwargs)


def _assert_safe(robot, start):
    """Every command within the limits and within _STEP of the previous (first: `start`)."""
    previous = np.asarray(start, np.float64)
    for c in robot.commands:
        assert np.all(c >= _ARM_LOW - 1e-9) and np.all(c <= _ARM_HIGH + 1e-9), c
        assert np.abs(c - previous).max() <= _STEP + 1e-9, (c, previous)
        previous = c


_START = np.array([0.0, 0.5, 0.95, -0.95, 0.0, 0.0, 1.0, 1.0])
_OUTWARD = np.array([1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0])  # towards the limits


def _fresh(i):
    """Fresh tracking at the start."""
    return _frame()


def _raise(error):
    """A frame function that raises `error` from the 3rd read on."""

    def fn(i):
        if i >= 2:
            raise error
        return _frame()
    return fn


_FAULTS = [  # (name, FakeRobot faults, frame function, action function, status)
    ("source raises", None, _raise(ValueError("camera unplugged")), None,
     "stopped: point source raised ValueError: camera unplugged"),
    ("points of the wrong shape", None,
     lambda i: _frame() if i < 2 else _frame(points=np.zeros((9, 3)), visible=np.ones(9, bool)),
     None, "stopped: point source gave points (9, 3)"),
    ("visible not boolean", None,
     lambda i: _frame() if i < 2 else _frame(visible=np.ones(10)), None,
     "stopped: point source gave points (10, 3) and visible (10,) float64"),
    ("frame is not a frame", None, lambda i: _frame() if i < 2 else None, None,
     "stopped: point source gave an unreadable frame"),
    ("policy returns NaN", None, _fresh,
     lambda i: _OUTWARD if i < 2 else np.full(8, np.nan),
     "stopped: policy returned a non-finite action"),
    ("policy returns +inf", None, _fresh, lambda i: _OUTWARD if i < 2 else
     np.where(np.arange(8) == 2, np.inf, 0.0), "stopped: policy returned a non-finite action"),
    ("policy returns -inf", None, _fresh, lambda i: _OUTWARD if i < 2 else
     np.where(np.arange(8) == 6, -np.inf, 0.0), "stopped: policy returned a non-finite action"),
    ("policy returns the wrong shape", None, _fresh,
     lambda i: _OUTWARD if i < 2 else np.zeros(7), "stopped: policy returned an action of shape"),
    ("policy raises", None, _fresh,
     lambda i: _OUTWARD if i < 2 else 1 / 0, "stopped: policy raised ZeroDivisionError"),
    ("robot reports NaN joints", {"observe": (2, np.where(np.arange(8) == 4, np.nan, 0.0))},
     _fresh, None, "stopped: robot reported non-finite joints (joint_pos[4] = nan)"),
    ("robot reports +inf joints", {"observe": (2, np.full(8, np.inf))}, _fresh, None,
     "stopped: robot reported non-finite joints (joint_pos[0] = inf)"),
    ("robot reports the wrong number of joints", {"observe": (2, np.zeros(6))}, _fresh,
     None, "stopped: robot reported joint_pos of shape (6,); expected [8]"),
    ("robot.observe raises", {"observe": (2, OSError("bus error"))}, _fresh, None,
     "stopped: robot.observe raised OSError: bus error"),
    ("robot.command raises", {"command": (2, RuntimeError("servo off"))}, _fresh, None,
     "stopped: robot.command raised RuntimeError: servo off"),
    ("robot.wait raises", {"wait": (2, RuntimeError("late"))}, _fresh, None,
     "stopped: robot.wait raised RuntimeError: late"),
    ("robot.hold raises too", {"hold": (0, RuntimeError("e-stop"))},
     _raise(ValueError("camera unplugged")), None,
     "stopped: point source raised ValueError: camera unplugged; then robot.hold raised "
     "RuntimeError: e-stop"),
]


@pytest.mark.parametrize("fault, robot_faults, frame_fn, action_fn, status",
                         [pytest.param(*f, id=f[0]) for f in _FAULTS])
def test_controller_holds_and_stops_on_a_fault(fault, robot_faults, frame_fn, action_fn,
                                               status):
    """Two good ticks, then the fault: the robot holds and the run stops naming the reason.

    No command, before the fault or after, breaks the limits or the per-tick bound.
    """
    robot = FakeRobot(_START, robot_faults)
    policy = FakePolicy(_arm_info(), action_fn or (lambda i: _OUTWARD))
    controller = _controller(policy, robot, frame_fn)
    report = controller.run(20)
    assert report.status.startswith(status), report.status
    assert robot.holds >= 1
    assert len(robot.commands) == 2 + ("wait" in fault)  # the wait follows the 3rd command
    assert report.steps == 3
    _assert_safe(robot, _START)
    # A stopped controller only holds.
    holds = robot.holds
    assert controller.tick() == (None, report.status)
    assert robot.holds == holds + 1 and len(robot.commands) == 2 + ("wait" in fault)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_controller_refuses_a_non_finite_action_of_the_real_policy(untrained_policy, value):
    """The exported student with NaN / +inf / -inf in its action from the 3rd tick.

    The robot holds and the run stops; the action is never clipped into a full-speed twist.
    """
    robot = FakeRobot(np.zeros(0))
    robot.observe = lambda: runtime.RobotState(np.zeros(0), np.zeros(6))
    policy = CorruptedPolicy(OnnxPolicy(untrained_policy), value, after=2)
    controller = _controller(policy, robot, lambda i: _frame())
    report = controller.run(20)
    assert report.status.startswith("stopped: policy returned a non-finite action"), \
        report.status
    assert report.steps == 3 and robot.holds == 1 and len(robot.commands) == 2
    for c in robot.commands:
        assert np.all(np.abs(c[:3]) <= 0.3 + 1e-9) and np.all(np.abs(c[3:]) <= 2 + 1e-9)


@pytest.mark.parametrize("timestamp, why", [
    (np.nan, "its timestamp is nan"),
    (np.inf, "its timestamp is inf"),
    (-np.inf, "its timestamp is -inf"),
    (_NOW + 1.0, "1 s ahead of the controller's clock"),
    (1.7e9, "ahead of the controller's clock"),  # time.time() against a monotonic clock
    (0.5, "99.50 s old"),  # a simulation's clock against a monotonic one
    (_NOW - 0.3, "0.30 s old"),
])
def test_tracking_with_a_bad_timestamp_is_stale(timestamp, why):
    """A timestamp not finite, in the future, or from another clock is stale.

    The robot holds every tick, gets no command, and the run stops after `patience` ticks.
    """
    robot = FakeRobot(_START)
    policy = FakePolicy(_arm_info(), lambda i: _OUTWARD)
    controller = _controller(policy, robot, lambda i: _frame(timestamp=timestamp), patience=4)
    report = controller.run(20)
    assert report.status.startswith("stopped: tracking is stale") and why in report.status, \
        report.status
    assert report.steps == 4 and robot.holds == 4 and not robot.commands and policy.calls == 0
    assert report.distances == [None] * 4


def test_tracking_stamped_within_the_tolerances_is_used():
    """Up to max_future_s ahead (clock granularity) and max_age_s behind: fresh."""
    for timestamp in (_NOW + 0.009, _NOW - 0.19, _NOW):
        robot = FakeRobot(_START)
        controller = _controller(FakePolicy(_arm_info(), lambda i: _OUTWARD), robot,
                                 lambda i, t=timestamp: _frame(timestamp=t))
        assert controller.run(3).status == "timeout" and len(robot.commands) == 3
        assert robot.holds == 0


@pytest.mark.parametrize("outside", [0.1, _STEP, 0.5, 3.0])
@pytest.mark.parametrize("joint", [0, 3, 7])
def test_robot_starting_outside_its_limits(joint, outside):
    """A robot measured outside its joint limits at the start.

    At most max_joint_step outside: the first command brings the joint within range, within
    the per-tick bound. Further: no command can respect both, and the run refuses to start
    (held, no command).
    """
    start = _START.copy()
    start[joint] = (_ARM_HIGH[joint] + outside) if joint != 3 else (_ARM_LOW[joint] - outside)
    robot = FakeRobot(start)
    controller = _controller(FakePolicy(_arm_info(), lambda i: _OUTWARD), robot,
                             lambda i: _frame())
    report = controller.run(5)
    if outside <= _STEP:
        assert report.status == "timeout" and len(robot.commands) == 5 and robot.holds == 0
        assert _ARM_LOW[joint] <= robot.commands[0][joint] <= _ARM_HIGH[joint]
    else:
        name = _arm_info().joint_names[joint]
        assert report.status.startswith(
            f"stopped: safety guard refused the command: entry {joint} ({name}) is at "), \
            report.status
        assert "outside its range" in report.status and "before starting" in report.status
        assert report.steps == 1 and robot.holds == 1 and not robot.commands
    _assert_safe(robot, start)


def test_consecutive_counts_restart_after_an_unmeasured_tick():
    """Consecutive counts restart on a tick that did not measure their condition.

    The success hold restarts on a tick without a measured d_t (no point visible, stale
    tracking); `patience` restarts on a usable tick.
    """
    track, visible = _track()
    at_goal = track[1]

    def frames(script):
        def fn(i):
            kind = script[i]
            if kind == "stale":
                return _frame(at_goal, timestamp=_NOW - 1)
            if kind == "hidden":
                return _frame(at_goal, visible=np.zeros(10, bool))
            return _frame(at_goal)
        return fn

    # hold_steps 3: without the restarts, the 4th tick would count as the 3rd held one.
    script = ["ok", "ok", "hidden", "ok", "ok", "stale", "ok", "ok", "ok", "ok"]
    robot = FakeRobot(_START)
    controller = runtime.Controller(FakePolicy(_arm_info(hold_steps=3), lambda i: _OUTWARD),
                                    robot, FakePoints(frames(script)), track, visible,
                                    max_joint_step=_STEP, clock=lambda: _NOW)
    report = controller.run(20)
    assert report.status == "success" and report.steps == 9 and report.held == 3
    assert robot.holds == 2
    assert report.distances[2] is None and report.distances[5] is None
    # patience 3: stopped only by the 3 unusable ticks in a row at the end.
    script = ["stale", "stale", "ok", "hidden", "stale", "ok", "stale", "hidden", "stale", "ok"]
    robot = FakeRobot(_START)
    controller = runtime.Controller(FakePolicy(_arm_info(hold_steps=100), lambda i: _OUTWARD),
                                    robot, FakePoints(frames(script)), track, visible,
                                    max_joint_step=_STEP, clock=lambda: _NOW, patience=3)
    report = controller.run(20)
    assert report.status.startswith("stopped: tracking is stale") and report.steps == 9
    assert robot.holds == 7 and len(robot.commands) == 2
    _assert_safe(robot, _START)


# ----------------------------------------------------------------------------------------------
# Fault discipline of `dex4d run` and of policy files: one line `dex4d: error: ...` naming the
# argument or file, exit 2, no traceback, nothing simulated and no existing file changed.
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def wrench_track(wrench, tmp_path):
    """A two-frame track of the wrench task's object 0 (in tmp_path/in)."""
    kp = np.asarray(wrench.keypoints[0])
    frames = np.stack([kp + [0, 0, 0.7], kp + [0.05, 0, 0.75]]).astype(np.float32)
    (tmp_path / "in").mkdir()
    tracks = tmp_path / "in" / "t.npz"
    formats.save_tracks3d(tracks, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
    return str(tracks)


_POSE = ["--pose", "0", "0", "0.7", "1", "0", "0", "0"]


@pytest.mark.parametrize("argv, named", [
    (["--pose", "nan", "0", "0.7", "1", "0", "0", "0"], "--pose"),
    (["--pose", "0", "0", "inf", "1", "0", "0", "0"], "--pose"),
    (["--pose", "0", "0", "0.7", "0", "0", "0", "0"], "--pose"),
    (["--pose", "0", "0", "0.7", "1", "nan", "0", "0"], "--pose"),
    (["--noise", "nan"], "--noise"),
    (["--noise", "inf"], "--noise"),
    (["--noise", "-0.1"], "--noise"),
    (["--steps", "-3"], "--steps"),
    (["--seed", "-1"], "--seed"),
    (["--object", "box:nan,0.02,0.02"], "--object"),
    (["--object", "box:0.03,inf,0.02"], "--object"),
])
def test_run_refuses_bad_numbers_before_simulating(argv, named, untrained_policy, wrench_track,
                                                   tmp_path, capsys):
    """NaN, infinity, a zero quaternion or a negative count: refused before loading anything."""
    before = folder_files(tmp_path)
    code, text = run_cli(capsys, "run", "--onnx", untrained_policy, "--tracks", wrench_track,
                         *_POSE, *argv, "--report", str(tmp_path / "r.json"))
    assert_one_error_line(code, text, named, forbidden=("tick ",))
    assert folder_files(tmp_path) == before


@pytest.mark.parametrize("flag, where, named", [
    ("--report", "missing/r.json", "does not exist"),
    ("--report", "in/t.npz/r.json", "is a file"),
    ("--report", "in", "is a folder"),
    ("--video", "missing/v.mp4", "does not exist"),
    ("--video", "in/t.npz/v.mp4", "is a file"),
    ("--video", "v.avi", ".mp4"),
    ("--report", "locked/r.json", "not writable"),
    ("--video", "locked/v.mp4", "not writable"),
])
def test_run_refuses_an_output_it_cannot_write(flag, where, named, untrained_policy,
                                               wrench_track, tmp_path, capsys, monkeypatch):
    """--video and --report are checked before anything is simulated; nothing is created."""
    if where.startswith("locked"):
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        if os.geteuid() == 0:  # root writes into any folder: the permission check says no
            access = os.access
            monkeypatch.setattr(os, "access", lambda p, mode: (
                access(p, mode) and not (mode & os.W_OK and str(p).startswith(str(locked)))))
    before = folder_files(tmp_path)
    out = str(tmp_path / where)
    code, text = run_cli(capsys, "run", "--onnx", untrained_policy, "--tracks", wrench_track,
                         *_POSE, flag, out)
    assert_one_error_line(code, text, flag, out, named, forbidden=("tick ",))
    assert folder_files(tmp_path) == before and not (tmp_path / "missing").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_run_reports_a_failed_write_in_one_line(untrained_policy, wrench_track, capsys):
    """A write that fails after simulating (here: disk full) is one line, exit 2."""
    code, text = run_cli(capsys, "run", "--onnx", untrained_policy, "--tracks", wrench_track,
                         *_POSE, "--steps", "3", "--report", "/dev/full")
    assert code == 2 and "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("dex4d: error:")]
    assert len(errors) == 1 and "cannot write --report /dev/full" in errors[0], text


def _with_metadata(path: str, folder, **changes) -> str:
    """A copy of the policy file `path` with `dex4d.<key>` entries replaced; returns its path.

    A change is a JSON value, a JSON string, or a function of the parsed old value.
    """
    import onnx

    model = onnx.load(path)
    for prop in model.metadata_props:
        key = prop.key.removeprefix("dex4d.")
        if key in changes:
            new = changes[key]
            new = new(json.loads(prop.value)) if callable(new) else new
            prop.value = new if isinstance(new, str) else json.dumps(new)
    out = folder / "edited.onnx"
    onnx.save(model, str(out))
    return str(out)


def _mapping(**entries):
    """A change of the action mapping's `entries`."""
    return lambda mapping: {**mapping, **entries}


def _limits(low_fn):
    """A change of the action mapping's joint_low to `low_fn(mapping)`."""
    return lambda mapping: {**mapping, "joint_low": low_fn(mapping)}


_BAD_WRENCH = [
    ({"control_frequency_hz": 0}, "control_frequency_hz"),
    ({"control_frequency_hz": -20.0}, "control_frequency_hz"),
    ({"control_frequency_hz": "NaN"}, "control_frequency_hz"),
    ({"control_frequency_hz": 40.0}, "ctrl_dt"),  # the env config's ctrl_dt is 0.05 s
    ({"action_mapping": _mapping(max_lin_speed=5.0)}, "max_lin_speed"),  # env: 0.3 m/s
    ({"action_mapping": _mapping(max_ang_speed=-2.0)}, "max_ang_speed"),
    ({"action_mapping": _mapping(max_ang_speed=float("inf"))}, "max_ang_speed"),
    ({"env": "ap2ap"}, "'ap2ap'"),  # 22 joints, but the graph has joint_pos of size 0
    ({"success_threshold": 0}, "success_threshold"),
    ({"hold_steps": 0}, "hold_steps"),
    ({"num_points": 32}, "num_points"),
    # Another environment (no sizes implied) whose metadata disagrees with the graph.
    ({"env": "custom", "env_config": "{}", "sizes": lambda s: {**s, "joint_pos": 3}},
     "joint_pos"),
]
_BAD_ROBOT = [
    ({"env": "ap2ap_wrench"}, "'ap2ap_wrench'"),  # 6 joints, but the graph has 22
    ({"action_mapping": _mapping(arm_step=0.5)}, "arm_step"),  # env: 10 x 1/60 rad
    ({"action_mapping": _mapping(arm_step=0)}, "arm_step"),
    ({"action_mapping": _limits(lambda m: m["joint_low"][:21])}, "joint_low"),
    ({"action_mapping": _limits(lambda m: [m["joint_high"][0] + 1] + m["joint_low"][1:])},
     "joint 0"),
    ({"action_mapping": _mapping(kind="twist")}, "arm_delta_hand_absolute"),
]


@pytest.mark.parametrize("which, changes, named",
                         [("wrench", c, n) for c, n in _BAD_WRENCH]
                         + [("robot", c, n) for c, n in _BAD_ROBOT])
def test_a_file_with_inconsistent_metadata_is_refused(which, changes, named, untrained_policy,
                                                      robot_policy, wrench_track, tmp_path,
                                                      capsys):
    """Inconsistent metadata is refused on load, and `dex4d run` says so in one line.

    contract.PolicyInfo.from_metadata checks the entries against each other and against the
    environment config the file carries; OnnxPolicy checks them against the graph's inputs.
    """
    path = untrained_policy if which == "wrench" else robot_policy[0]
    edited = _with_metadata(path, tmp_path, **changes)
    with pytest.raises(contract.PolicyFileError, match="re-export"):
        OnnxPolicy(edited)
    before = folder_files(tmp_path)
    code, text = run_cli(capsys, "run", "--onnx", edited, "--tracks", wrench_track,
                         "--report", str(tmp_path / "r.json"))
    assert_one_error_line(code, text, edited, named, forbidden=("tick ",))
    assert folder_files(tmp_path) == before


def test_the_valid_files_pass_the_metadata_checks(untrained_policy, robot_policy):
    """The files the other tests run (both environments) are consistent."""
    for path in (untrained_policy, robot_policy[0]):
        OnnxPolicy(path).info.check(path)


def test_run_help_shows_defaults_and_units_for_users(capsys):
    """`dex4d run --help`: every default and unit, no module paths."""
    code, text = run_cli(capsys, "run", "--help")
    assert code == 0
    text = " ".join(text.split())  # argparse wraps the help
    for shown in ("(default: 300)", "(default: 0)", "(default: sim)", "(default: object 0)",
                  "metres", "docs/deploy.md"):
        assert shown in text, shown
    for hidden in ("(default: None)", "dex4d_jax/", "deploy.runtime", "deploy.sim"):
        assert hidden not in text, hidden
