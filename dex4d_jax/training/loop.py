"""The epoch loop every trainer runs: loop state, schedule, device layout, epochs, logging.

An algorithm (PPO in `dex4d_jax.teacher.ppo`, DAgger in `dex4d_jax.student.dagger`) supplies
one compiled program per epoch, `program(training [devices, ...], key, *inputs, env_ids) ->
(training, metrics, finite)`, pmapped over the local devices with `DeviceLayout.pmap`; this
module runs it (`run_epoch`) and drives a whole run (`run_epochs`): progress bar, one line of
`metrics.jsonl` and TensorBoard scalars per epoch, a checkpoint per epoch, evaluation, the
divergence guard and Ctrl-C.

The state between epochs (`LoopState`) lives on the host, so every epoch sees the same input
types whether it follows another epoch or a restore, and a resumed run is bitwise the
uninterrupted one. Randomness never depends on the number of devices: environments are
numbered globally (`DeviceLayout.env_ids`) and their keys folded from those numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from dex4d_jax.training import run_dir

AXIS = "i"
T = TypeVar("T")


class TrainingDiverged(RuntimeError):
    """A loss, parameter or optimizer value became NaN or infinite; nothing was saved."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run can be resumed from."""


@dataclasses.dataclass
class LoopState(Generic[T]):
    """The whole state of a run between epochs, on the host.

    Attributes:
      training: the algorithm's training state (numpy leaves): PPO's `TrainingState`, DAgger's
        `StudentTrainingState`, ...
      key: the PRNG key of the next epoch (uint32[2]).
      env_steps: environment steps trained so far.
    """

    training: T
    key: np.ndarray
    env_steps: int


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's environment steps divide into iterations and epochs.

    An iteration is one collection of `steps_per_iteration` environment steps and the updates
    on them; an epoch is `iterations_per_epoch` iterations followed by a checkpoint and an
    evaluation. As in Brax, a run has `num_evals - 1` epochs (fewer when the budget is too
    small for that many iterations), and ends at or a little past `num_timesteps`.
    """

    steps_per_iteration: int
    iterations_per_epoch: int
    num_epochs: int

    @property
    def steps_per_epoch(self) -> int:
        """Environment steps per epoch."""
        return self.steps_per_iteration * self.iterations_per_epoch

    @property
    def total_steps(self) -> int:
        """Environment steps at the end of the run."""
        return self.steps_per_epoch * self.num_epochs

    @classmethod
    def make(cls, per_iteration: int, num_timesteps: int, num_evals: int) -> Schedule:
        """`num_evals - 1` epochs of whole iterations covering `num_timesteps` steps."""
        iterations = math.ceil(num_timesteps / per_iteration)
        epochs = max(1, min(max(num_evals - 1, 1), iterations))
        iterations = max(1, math.ceil(num_timesteps / (epochs * per_iteration)))
        return cls(per_iteration, iterations, epochs)


class DeviceLayout:
    """`num_envs` environments spread evenly over the local devices of every process.

    Args:
      num_envs: environments in the whole job (all processes).
      max_devices: use at most this many local devices (default: all).

    Attributes:
      local_devices: the devices this process uses.
      devices: the devices of the whole job, process by process (what `pmap` maps over; the
        same sequence in every process).
      device_count: devices in the whole job.
      envs_per_device: environments on each device.
      env_ids: int32 [local devices, envs_per_device], each environment's global index.

    Raises:
      ValueError: `num_envs` is not a multiple of the job's device count.
    """

    def __init__(self, num_envs: int, max_devices: int | None = None):
        self.local_devices = jax.local_devices()[:max_devices]
        local = len(self.local_devices)
        self.devices = [d for p in range(jax.process_count())
                        for d in jax.local_devices(process_index=p)[:max_devices]]
        self.device_count = len(self.devices)
        if num_envs % self.device_count:
            raise ValueError(f"num_envs ({num_envs}) must be a multiple of the "
                             f"{self.device_count} devices.")
        self.envs_per_device = num_envs // self.device_count
        first = jax.process_index() * local * self.envs_per_device
        self.env_ids = (first + np.arange(local * self.envs_per_device, dtype=np.int32)
                        ).reshape(local, self.envs_per_device)

    def pmap(self, program: Callable, num_inputs: int = 0) -> Callable:
        """`program(training, key, *inputs, env_ids)` pmapped over the local devices.

        The training state and env_ids are split over devices; the key and the `num_inputs`
        inputs between them are the same on every device.
        """
        in_axes = (0, None) + (None,) * num_inputs + (0,)
        return jax.pmap(program, axis_name=AXIS, in_axes=in_axes, devices=self.devices)

    def replicate(self, tree):
        """A host pytree broadcast to [local devices, ...] (no copy)."""
        local = len(self.local_devices)
        return jax.tree.map(lambda x: np.broadcast_to(x, (local,) + x.shape), tree)


def host(tree):
    """Numpy copies of a pytree's leaves."""
    return jax.tree.map(np.asarray, tree)


def unreplicate(tree):
    """Numpy copy of the first local device's slice of a pmap output."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)


def across_devices(name: str, value):
    """A metric over all devices: the largest of the maxima, the smallest minimum, the mean."""
    if "_max_" in name:
        return jax.lax.pmax(value, axis_name=AXIS)
    if "_min_" in name:
        return jax.lax.pmin(value, axis_name=AXIS)
    return jax.lax.pmean(value, axis_name=AXIS)


def all_finite(tree) -> jax.Array:
    """Whether every inexact leaf of `tree` is finite (a scalar bool array)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def epoch_summary(training, metrics: dict) -> tuple[dict, jax.Array]:
    """Inside an epoch program: (each metric's mean over the epoch and all devices, whether
    the training state and the metrics are all finite).
    """
    metrics = {k: across_devices(k, jnp.mean(v)) for k, v in metrics.items()}
    return metrics, jnp.logical_and(all_finite(training), all_finite(metrics))


def run_epoch(program: Callable, layout: DeviceLayout, state: LoopState, steps_per_epoch: int,
              *inputs) -> tuple[LoopState, dict[str, float], bool]:
    """One epoch of a `DeviceLayout.pmap`ped program from `state`.

    Returns:
      (next state, `training/...` metrics with `training/sps`, whether all values are finite).
    """
    key, epoch_key = jax.random.split(jnp.asarray(state.key))
    start = time.time()
    training, metrics, finite = program(layout.replicate(state.training), epoch_key, *inputs,
                                        layout.env_ids)
    metrics = {k: float(v) for k, v in unreplicate(metrics).items()}
    seconds = time.time() - start
    finite = bool(np.all(np.asarray(finite))) and all(map(math.isfinite, metrics.values()))
    metrics = {"training/sps": steps_per_epoch / seconds,
               **{f"training/{k}": v for k, v in metrics.items()}}
    steps = state.env_steps + steps_per_epoch
    return LoopState(unreplicate(training), np.asarray(key), steps), metrics, finite


def diverged_message(what_diverged: str, out_dir: str, step: int, metrics: dict,
                     advice: str) -> str:
    """The message of TrainingDiverged: which values, the last good checkpoint, `advice`."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    what = f"non-finite {', '.join(bad)}" if bad else "non-finite parameters or optimizer state"
    saved = run_dir.list_checkpoints(out_dir)
    where = (f" Last good checkpoint: step {saved[-1][0]:,} at {saved[-1][1]}." if saved
             else " No checkpoint was written.")
    return (f"{what_diverged} diverged in the epoch ending at step {step:,} ({what}); nothing "
            f"of that epoch was saved.{where} {advice}")


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return float(np.asarray(value).mean())
    return value


def run_epochs(out_dir: str, state: LoopState, schedule: Schedule,
               run_epoch_fn: Callable[[LoopState], tuple[LoopState, dict, bool]],
               save: Callable[[str, LoopState, int], Any],
               evaluate: Callable[[LoopState], dict],
               on_diverged: Callable[[int, dict], str], progress: bool = True,
               start_step: int = 0) -> LoopState:
    """Drives a run to the schedule's end; returns the final state.

    Evaluates `state` first, then until the schedule's end: `run_epoch_fn(state) -> (state,
    metrics, finite)`, `save(checkpoints root, state, epoch)` on process 0,
    `evaluate(state) -> dict`, one line of metrics.jsonl and TensorBoard scalars per epoch, a
    progress bar.

    Raises:
      TrainingDiverged: an epoch was not finite; its message is `on_diverged(step, metrics)`
        and nothing of that epoch is saved.
      Interrupted: Ctrl-C; its message says where to resume from.
    """
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (heavy import, only for training)
    from tqdm import tqdm  # noqa: PLC0415

    writer_process = jax.process_index() == 0
    root = os.path.join(out_dir, run_dir.CHECKPOINT_DIR)
    total = schedule.total_steps
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    logged = _metrics_up_to(metrics_path, state.env_steps) if writer_process else []
    writer = SummaryWriter(os.path.join(out_dir, "tb")) if writer_process else None
    bar = tqdm(total=total, initial=start_step, unit="step", unit_scale=True,
               disable=not (progress and writer_process), dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    # A resumed run's `time` counts on from its last record.
    t0 = time.time() - (logged[-1].get("time", 0.0) if logged else 0.0)
    walltime = next((r["training/walltime"] for r in reversed(logged)
                     if "training/walltime" in r), 0.0)

    def evaluate_and_log(step, metrics):
        if not writer_process:
            return
        result = evaluate(state)
        record = {"step": step, "time": time.time() - t0,
                  **{k: _jsonable(v) for k, v in metrics.items()},
                  **{f"eval/{k}": _jsonable(v) for k, v in result.items()}}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
        writer.flush()
        bar.update(max(step - bar.n, 0))
        bar.set_postfix(reward=f"{record['eval/episode_reward']:.1f}",
                        success=f"{record['eval/success_rate']:.2f}")

    ticker = _Ticker(bar)  # the elapsed time moves while a program compiles
    try:
        # The first evaluation and the first epoch compile (minutes for the robot on a CPU).
        if not (logged and logged[-1]["step"] == state.env_steps):  # not twice at one step
            bar.set_description("compiling evaluation")
            evaluate_and_log(state.env_steps, {})
        first = True
        while state.env_steps < total:
            epoch = state.env_steps // schedule.steps_per_epoch
            bar.set_description("compiling training" if first else "training")
            next_state, metrics, finite = run_epoch_fn(state)
            bar.set_description("training")
            first = False
            if not finite:
                raise TrainingDiverged(on_diverged(next_state.env_steps, metrics))
            state = next_state
            walltime += schedule.steps_per_epoch / metrics["training/sps"]
            metrics["training/walltime"] = walltime
            if writer_process:
                save(root, state, epoch + 1)
            evaluate_and_log(state.env_steps, metrics)
    except KeyboardInterrupt as err:
        bar.close()
        saved = run_dir.list_checkpoints(out_dir)
        where = f"step {saved[-1][0]:,}" if saved else "nothing yet"
        raise Interrupted(f"Interrupted. Last checkpoint: {where}. Continue with --resume "
                          f"--out {out_dir}") from err
    finally:
        ticker.stop()
        bar.close()
        if writer is not None:
            writer.close()
    return state


class _Ticker:
    """Refreshes a progress bar once a second from a daemon thread, so that its elapsed time
    keeps moving while the main thread waits on a compile (tqdm redraws only on updates)."""

    def __init__(self, bar, interval: float = 1.0):
        self._bar, self._stop = bar, threading.Event()
        self._thread = None
        if not bar.disable:
            self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
            self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._bar.refresh()

    def stop(self) -> None:
        """Stops refreshing (before the bar is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _metrics_up_to(path: str, step: int) -> list[dict]:
    """The records of metrics.jsonl up to `step` (a resumed run's restore point); records
    past it (their checkpoints are gone) and lines cut short by a kill are dropped from the
    file, so that no step is ever logged twice."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    kept, text = [], []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) \
                and record["step"] <= step:
            kept.append(record)
            text.append(line)
    if len(text) != len(lines):
        run_dir.write_atomic(path, "".join(t + "\n" for t in text))
    return kept


def last_record(out_dir: str) -> dict:
    """The last record of a run's metrics.jsonl ({} when it has none).

    Its `time` is the run's training time in seconds up to its last evaluation, counted on
    across resumed sessions, and its `training/...` entries are the last epoch's; the
    trainers' eval.json takes both from here, so that resuming a finished run (no epoch left
    to run) rewrites the same eval.json.
    """
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        for line in reversed(f.read().splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return record
    return {}


def check_resumable(state: LoopState, schedule: Schedule, path: str) -> None:
    """Raises RunDirError unless a restored state lies on an epoch boundary of `schedule`."""
    if state.env_steps % schedule.steps_per_epoch:
        raise run_dir.RunDirError(f"Checkpoint {path} is not at an epoch boundary of this "
                                  "run's schedule.")
