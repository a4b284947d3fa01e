"""DAgger distillation: the teacher stays untouched, resume is exact, the loss is Eq. 3, the CLI.

A tiny teacher (random parameters in a real teacher checkpoint; training it would teach these
tests nothing) is distilled on `ap2ap_wrench` with two objects, 16 environments and a one-layer
student, so every test shares the same few compiled programs.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dex4d_jax.experiments.configs import student as student_configs
from dex4d_jax.student import dagger
from dex4d_jax.student import policy as student_policy
from dex4d_jax.teacher import ppo
from dex4d_jax.training import checkpoint, policies, run_dir

from helpers import envs_of, folder_files, run_cli, train_student
from test_resume import _CACHE, _subprocess_env, tiny_config

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STUDENT = """
from dex4d_jax.experiments.configs import student

def tiny_student(teacher_path, epochs=2, env="ap2ap_wrench", **kwargs):
    from dex4d_jax.student import train as student_train
    c = student.get_config("smoke", **kwargs)
    c.network.update(width=16, num_heads=2, point_hidden=(16,))
    c.dagger.update(num_envs=16, unroll_length=4, num_minibatches=2, num_timesteps=epochs * 128,
                    num_evals=epochs + 1, num_eval_envs=8)
    c.eval.num_episodes = 8
    return student_train.bind_teacher(c, teacher_path, env)
"""
_namespace = {}
exec(STUDENT, _namespace)  # one definition, shared with the subprocess below
tiny_student = _namespace["tiny_student"]


def _random_teacher(out, config):
    """A teacher run directory holding one real checkpoint of freshly initialised networks."""
    os.makedirs(out)
    with open(out / "config.json", "w") as f:
        f.write(config.to_json())
    env = envs_of(config)[0]
    networks = policies.teacher_networks(config, env.observation_size, env.action_size)
    loop = ppo.PPO(env, networks, config.ppo)
    ppo.save_checkpoint(os.path.abspath(out / "checkpoints"), loop.init_state(3), 0)
    return out


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    config = tiny_config(epochs=1)
    config.ppo.episode_length = 10
    return _random_teacher(tmp_path_factory.mktemp("teacher") / "run", config)


@pytest.fixture(scope="module")
def distilled(teacher_run, tmp_path_factory):
    """A two-epoch distillation of the tiny teacher, and the teacher's digest before it."""
    before = folder_files(teacher_run)
    params_before = checkpoint.read_checkpoint(str(teacher_run / "checkpoints" / f"{0:012d}"))[0]
    out = tmp_path_factory.mktemp("student") / "run"
    result = train_student(tiny_student(str(teacher_run)), str(out),
                                         progress=False, log=lambda _: None)
    return out, result, before, params_before


def test_teacher_bit_identical_after_distillation(teacher_run, distilled):
    out, _, before, params_before = distilled
    assert folder_files(teacher_run) == before  # not a byte of the teacher's run was written
    params_after = checkpoint.read_checkpoint(str(teacher_run / "checkpoints" / f"{0:012d}"))[0]
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, params_before, params_after)))
    # ... while the student did learn something: its parameters moved.
    first, last = (policies.load_student_params(p) for _, p in
                   (run_dir.list_checkpoints(out)[0], run_dir.list_checkpoints(out)[-1]))
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, first, last)))


def test_run_outputs_and_exact_resume(teacher_run, distilled, tmp_path):
    out, result, _, _ = distilled
    steps = [s for s, _ in run_dir.list_checkpoints(out)]
    assert steps == [0, 128, 256]
    assert result["step"] == 256 and result["teacher"]["num_episodes"] == 8
    assert set(result["world_model"]) == {"next_qpos", "next_qpos_unchanged", "next_qvel",
                                          "next_qvel_unchanged"}
    config = json.loads((out / "config.json").read_text())
    assert config["teacher"]["path"].endswith(f"checkpoints/{0:012d}")
    assert config["env"]["name"] == "ap2ap_wrench" and config["dagger"]["episode_length"] == 10
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 128, 256]
    for key in ("training/loss/action", "training/loss/next_qvel", "training/env/success",
                "eval/success_rate"):
        assert np.isfinite(lines[-1][key])
    # Delete the last checkpoint and resume: the redone one is bitwise the deleted one.
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    last = copy / "checkpoints" / f"{256:012d}"
    shutil.rmtree(last)
    train_student(None, str(copy), resume=True, progress=False,
                                log=lambda _: None)
    a, meta_a = checkpoint.read_checkpoint(str(out / "checkpoints" / f"{256:012d}"), dagger.FORMAT)
    b, meta_b = checkpoint.read_checkpoint(str(last), dagger.FORMAT)
    assert meta_a == meta_b
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
    # Resuming the finished run trains nothing and rewrites the same eval.json: the run's
    # training time (not the resume's) and its last epoch's world-model losses.
    finished = json.loads((copy / "eval.json").read_text())
    assert finished["world_model"] == result["world_model"]
    assert finished["train_seconds"] == json.loads(
        (copy / "metrics.jsonl").read_text().splitlines()[-1])["time"]
    train_student(None, str(copy), resume=True, progress=False, log=lambda _: None)
    assert json.loads((copy / "eval.json").read_text()) == finished


def _loop(teacher_run, **kwargs):
    config = tiny_student(str(teacher_run), **kwargs)
    env = envs_of(config)[0]
    policy = student_policy.make_policy(config, env)
    teacher_fn = policies.load_teacher_policy(config.teacher.path, env.observation_size,
                                              env.action_size)[0]
    return dagger.DAgger(env, policy, teacher_fn, config.dagger), policy


def test_loss_is_eq3_by_hand(teacher_run):
    loop, policy = _loop(teacher_run)
    params = loop.init_state(0).training.params
    rng = np.random.default_rng(0)
    n, k = 5, 64
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    inputs = student_policy.StudentInputs(f(n, 0), f(n, 6), f(n, 6), f(n, k, 6),
                                  jnp.asarray(rng.random((n, k)) < 0.5))
    valid = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])  # two transitions ended their episode
    batch = dagger.Sample(inputs, f(n, 6), f(n, 0), f(n, 6), valid)
    loss, terms = jax.vmap(loop._loss, in_axes=(None, None), axis_name=dagger.AXIS,
                           axis_size=1)(params, batch)
    out = jax.tree.map(np.asarray, policy.apply(params, inputs))
    action = np.abs(out["action"] - np.asarray(batch.teacher_action)).mean()
    keep = np.asarray(valid) > 0
    qvel = np.abs(out["next_qvel"] - np.asarray(batch.next_qvel))[keep].mean()
    unchanged = np.abs(np.asarray(inputs.qvel) - np.asarray(batch.next_qvel))[keep].mean()
    np.testing.assert_allclose(terms["action"][0], action, rtol=1e-5)
    np.testing.assert_allclose(terms["next_qvel"][0], qvel, rtol=1e-5)
    np.testing.assert_allclose(terms["next_qvel_unchanged"][0], unchanged, rtol=1e-5)
    assert terms["next_qpos"][0] == 0.0  # the wrench has no joint angles
    np.testing.assert_allclose(loss[0], action + qvel, rtol=1e-5)
    # Without the world model the loss is the action term alone.
    loop_no_wm, _ = _loop(teacher_run, world_model=False)
    loss_no_wm, _ = jax.vmap(loop_no_wm._loss, in_axes=(None, None), axis_name=dagger.AXIS,
                             axis_size=1)(params, batch)
    np.testing.assert_allclose(loss_no_wm[0], action, rtol=1e-5)


def test_beta_schedule(teacher_run):
    loop, _ = _loop(teacher_run)
    assert float(loop.beta(0)) == 0.0
    loop.cfg.beta, loop.cfg.beta_decay = 0.8, 0.5
    total = loop.schedule.total_steps
    np.testing.assert_allclose([float(loop.beta(s)) for s in (0, total // 4, total // 2, total)],
                               [0.8, 0.4, 0.0, 0.0], atol=1e-6)


@pytest.mark.slow
def test_two_devices_match_one(teacher_run, tmp_path):
    """One DAgger epoch on 2 CPU devices updates the student as on one, to float rounding.

    The 2-device epoch runs in a subprocess (2 host devices); the 1-device epoch runs here,
    where the distillation above has compiled the same program already.
    """
    result = tmp_path / "two_devices.npz"
    script = STUDENT + textwrap.dedent(f"""
        import jax, numpy as np
        from dex4d_jax import envs
        from dex4d_jax.student import dagger, policy as student_policy
        from dex4d_jax.training import policies
        config = tiny_student({str(teacher_run)!r}, epochs=1)
        env = envs.from_run_config(config)
        policy = student_policy.make_policy(config, env)
        teacher_fn, teacher_params, *_ = policies.load_teacher_policy(
            config.teacher.path, env.observation_size, env.action_size)
        loop = dagger.DAgger(env, policy, teacher_fn, config.dagger, max_devices=2)
        assert len(loop.layout.local_devices) == 2
        state, metrics, finite = loop.run_epoch(loop.init_state(0), teacher_params)
        assert finite
        leaves = {{f"param{{i}}": x for i, x in enumerate(jax.tree.leaves(state.training.params))}}
        np.savez({str(result)!r}, **leaves, **{{f"metric:{{k}}": v for k, v in metrics.items()}})
    """)
    prelude = ("import jax\n"
               f"jax.config.update('jax_compilation_cache_dir', {_CACHE!r})\n"
               "jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", prelude + script], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"), cwd=_ROOT)
    loop, _ = _loop(teacher_run, epochs=1)  # meanwhile, here: one device
    start = loop.init_state(0)
    teacher_params = policies.load_teacher_policy(str(teacher_run), *_sizes(loop))[1]
    one, metrics, finite = loop.run_epoch(start, teacher_params)
    assert finite
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    two = np.load(result)
    leaves = jax.tree.leaves(one.training.params)
    diff = max(float(np.abs(a - two[f"param{i}"]).max()) for i, a in enumerate(leaves))
    moved = max(float(np.abs(a - b).max())
                for a, b in zip(leaves, jax.tree.leaves(start.training.params), strict=True))
    # Same environments, masks and batches: every logged figure agrees.
    gap = max(abs(metrics[k] - float(two[f"metric:{k}"])) for k in metrics
              if k != "training/sps")
    assert moved > 1e-4  # the epoch did update the student (4 Adam steps of lr 1e-4)
    # Same batches, same losses; the summation order of the gradients differs, and Adam's
    # normalised steps turn rounding in near-zero gradient entries into a fraction of a step.
    assert gap < 1e-5 and diff < 1e-4, (diff, gap)


def _sizes(loop):
    env = loop._raw_env
    return env.observation_size, env.action_size


def test_cli_errors(teacher_run, tmp_path, capsys):
    code, out = run_cli(capsys, "train", "student", "--out", str(tmp_path / "a"))
    assert code == 2 and "--teacher DIR and --env ENV" in out
    code, out = run_cli(capsys, "train", "student", "--teacher", str(tmp_path / "missing"),
                        "--env", "ap2ap_wrench", "--out", str(tmp_path / "b"))
    assert code == 2 and "does not exist" in out
    code, out = run_cli(capsys, "train", "student", "--teacher", str(teacher_run), "--env",
                        "ap2ap", "--out", str(tmp_path / "c"))
    assert code == 2 and "trained on 'ap2ap_wrench'" in out
    code, out = run_cli(capsys, "train", "student", "--teacher", str(teacher_run), "--env",
                        "ap2ap_wrench", "--set", "dagger.nope=1", "--out", str(tmp_path / "d"))
    assert code == 2 and "dagger.learning_rate" in out
    code, out = run_cli(capsys, "train", "student", "--teacher", str(teacher_run), "--env",
                        "ap2ap_wrench", "--set", "dagger.learning_rate=fast", "--out",
                        str(tmp_path / "d"))
    assert code == 2 and "expected float" in out
    code, out = run_cli(capsys, "train", "student", "--resume", "--out", str(tmp_path / "e"))
    assert code == 2 and "Cannot resume" in out
    for path in ("a", "b", "c", "d"):
        assert not (tmp_path / path).exists()


def test_presets():
    paper = student_configs.get_config("paper")
    assert paper.dagger.num_envs == 3200 and paper.dagger.learning_rate == 1e-4
    assert paper.dagger.num_timesteps == 25_000 * 3200
    assert (paper.network.width, paper.network.num_layers, paper.network.num_heads) == (128, 4, 4)
    assert paper.masking.num_keep == 64 and paper.masking.variant == "paper"
    ablation = student_configs.get_config("quick", arch="mlp", world_model=False,
                                          encoder="decoupled", masking="code")
    assert ablation.network.arch == "mlp" and ablation.dagger.world_model_weight == 0.0
    assert ablation.network.encoder == "decoupled" and ablation.masking.variant == "code"
    with pytest.raises(ValueError, match="valid: transformer, mlp"):
        student_configs.get_config("quick", arch="rnn")
