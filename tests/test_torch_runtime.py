"""The two deploy runtimes and the export's opset.

An exported student computes what the JAX policy computes in onnxruntime and, converted by
onnx2torch, in PyTorch (`dex4d run --runtime torch`), through the same contract checks; the
opset is chosen with `dex4d export --opset`, written in the chosen opset's op forms, recorded
in the metadata and checked on load. The PyTorch tests skip where the torch extra is not
installed (pip install "dex4d-jax[torch]").
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from dex4d_jax.experiments.configs import student as student_config
from helpers import assert_one_error_line, robot_student_metadata, run_cli

from dex4d_jax import contract, envs
from dex4d_jax.deploy import policy as deploy
from dex4d_jax.export import onnx_graph, opsets
from dex4d_jax.export import policy as export
from dex4d_jax.networks.student import StudentNetwork
from dex4d_jax.student.policy import make_student
from dex4d_jax.tracks import formats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRENCH_SIZES = {"joint_pos": 0, "joint_vel": 6, "action": 6, "points": 64}
ROBOT_SIZES = {"joint_pos": 22, "joint_vel": 22, "action": 22, "points": 64}


def _needs_torch():
    pytest.importorskip("torch")
    pytest.importorskip("onnx2torch")


def _random_student(action_size: int, sizes: dict):
    """The paper's student network (the `quick` preset's) with random weights, each nudged off
    its initialisation as tests/helpers.py make_wrench_student_run does: (network, its config
    section, params)."""
    network = student_config.get_config("quick").network
    net = make_student(network, action_size)
    params = net.init(jax.random.PRNGKey(3), *export.random_student_inputs(sizes, 1).values())
    params = jax.tree_util.tree_map(lambda p: p + 0.02 * jnp.sin(jnp.arange(p.size).reshape(
        p.shape)), params)
    return net, network.to_dict(), params


def _cases(net, params, sizes):
    """[(label, inputs, JAX outputs)] at batch 1 and 33, some points hidden and all hidden.

    JAX runs once on all of them stacked (one compile); the runtimes run each case alone.
    """
    x = export.random_student_inputs(sizes, 33, seed=33)
    assert x["point_mask"][0].any() and not x["point_mask"][0].all()
    hidden = dict(x, point_mask=np.zeros_like(x["point_mask"]))
    both = {k: np.concatenate([x[k], hidden[k]]) for k in x}
    out = jax.jit(net.apply)(params, *(both[k] for k in contract.STUDENT_INPUTS))
    want = {"action": np.clip(np.asarray(out["action"]), -1, 1),
            "next_joint_pos": np.asarray(out["next_qpos"]),
            "next_joint_vel": np.asarray(out["next_qvel"])}
    cases = []
    for offset, what in ((0, "some"), (33, "all")):
        for batch in (1, 33):
            rows = slice(offset, offset + batch)
            cases.append((f"batch {batch}, {what} points hidden",
                          {k: v[rows] for k, v in both.items()},
                          {k: v[rows] for k, v in want.items()}))
    return cases


def _write(model: onnx.ModelProto, path) -> str:
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def wrench_student(tmp_path_factory):
    """The ap2ap_wrench student exported with the environment's metadata, as `dex4d export`
    writes it: (file, cases)."""
    net, network, params = _random_student(6, WRENCH_SIZES)
    env = envs.load("ap2ap_wrench")
    meta = contract.metadata(contract.STUDENT_CONTRACT, "ap2ap_wrench", {}, env.deploy_info,
                             WRENCH_SIZES, env.config.to_dict())
    model = onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params), network,
                                     WRENCH_SIZES, meta)
    path = _write(model, tmp_path_factory.mktemp("wrench") / "wrench.onnx")
    return path, _cases(net, params, WRENCH_SIZES)


@pytest.fixture(scope="module")
def robot_parts():
    """The 22-joint (ap2ap) student: (network, its config section, params, metadata of the
    xArm6 + LEAP hand)."""
    net, network, params = _random_student(22, ROBOT_SIZES)
    meta = robot_student_metadata(ROBOT_SIZES)
    return net, network, params, meta


def _robot_model(robot_parts, opset=opsets.DEFAULT_OPSET) -> onnx.ModelProto:
    _, network, params, meta = robot_parts
    return onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params), network,
                                    ROBOT_SIZES, meta, opset)


@pytest.fixture(scope="module")
def robot_student(robot_parts, tmp_path_factory):
    """The 22-joint student at the default opset: (file, cases)."""
    path = _write(_robot_model(robot_parts), tmp_path_factory.mktemp("robot") / "robot.onnx")
    net, _, params, _ = robot_parts
    return path, _cases(net, params, ROBOT_SIZES)


@pytest.mark.parametrize("student", ["wrench_student", "robot_student"])
def test_onnxruntime_and_torch_match_jax(student, request):
    """Every output of both runtimes is JAX's to 1e-5, at batch 1 and 33, with some and with
    all points hidden; the checks on inputs are the same."""
    _needs_torch()
    path, cases = request.getfixturevalue(student)
    policies = {runtime: deploy.OnnxPolicy(path, runtime=runtime)
                for runtime in deploy.RUNTIMES}
    assert [p.backend.name for p in policies.values()] == list(deploy.RUNTIMES)
    sizes = policies["torch"].info.sizes
    assert policies["torch"].info.opset == opsets.DEFAULT_OPSET == 17
    for label, x, want in cases:
        for runtime, policy in policies.items():
            got = policy(**x)
            for k in contract.STUDENT_OUTPUTS:
                assert got[k].shape == want[k].shape and got[k].dtype == np.float32
                np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0,
                                           err_msg=f"{runtime}, {k}, {label}")
    x = export.random_student_inputs(sizes, 2)
    one = policies["torch"](**{k: v[0] for k, v in x.items()})  # no batch axis in, none out
    np.testing.assert_allclose(one["action"], policies["onnxruntime"](**x)["action"][0],
                               atol=1e-5)
    for policy in policies.values():
        with pytest.raises(deploy.PolicyInputError, match=r"paired_points.*expected \[B, 64, 6\]"):
            policy(**dict(x, paired_points=x["paired_points"][:, :10]))
        with pytest.raises(deploy.PolicyInputError, match="point_mask must be boolean"):
            policy(**dict(x, point_mask=x["point_mask"].astype(np.float32)))


def test_torch_runs_an_ablation_student(robot_parts, tmp_path):
    """An ablation's graph (the decoupled point encoder's Slices, the MLP trunk instead of
    attention) converts too: the torch runtime gives onnxruntime's outputs (which
    tests/test_export.py checks against JAX for every architecture)."""
    _needs_torch()
    arch, encoder = "mlp", "decoupled"
    net = StudentNetwork(action_size=22, width=32, num_layers=2, num_heads=4,
                         point_hidden=(32, 32), arch=arch, encoder=encoder)
    params = net.init(jax.random.PRNGKey(1),
                      *export.random_student_inputs(ROBOT_SIZES, 1).values())
    network = {"width": 32, "num_layers": 2, "num_heads": 4, "arch": arch, "encoder": encoder}
    model = onnx_graph.student_model(jax.tree_util.tree_map(np.asarray, params), network,
                                     ROBOT_SIZES, robot_parts[3])
    path = _write(model, tmp_path / "ablation.onnx")
    ort, torch = (deploy.OnnxPolicy(path, runtime=r) for r in deploy.RUNTIMES)
    x = export.random_student_inputs(ROBOT_SIZES, 5, seed=2)
    want, got = ort(**x), torch(**x)
    for k in contract.STUDENT_OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0, err_msg=k)


def test_every_opset_writes_its_own_op_forms(robot_parts, robot_student, tmp_path):
    """From 17 to the newest opset onnx defines, the graph is valid (onnx's full check),
    imports that opset, records it as `dex4d.opset`, takes ReduceMax/ReduceMean axes as an
    attribute before 18 and as an input from 18 on, and matches JAX in onnxruntime."""
    _, cases = robot_student
    _, x, want = cases[1]  # batch 33, some points hidden
    for opset in range(opsets.MIN_OPSET, opsets.newest_opset() + 1):
        model = _robot_model(robot_parts, opset)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
        assert {p.key: p.value for p in model.metadata_props}["dex4d.opset"] == str(opset)
        for node in model.graph.node:
            if node.op_type in ("ReduceMax", "ReduceMean", "ReduceSum", "Unsqueeze"):
                by_input = opsets.axes_as_input(node.op_type, opset)
                assert (len(node.input) == 2) == by_input, (opset, node.op_type)
                assert any(a.name == "axes" for a in node.attribute) != by_input
        path = tmp_path / f"opset{opset}.onnx"
        path.write_bytes(model.SerializeToString())
        policy = deploy.OnnxPolicy(str(path))
        assert policy.info.opset == opset
        got = policy(**x)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0,
                                       err_msg=f"opset {opset}, {k}")
    with pytest.raises(opsets.OpsetError, match="LayerNormalization.*choose 17 to"):
        _robot_model(robot_parts, 16)


def test_opset_metadata_is_checked_on_load(robot_parts, tmp_path):
    """`dex4d.opset` must agree with the graph's opset import and be a whole number; a file
    exported before the entry existed takes the graph's opset."""
    def saved(name, opset=17, entry=None):
        model = _robot_model(robot_parts, opset)
        props = [p for p in model.metadata_props if p.key != "dex4d.opset"]
        del model.metadata_props[:]
        model.metadata_props.extend(props)
        if entry is not None:
            model.metadata_props.append(onnx.StringStringEntryProto(key="dex4d.opset",
                                                                    value=entry))
        (tmp_path / name).write_bytes(model.SerializeToString())
        return str(tmp_path / name)

    assert deploy.OnnxPolicy(saved("old.onnx", 18)).info.opset == 18
    with pytest.raises(deploy.PolicyFileError, match="says opset 18 but the graph imports "
                                                     "opset 17"):
        deploy.OnnxPolicy(saved("lie.onnx", 17, "18"))
    with pytest.raises(deploy.PolicyFileError, match="malformed dex4d.opset"):
        deploy.OnnxPolicy(saved("bad.onnx", 17, '"seventeen"'))


def test_torch_refuses_an_opset_it_cannot_convert(robot_parts, tmp_path):
    """An opset-18 file runs in onnxruntime; the torch runtime refuses it on load, saying to
    re-export at opset 17 (onnx2torch 1.5.15 has no ReduceMax-18)."""
    _needs_torch()
    path = tmp_path / "opset18.onnx"
    path.write_bytes(_robot_model(robot_parts, 18).SerializeToString())
    assert deploy.OnnxPolicy(str(path)).info.opset == 18
    with pytest.raises(deploy.PolicyFileError, match=r"opset 18.*ReduceMax.*--opset 17"):
        deploy.OnnxPolicy(str(path), runtime="torch")


@pytest.mark.parametrize("opset", ["16", "99"])
def test_export_refuses_an_opset_it_cannot_write(opset, tmp_path, capsys):
    """One line, exit 2, before anything is loaded; nothing written."""
    code, text = run_cli(capsys, "export", "--policy", str(tmp_path / "nope"), "--out",
                         str(tmp_path / "s.onnx"), "--opset", opset)
    assert_one_error_line(code, text, f"--opset {opset}", "choose 17 to")
    assert ("LayerNormalization" in text) == (opset == "16")
    assert not list(tmp_path.iterdir())


def _tracks(tmp_path) -> str:
    """A two-frame track of 64 points lifted 10 cm above the table in front of the hand."""
    pts = np.random.default_rng(0).uniform(-0.03, 0.03, (64, 3))
    frames = np.stack([pts + [0.45, 0, 0.64], pts + [0.45, 0, 0.74]]).astype(np.float32)
    path = tmp_path / "t.npz"
    formats.save_tracks3d(path, formats.Tracks3D(frames, np.ones(frames.shape[:2], bool)))
    return str(path)


def test_torch_runtime_without_torch_says_how_to_install(robot_student, tmp_path, capsys,
                                                         monkeypatch):
    """`dex4d run --runtime torch` where torch or onnx2torch cannot be imported: the install
    line, exit 2; the library raises RuntimeUnavailableError (an ImportError)."""
    path, _ = robot_student
    for missing in ("torch", "onnx2torch"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
            code, text = run_cli(capsys, "run", "--onnx", path, "--tracks", _tracks(tmp_path),
                                 "--runtime", "torch", "--steps", "1")
            assert_one_error_line(code, text, "--runtime torch", 'pip install "dex4d-jax[torch]"',
                                  missing)
            with pytest.raises(deploy.RuntimeUnavailableError, match=r"dex4d-jax\[torch\]"):
                deploy.OnnxPolicy(path, runtime="torch")
    with pytest.raises(ValueError, match="Unknown runtime 'tensorrt'"):
        deploy.OnnxPolicy(path, runtime="tensorrt")


def test_dex4d_run_gives_the_same_run_in_both_runtimes(robot_student, tmp_path, capsys):
    """`dex4d run --robot sim` on the 22-joint student: same status and traces whichever
    runtime runs the policy."""
    _needs_torch()
    path, _ = robot_student
    reports = {}
    for runtime in deploy.RUNTIMES:
        report = tmp_path / f"{runtime}.json"
        code, text = run_cli(capsys, "run", "--onnx", path, "--tracks", _tracks(tmp_path),
                             "--object", "box:0.03,0.03,0.03", "--pose", "0.45", "0", "0.64",
                             "1", "0", "0", "0", "--steps", "5", "--runtime", runtime,
                             "--report", str(report))
        assert code == 1 and "timeout after 5 ticks" in text, text  # untrained: not reached
        reports[runtime] = json.loads(report.read_text())
    ort, torch = reports["onnxruntime"], reports["torch"]
    assert ort["status"] == torch["status"] and ort["target_index"] == torch["target_index"]
    assert ort["steps"] == torch["steps"] == 5
    assert [d is None for d in ort["distances"]] == [d is None for d in torch["distances"]]
    np.testing.assert_allclose([d for d in torch["distances"] if d is not None],
                               [d for d in ort["distances"] if d is not None], atol=1e-5)
    np.testing.assert_allclose(torch["final_true_distance"], ort["final_true_distance"],
                               atol=1e-5)


def test_torch_runtime_imports_no_jax(robot_student):
    """The torch runtime loads and runs the student in an interpreter where importing jax,
    jaxlib or flax raises."""
    _needs_torch()
    path, _ = robot_student
    script = textwrap.dedent(f"""
        import sys
        sys.modules.update(jax=None, jaxlib=None, flax=None)
        import numpy as np
        from dex4d_jax.deploy import policy
        p = policy.OnnxPolicy({path!r}, runtime="torch")
        out = p(np.zeros(22), np.zeros(22), np.zeros(22), np.zeros((64, 6)), np.ones(64, bool))
        assert out["action"].shape == (22,)
        assert not any(v is not None and m.split(".")[0] in ("jax", "jaxlib", "flax")
                       for m, v in list(sys.modules.items()))
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_help_names_the_runtimes_and_the_default_opset(capsys):
    """`dex4d run --help` offers both runtimes and how to install torch; `dex4d export --help`
    gives the default opset, which is the exporter's."""
    code, text = run_cli(capsys, "run", "--help")
    text = " ".join(text.split())
    assert code == 0 and "onnxruntime,torch" in text.replace(" ", "")
    assert 'pip install "dex4d-jax[torch]"' in text
    code, text = run_cli(capsys, "export", "--help")
    text = " ".join(text.split())
    assert code == 0 and "--opset N" in text and f"default: {opsets.DEFAULT_OPSET}," in text
