"""Several processes under `jax.distributed` train as one process with as many devices.

The multi-host path of docs/training.md ("Several hosts"), on one machine. Two processes on
127.0.0.1, one CPU device each, joined through DEX4D_COORDINATOR, DEX4D_NUM_PROCESSES and
DEX4D_PROCESS_ID (CPU collectives: gloo over TCP), train the tiny teacher of tests/test_resume.py
(16 environments, two epochs) into one run folder; one process with two CPU devices
(`--xla_force_host_platform_device_count=2`) trains the same config into another, at the same
time. Both map the same 8 environments onto each of two devices and reduce over the same two
devices, so they compute the same thing: the final checkpoints (parameters, optimizer state,
normaliser, key) must agree within 1e-6 and every logged figure within a relative 1e-5.
Measured on jax 0.9.2: difference 0.0 in both, i.e. bitwise equal, for parameters that moved by
0.25. (A tiny DAgger student distilled the same two ways was bitwise equal too, parameters
moved by 8e-4; that check is left out of the suite for its 2.5 minutes: DAgger runs on the
same DeviceLayout, pmap and checkpoint code.)

Each training phase has a deadline: a hung collective fails the test and every process is
killed; a process that fails ends the phase at once, with its log. (Every process puts its
MJX model and data on its own `jax.local_devices()[0]`: with `jax.devices()[0]`, process 0's
device, process 1 failed while building its environments.)
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import assert_one_error_line, run_cli
from test_resume import _CACHE

from dex4d_jax.training import checkpoint

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 600  # seconds for one training phase (all its processes together)

# tests/test_resume.py's tiny_config(epochs=2), as command-line settings.
TEACHER = ["train", "teacher", "--env", "ap2ap_wrench", "--preset", "quick", "--no-progress",
           "--set", "env.num_objects=2", "--set", "network.policy_hidden=(32,)",
           "--set", "network.value_hidden=(32,)", "--set", "network.point_hidden=(16,)",
           "--set", "ppo.num_envs=16", "--set", "ppo.unroll_length=4",
           "--set", "ppo.batch_size=16", "--set", "ppo.num_minibatches=4",
           "--set", "ppo.num_updates_per_batch=2", "--set", "ppo.num_timesteps=1024",
           "--set", "ppo.num_evals=3", "--set", "ppo.episode_length=20",
           "--set", "ppo.num_eval_envs=8", "--set", "eval.num_episodes=8"]
TIMING = ("time", "training/sps", "training/walltime")  # wall-clock figures, never equal

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv, log, **env) -> subprocess.Popen:
    """`dex4d ARGV` in a subprocess on CPU devices, writing to the file `log`."""
    env = {**os.environ, "DEX4D_JAX_CACHE": _CACHE, "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_PLATFORMS": "cpu", **env}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "dex4d_jax.experiments.cli", *argv],
                                cwd=_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _failed(log) -> bool:
    """Whether a process wrote a traceback or an error line.

    A failing process of a job is slow to exit: JAX's shutdown barrier waits up to 5 minutes
    for the others.
    """
    with open(log) as f:
        text = f.read()
    return "Traceback (most recent call last)" in text or "\ndex4d: error:" in f"\n{text}"


def _tail(log) -> str:
    with open(log) as f:
        lines = [line for line in f.read().splitlines() if not line.startswith("    @")]
    return "\n".join(lines[-25:])


def _wait(procs: dict, deadline: float) -> None:
    """Waits for every process to succeed.

    On a failure or past the deadline the processes still running are killed and the test
    fails with the logs.
    """
    try:
        while True:
            codes = {log: p.poll() for log, p in procs.items()}
            failed = [log for log, code in codes.items()
                      if code not in (None, 0) or (code is None and _failed(log))]
            if failed:
                time.sleep(1)  # the rest of the traceback
                logs = "\n\n".join(f"== {log}\n{_tail(log)}" for log in failed)
                pytest.fail(f"a process failed:\n{logs}")
            if all(code == 0 for code in codes.values()):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {DEADLINE} s (a hung collective?):\n" + "\n\n".join(
                    f"== {log}\n{_tail(log)}" for log in procs))
            time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _train_both(argv, tmp_path, name):
    """Runs `dex4d ARGV` two ways at once: two processes of one CPU device, one of two.

    Returns:
      (the two processes' run folder `name_2p`, the one process's `name_1p`, process 0's PID).
    """
    two, one = tmp_path / f"{name}_2p", tmp_path / f"{name}_1p"
    address = f"127.0.0.1:{_free_port()}"
    procs = {}
    for index in (0, 1):
        log = tmp_path / f"{name}_process{index}.log"
        procs[log] = _start([*argv, "--out", str(two)], log,
                            XLA_FLAGS="--xla_force_host_platform_device_count=1",
                            DEX4D_COORDINATOR=address, DEX4D_NUM_PROCESSES="2",
                            DEX4D_PROCESS_ID=str(index))
    process0 = next(iter(procs.values())).pid
    log = tmp_path / f"{name}_one_process.log"
    procs[log] = _start([*argv, "--out", str(one)], log,
                        XLA_FLAGS="--xla_force_host_platform_device_count=2")
    _wait(procs, time.monotonic() + DEADLINE)
    return two, one, process0


def _files(run) -> set[str]:
    """The kinds of files in a run folder.

    TensorBoard's event files (named by time and host) count as `tb/EVENTS`, orbax's data files
    (named by hashes, as many as it chunks) as `HASH`.
    """
    names = set()
    for root, _, files in os.walk(run):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), run)
            names.add("tb/EVENTS" if rel.startswith("tb" + os.sep)
                      else re.sub("[0-9a-f]{32}", "HASH", rel))
    return names


def _assert_same_training(two, one, fmt, process0):
    """Same final checkpoint and metrics; process 0 alone wrote the shared folder."""
    # Process 1 wrote nothing of its own: the same kinds of files as the one-process run (no
    # `ocdbt.process_1`, no temporary file of another PID), one TensorBoard file, the lock of
    # process 0, each step logged once (below).
    assert _files(two) == _files(one)
    assert len(os.listdir(two / "tb")) == 1
    assert (two / ".lock").read_text().strip() == str(process0)
    last = sorted(os.listdir(two / "checkpoints"))[-1]
    assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))

    (a, meta_a), (b, meta_b) = (checkpoint.read_checkpoint(str(run / "checkpoints" / last), fmt)
                                for run in (two, one))
    first = checkpoint.read_checkpoint(str(one / "checkpoints" / f"{0:012d}"), fmt)[0]
    assert meta_a == meta_b
    assert jax.tree.structure(a) == jax.tree.structure(b)
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True) if np.size(x))
    moved = max(float(np.max(np.abs(x - y)))
                for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(first["params"]),
                                strict=True))
    assert moved > 1e-4 and diff <= 1e-6, (diff, moved)  # measured: diff 0.0

    records = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (two, one)]
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]]
    for x, y in zip(*records, strict=True):
        assert sorted(x) == sorted(y)
        for key in x:
            if key not in TIMING:
                assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), (x["step"], key)
    assert json.loads((two / "eval.json").read_text())["step"] == int(last)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """The tiny teacher trained by two processes and by one process with two devices."""
    return _train_both(TEACHER, tmp_path_factory.mktemp("distributed"), "teacher")


@pytest.mark.slow
def test_two_processes_train_a_teacher_as_one_process_with_two_devices(teachers):
    """The tiny teacher: same checkpoints and metrics, process 0 alone writes."""
    _assert_same_training(*teachers[:2], checkpoint.PPO_FORMAT, teachers[2])


@pytest.mark.parametrize("env, named", [
    ({"DEX4D_COORDINATOR": "127.0.0.1"}, "DEX4D_NUM_PROCESSES and DEX4D_PROCESS_ID not set"),
    ({"DEX4D_COORDINATOR": "127.0.0.1", "DEX4D_NUM_PROCESSES": "2", "DEX4D_PROCESS_ID": "0"},
     "DEX4D_COORDINATOR=127.0.0.1 is not HOST:PORT"),
    ({"DEX4D_COORDINATOR": "127.0.0.1:99999", "DEX4D_NUM_PROCESSES": "2",
      "DEX4D_PROCESS_ID": "0"}, "DEX4D_COORDINATOR=127.0.0.1:99999 is not HOST:PORT"),
    ({"DEX4D_COORDINATOR": "127.0.0.1:1234", "DEX4D_NUM_PROCESSES": "0",
      "DEX4D_PROCESS_ID": "0"}, "DEX4D_NUM_PROCESSES=0 is not a positive whole number"),
    ({"DEX4D_COORDINATOR": "127.0.0.1:1234", "DEX4D_NUM_PROCESSES": "2",
      "DEX4D_PROCESS_ID": "2"}, "DEX4D_PROCESS_ID=2 is not one of 0..1"),
    ({"DEX4D_COORDINATOR": "127.0.0.1:1234", "DEX4D_NUM_PROCESSES": "2",
      "DEX4D_PROCESS_ID": "-1"}, "DEX4D_PROCESS_ID=-1 is not one of 0..1"),
])
@pytest.mark.parametrize("policy", ["teacher", "student"])
def test_bad_distributed_settings_are_one_line(env, named, policy, monkeypatch, tmp_path,
                                               capsys):
    """Missing or malformed DEX4D_* variables: one error line, exit 2, no run folder."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    code, text = run_cli(capsys, "train", policy, "--out", str(out))
    assert_one_error_line(code, text, named)
    assert not out.exists()
