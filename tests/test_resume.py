"""Our PPO loop: full resume after SIGKILL, the divergence guard, warm starts, several devices.

All runs use one tiny configuration (16 environments, 4-step unrolls, 32-unit networks, two
objects), so they share their compiled programs through the persistent compilation cache.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from dex4d_jax.teacher import ppo
from dex4d_jax.training import checkpoint, loop, policies, run_dir

from helpers import envs_of, run_cli, train_teacher

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CACHE = os.environ.get("DEX4D_JAX_CACHE", os.path.join(_ROOT, ".jax_cache"))

TINY = """
from dex4d_jax.experiments.configs import teacher

def tiny_config(epochs=12, learning_rate=3e-4):
    c = teacher.get_config("quick")
    c.env.num_objects = 2
    c.network.update(policy_hidden=(32,), value_hidden=(32,), point_hidden=(16,))
    c.ppo.update(num_envs=16, unroll_length=4, batch_size=16, num_minibatches=4,
                 num_updates_per_batch=2, num_timesteps=epochs * 512, num_evals=epochs + 1,
                 episode_length=20, num_eval_envs=8, learning_rate=learning_rate)
    c.eval.num_episodes = 8
    return c
"""
_namespace = {}
exec(TINY, _namespace)  # one definition, shared with the subprocesses below
tiny_config = _namespace["tiny_config"]


def _subprocess_env(**extra):
    return {**os.environ, "DEX4D_JAX_CACHE": _CACHE, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _python(script: str) -> list[str]:
    prelude = ("import jax\n"
               f"jax.config.update('jax_compilation_cache_dir', {_CACHE!r})\n"
               "jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)\n")
    return [sys.executable, "-c", prelude + TINY + textwrap.dedent(script)]


def _tree(path):
    return checkpoint.read_checkpoint(path)


def _assert_same(path_a, path_b):
    (a, meta_a), (b, meta_b) = _tree(path_a), _tree(path_b)
    assert meta_a == meta_b
    same = jax.tree.map(np.array_equal, a, b)
    assert all(jax.tree.leaves(same)), (path_a, path_b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-epoch tiny run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_teacher(tiny_config(), str(out), progress=False, log=lambda _: None)
    return out


@pytest.mark.slow
def test_sigkill_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "run"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        _python(f"""
            from dex4d_jax import envs
            from dex4d_jax.teacher import train
            c = tiny_config()
            train.train_teacher(c, {str(out)!r}, envs.from_run_config(c),
                                envs.from_run_config(c, evaluation=True), progress=False)
        """), cwd=_ROOT, env=_subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if [s for s, _ in run_dir.list_checkpoints(str(out)) if s > 0]:
            break
        time.sleep(0.02)
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()

    # Only complete checkpoints are listed, and each is a readable full state.
    root = out / "checkpoints"
    listed = run_dir.list_checkpoints(str(out))
    killed_at = listed[-1][0]
    assert 0 < killed_at < 12 * 512
    for _, path in listed:
        assert checkpoint.read_meta(path)["step"] == int(os.path.basename(path))
    (root / "000000099999.orbax-checkpoint-tmp-1234").mkdir()  # as a SIGKILL mid-save leaves
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [s for s, _ in listed]

    resumed = subprocess.run(
        [sys.executable, "-m", "dex4d_jax.experiments.cli", "train", "teacher", "--resume",
         "--out", str(out), "--no-progress"],
        cwd=_ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming {out} at step {killed_at:,}" in resumed.stdout
    assert not [n for n in os.listdir(root) if checkpoint.TMP_MARKER in n]  # stale tmp cleaned

    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines]
    # The killed run's records up to the restored step, then the resumed run's: every step
    # once, in order, and the time counting on.
    assert steps == list(range(0, 12 * 512 + 1, 512))
    times = [line["time"] for line in lines]
    assert times == sorted(times)
    # Optimizer moments, adaptive learning rate, key, normaliser and params were all restored:
    # every checkpoint after the restore is bitwise the uninterrupted run's.
    expected = run_dir.list_checkpoints(str(reference))
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [s for s, _ in expected]
    for (_, path), (_, ref) in zip(run_dir.list_checkpoints(str(out)), expected, strict=True):
        _assert_same(path, ref)
    assert json.loads((out / "eval.json").read_text())["step"] == 12 * 512


def test_resuming_a_finished_run_rewrites_the_same_eval_json(reference, tmp_path):
    """No epoch left: the last checkpoint is evaluated again, and eval.json keeps the run's
    training time (metrics.jsonl's last `time`), not the resume's few seconds."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = json.loads((run / "eval.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert before["train_seconds"] == last["time"] and before["step"] == last["step"]
    logged = []
    train_teacher(None, str(run), resume=True, progress=False, log=logged.append)
    assert any("already complete" in line for line in logged), logged
    assert json.loads((run / "eval.json").read_text()) == before
    assert (run / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_divergence_stops_without_saving_and_names_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(loop.TrainingDiverged) as err:
        train_teacher(tiny_config(epochs=2, learning_rate=float("nan")), str(out),
                            progress=False, log=lambda _: None)
    good = out / "checkpoints" / "000000000000"
    message = str(err.value)
    assert "diverged" in message and "training/total_loss" in message
    assert f"step 0 at {good}" in message and "--init-from" in message
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [0]
    # Resuming would repeat the same NaN learning rate: the saved config is refused at once,
    # naming the setting and the file, before anything runs.
    code, text = run_cli(capsys, "train", "teacher", "--resume", "--out", str(out),
                         "--no-progress")
    assert code == 2 and "dex4d: error: ppo.learning_rate=nan" in text
    assert str(out / "config.json") in text
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [0]


@pytest.mark.slow
def test_init_from_starts_a_new_run_with_the_source_params_and_a_fresh_optimizer(
        reference, tmp_path):
    out = tmp_path / "stage3"
    source_step, source = run_dir.list_checkpoints(str(reference))[-1]
    train_teacher(tiny_config(epochs=1, learning_rate=1e-4), str(out), progress=False,
                        log=lambda _: None, init_from=str(reference))
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] == {"path": source, "step": source_step}
    (start, _), (src, _) = _tree(str(out / "checkpoints" / "000000000000")), _tree(source)
    same = jax.tree.map(np.array_equal, {k: start[k] for k in ("params", "normalizer")},
                        {k: src[k] for k in ("params", "normalizer")})
    assert all(jax.tree.leaves(same))
    fresh = ppo.PPO(envs_of(tiny_config())[0], policies.teacher_networks(
        tiny_config(), *_sizes()), tiny_config(learning_rate=1e-4).ppo).init_state(0)
    for saved, new in zip(start["optimizer"], jax.tree.leaves(fresh.training.optimizer_state),
                          strict=True):
        np.testing.assert_array_equal(saved, new)  # Adam count 0, zero moments, lr 1e-4
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [0, 512]

    # A checkpoint of other networks, or no checkpoint at all, is a clear error.
    other = tiny_config()
    other.network.policy_hidden = (48,)
    with pytest.raises(checkpoint.CheckpointError, match=source):
        train_teacher(other, str(tmp_path / "bad"), progress=False, init_from=source)
    assert not (tmp_path / "bad").exists()  # a refused setup leaves no folder behind
    # A checkpoint is found from a relative path too.
    relative = os.path.relpath(source)
    assert all(jax.tree.leaves(jax.tree.map(
        np.array_equal, policies.load_inference_params(relative)[1], src["params"]["policy"])))
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        train_teacher(tiny_config(), str(tmp_path / "bad2"), progress=False,
                            init_from=str(tmp_path / "nothing-here"))


def _sizes():
    env = envs_of(tiny_config())[0]
    return env.observation_size, env.action_size


@pytest.mark.slow
def test_two_devices_compute_what_one_device_does():
    # Without advantage normalisation (Brax's normalises over each device's share of a
    # minibatch), one epoch on 2 devices is the 1-device epoch up to float32 reduction order.
    script = """
        import numpy as np
        from dex4d_jax import envs
        from dex4d_jax.teacher import ppo
        from dex4d_jax.training import policies
        assert jax.local_device_count() == 2
        c = tiny_config(epochs=1)
        c.ppo.normalize_advantage = False
        env = envs.from_run_config(c)
        net = policies.teacher_networks(c, env.observation_size, env.action_size)
        start = ppo.PPO(env, net, c.ppo).init_state(0)
        ends = [ppo.PPO(env, net, c.ppo, max_devices=d).run_epoch(start)[0]
                for d in (1, 2)]
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
            jax.tree.leaves(ends[0].training.params), jax.tree.leaves(ends[1].training.params)))
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
            jax.tree.leaves(ends[0].training.params), jax.tree.leaves(start.training.params)))
        lr = [float(e.training.optimizer_state[1].hyperparams["learning_rate"]) for e in ends]
        print("RESULT", diff, moved, lr[0], lr[1])
    """
    done = subprocess.run(
        _python(script), cwd=_ROOT, capture_output=True, text=True, timeout=400,
        env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert done.returncode == 0, done.stderr[-3000:]
    diff, moved, lr1, lr2 = map(float, done.stdout.split("RESULT")[1].split())
    # Two iterations of 16 Adam steps move the parameters by about 0.08; reordered float32
    # sums give differences of about 1e-6 (measured), far below what a different minibatch
    # partition, key or gradient average would give (1e-2 and more).
    assert moved > 0.01 and diff < 1e-4, (diff, moved)
    assert lr1 == lr2
