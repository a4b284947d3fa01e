"""ONNX export: the exported file, run by onnxruntime, computes what the JAX policy computes."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dex4d_jax import contract, envs
from dex4d_jax.deploy.policy import OnnxPolicy, PolicyFileError, PolicyInputError
from dex4d_jax.export import onnx_graph
from dex4d_jax.export import policy as export
from dex4d_jax.networks import point_encoders, ppo
from dex4d_jax.networks.student import StudentNetwork
from tests.helpers import make_wrench_student_run, run_cli


def _session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _student_outputs(net, params, x):
    out = net.apply(params, x["joint_pos"], x["joint_vel"], x["last_action"],
                    x["paired_points"], x["point_mask"])
    return {"action": np.clip(out["action"], -1, 1), "next_joint_pos": out["next_qpos"],
            "next_joint_vel": out["next_qvel"]}


@pytest.mark.parametrize("arch,encoder,sizes", [
    ("transformer", "paired", (22, 22, 22)),   # the robot student
    ("transformer", "paired", (0, 6, 6)),      # the ap2ap_wrench student (no joint angles)
    ("mlp", "decoupled", (22, 22, 22)),
    ("transformer", "mlp", (0, 6, 6)),
])
def test_student_graph_matches_flax(arch, encoder, sizes):
    q, v, a = sizes
    net = StudentNetwork(action_size=a, width=32, num_layers=2, num_heads=4,
                         point_hidden=(32, 32), arch=arch, encoder=encoder)
    dims = {"joint_pos": q, "joint_vel": v, "action": a, "points": 64}
    x1 = export.random_student_inputs(dims, 1)
    params = net.init(jax.random.PRNGKey(1), *x1.values())
    # Random (not initial) weights everywhere, so every head and bias matters.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        tree, [0.3 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)])
    network = {"width": 32, "num_layers": 2, "num_heads": 4, "arch": arch, "encoder": encoder}
    session = _session(onnx_graph.student_model(_numpy(params), network, dims, {}))
    for batch in (1, 33):
        x = export.random_student_inputs(dims, batch, seed=batch)
        want = _student_outputs(net, params, x)
        got = dict(zip(contract.STUDENT_OUTPUTS, session.run(None, x), strict=True))
        for k in want:
            assert got[k].shape == want[k].shape, k
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0, err_msg=k)


def test_teacher_graph_matches_flax():
    nets = ppo.make_ppo_networks(134, 6, num_points=20, point_hidden=(32, 32),
                                 policy_hidden=(64, 64), value_hidden=(16,))
    params = nets.policy_network.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda p: p + 0.05, params)  # non-zero biases
    network = {"num_points": 20, "encoder": "paired", "pooling": "mean_max",
               "activation": "elu", "policy_hidden": (64, 64)}
    session = _session(onnx_graph.teacher_model(_numpy(params), network, 134, 6, {}))
    obs = np.random.default_rng(0).standard_normal((33, 134)).astype(np.float32)
    want = np.clip(nets.policy_network.apply(None, params, jnp.asarray(obs))[0], -1, 1)
    np.testing.assert_allclose(session.run(None, {"observation": obs})[0], want, atol=1e-5)


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """A wrench student run folder (paper-size network, random weights) and its export."""
    return make_wrench_student_run(tmp_path_factory.mktemp("student") / "run")


def test_export_cli_writes_a_checked_student(student_run, tmp_path, capsys):
    run, net, params = student_run
    out = tmp_path / "student.onnx"
    code, text = run_cli(capsys, "export", "--policy", str(run), "--out", str(out))
    assert code == 0, text
    assert "max difference" in text
    policy = OnnxPolicy(str(out))
    info = policy.info
    assert info.contract == "dex4d-student/1" and info.env == "ap2ap_wrench"
    assert info.opset == 17 and "ONNX opset 17" in text  # the default (docs/deploy.md)
    assert info.joint_names == ["lin_x", "lin_y", "lin_z", "ang_x", "ang_y", "ang_z"]
    assert info.action_mapping["kind"] == "twist" and info.num_points == 64
    assert info.control_frequency_hz == pytest.approx(20.0)
    np.testing.assert_allclose(info.points_origin_in_world, [0, 0, 0.6])
    # The environment's whole config, from which `dex4d run --robot sim` builds the task.
    want_config = json.loads(json.dumps(envs.get_default_config("ap2ap_wrench").to_dict()))
    assert info.env_config == want_config
    dims = info.sizes
    for batch in (1, 33):
        x = export.random_student_inputs(dims, batch, seed=10 + batch)
        got = policy(**x)
        want = _student_outputs(net, params, x)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0, err_msg=k)

    # Jointly permuting points and mask changes nothing; neither do hidden points' values.
    x = export.random_student_inputs(dims, 5, seed=7)
    base = policy(**x)
    perm = np.random.default_rng(0).permutation(64)
    permuted = dict(x, paired_points=x["paired_points"][:, perm], point_mask=x["point_mask"][:,
                                                                                             perm])
    moved = dict(x, paired_points=np.where(x["point_mask"][..., None], x["paired_points"],
                                           123.0).astype(np.float32))
    for other in (policy(**permuted), policy(**moved)):
        for k in base:
            np.testing.assert_allclose(other[k], base[k], atol=1e-5, err_msg=k)

    # A single (unbatched) call gives the batch's first row.
    one = policy(**{k: v[0] for k, v in x.items()})
    np.testing.assert_allclose(one["action"], base["action"][0], atol=1e-6)


def test_runtime_refuses_malformed_inputs(student_run, tmp_path, capsys):
    run, _, _ = student_run
    out = tmp_path / "s.onnx"
    assert run_cli(capsys, "export", "--policy", str(run), "--out", str(out))[0] == 0
    policy = OnnxPolicy(str(out))
    x = export.random_student_inputs(policy.info.sizes, 2)
    with pytest.raises(PolicyInputError, match=r"paired_points.*expected \[B, 64, 6\]"):
        policy(**dict(x, paired_points=x["paired_points"][:, :10]))
    with pytest.raises(PolicyInputError, match=r"last_action.*expected \[B, 6\] with B = 2"):
        policy(**dict(x, last_action=np.zeros((3, 6), np.float32)))
    bad = x["joint_vel"].copy()
    bad[1, 2] = np.nan
    with pytest.raises(PolicyInputError, match=r"joint_vel.*NaN.*index \[1, 2\]"):
        policy(**dict(x, joint_vel=bad))
    with pytest.raises(PolicyInputError, match="point_mask must be boolean"):
        policy(**dict(x, point_mask=x["point_mask"].astype(np.float32)))
    with pytest.raises(PolicyFileError, match="not found"):
        OnnxPolicy(str(tmp_path / "missing.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PolicyFileError, match="not a readable ONNX model"):
        OnnxPolicy(str(tmp_path / "junk.onnx"))


def test_export_cli_writes_the_asked_opset(student_run, tmp_path, capsys):
    """`dex4d export --opset 18`: the graph imports opset 18 (ReduceMax's axes an input) and
    the metadata records it; the export checked it against JAX in onnxruntime, as at 17."""
    run, _, _ = student_run
    out = tmp_path / "s18.onnx"
    code, text = run_cli(capsys, "export", "--policy", str(run), "--out", str(out),
                         "--opset", "18")
    assert code == 0 and "max difference" in text and "ONNX opset 18" in text, text
    model = onnx.load(str(out))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
    reduce_max = [n for n in model.graph.node if n.op_type == "ReduceMax"]
    assert reduce_max and all(len(n.input) == 2 for n in reduce_max)
    policy = OnnxPolicy(str(out))
    assert policy.info.opset == 18
    x = export.random_student_inputs(policy.info.sizes, 2)
    assert policy(**x)["action"].shape == (2, 6)


def test_export_cli_errors(tmp_path, capsys):
    code, text = run_cli(capsys, "export", "--policy", str(tmp_path / "nope"), "--out",
                         str(tmp_path / "x.onnx"))
    assert code == 2 and "does not exist" in text
    code, text = run_cli(capsys, "export", "--policy", str(tmp_path), "--out",
                         str(tmp_path / "x.pt"))
    assert code == 2 and ".onnx" in text
    assert not (tmp_path / "x.onnx").exists()


class _Unmirrored(nn.Module):
    """A layer the exporter has no ONNX mirror for."""

    @nn.compact
    def __call__(self, x):
        return 2.0 * nn.Dense(x.shape[-1])(x)


class _StudentWithExtra(nn.Module):
    """The student, then an unmirrored layer on its action."""

    @nn.compact
    def __call__(self, *inputs):
        out = StudentNetwork(action_size=6, width=32, num_layers=1, num_heads=4,
                             point_hidden=(32, 32), name="student")(*inputs)
        return _Unmirrored(name="extra")(out["action"])


class _TweakedStudent(StudentNetwork):
    """A subclass: it may compute something else, so the student's mirror does not cover it."""


def test_every_network_module_needs_a_registered_mirror(monkeypatch):
    """The student's and the teacher's modules all have mirrors (flax's own layers covered
    whole); a module class without one, at the top or nested, fails naming its class."""
    dims = {"joint_pos": 0, "joint_vel": 6, "action": 6, "points": 64}
    x = list(export.random_student_inputs(dims, 1).values())
    key = jax.random.PRNGKey(0)
    net = StudentNetwork(action_size=6, width=32, num_layers=1, num_heads=4,
                         point_hidden=(32, 32))
    met = onnx_graph.check_mirrors(lambda: net.init(key, *x))
    assert {StudentNetwork, point_encoders.PointEncoder, point_encoders.PointNet,
            nn.MultiHeadDotProductAttention} <= set(met)
    assert onnx_graph.MIRRORS[StudentNetwork].fn is onnx_graph.student_model
    nets = ppo.make_ppo_networks(134, 6, num_points=20, point_hidden=(32, 32),
                                 policy_hidden=(64, 64), value_hidden=(16,))
    met = onnx_graph.check_mirrors(lambda: nets.policy_network.init(key))
    assert {ppo.PointPolicy, ppo.PointTrunk} <= set(met)

    tweaked = _TweakedStudent(action_size=6, width=32, num_layers=1, num_heads=4)
    with pytest.raises(onnx_graph.MissingMirrorError, match=r"_TweakedStudent \(at the network"):
        onnx_graph.check_mirrors(lambda: tweaked.init(key, *x))
    # Even under a mirrored parent, an unmirrored submodule is found, with its path.
    monkeypatch.setitem(onnx_graph.MIRRORS, _StudentWithExtra,
                        onnx_graph.Mirror(lambda *a: None, whole=False))
    with pytest.raises(onnx_graph.MissingMirrorError, match=r"_Unmirrored \(at extra\)"):
        onnx_graph.check_mirrors(lambda: _StudentWithExtra().init(key, *x))


def test_export_refuses_a_network_with_an_unmirrored_module(student_run, tmp_path, capsys,
                                                            monkeypatch):
    """`dex4d export` walks the run's network: with PointNet's mirror gone it stops, names the
    class, and writes nothing."""
    run, _, _ = student_run
    monkeypatch.delitem(onnx_graph.MIRRORS, point_encoders.PointNet)
    out = tmp_path / "s.onnx"
    code, text = run_cli(capsys, "export", "--policy", str(run), "--out", str(out))
    assert code == 2 and "No ONNX mirror for flax module" in text and "PointNet" in text, text
    assert not out.exists() and not list(tmp_path.iterdir())


def test_exported_file_is_readable_by_all_and_its_folder_is_created(student_run, tmp_path,
                                                                    capsys):
    """Mode 0644 under umask 022 (not mkstemp's 0600); a missing folder is created."""
    import os
    import stat

    run, _, _ = student_run
    out = tmp_path / "new" / "folder" / "student.onnx"
    umask = os.umask(0o022)
    try:
        code, text = run_cli(capsys, "export", "--policy", str(run), "--out", str(out))
    finally:
        os.umask(umask)
    assert code == 0, text
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["student.onnx"]  # no temporary left


def test_export_to_a_path_under_a_file_is_one_line(student_run, tmp_path, capsys):
    """--out whose folder is a file: one error line naming it, exit 2, nothing changed."""
    run, _, _ = student_run
    (tmp_path / "file").write_text("keep me")
    out = str(tmp_path / "file" / "student.onnx")
    code, text = run_cli(capsys, "export", "--policy", str(run), "--out", out)
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("dex4d: error:")]
    assert len(errors) == 1 and len(errors[0]) < 500 and "Traceback" not in text, text
    assert str(tmp_path / "file") in errors[0], text
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert (tmp_path / "file").read_text() == "keep me"


def test_export_help_shows_what_users_need(capsys):
    """`dex4d export --help`: the arguments in user terms, no module paths."""
    code, text = run_cli(capsys, "export", "--help")
    assert code == 0
    text = " ".join(text.split())
    assert "created if missing" in text and "docs/deploy.md" in text
    for hidden in ("(default: None)", "dex4d_jax/", "deploy.runtime"):
        assert hidden not in text, hidden
