"""Teacher training with our PPO loop (ppo_loop.py): logging, checkpoints, resume, evaluation.

A run directory holds:
  config.json          the resolved configuration (written before training starts)
  metrics.jsonl        one JSON object per evaluation (step, wall time, every training metric);
                       a resumed run appends to it
  tb/                  TensorBoard scalars
  checkpoints/<step>/  one orbax checkpoint per epoch (and one at step 0) holding the whole
                       training state: parameters, normaliser, optimizer state, PRNG key, step
                       (layout in ppo_loop.py). Saves go through a `*.orbax-checkpoint-tmp-*`
                       folder renamed when complete, so an interrupted save is never listed.
  eval.json            the final deterministic evaluation on freshly sampled episodes
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable

import jax
import numpy as np
from brax.training.agents.ppo import networks as ppo_networks
from ml_collections import config_dict

from dex4d_jax import envs
from dex4d_jax.networks import ppo as point_networks
from dex4d_jax.teacher import evaluate as evaluation
from dex4d_jax.teacher import ppo_loop

CHECKPOINT_DIR = "checkpoints"


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists, or nothing to resume)."""


def network_factory(config: config_dict.ConfigDict):
    """The PPO network factory of a config's `network` section."""
    return functools.partial(point_networks.make_ppo_networks, **config.network.to_dict())


def make_env(config: config_dict.ConfigDict, evaluation: bool = False):
    """The environment of a config's `env` section.

    With `evaluation`, domain randomization (where the environment has it) is off unless the
    config's `eval.randomization` asks for it: training randomizes, evaluation does not.
    """
    overrides = config.env.overrides.to_dict()
    if evaluation and "domain_randomization" in envs.get_default_config(config.env.name):
        overrides["domain_randomization"] = bool(config.eval.get("randomization", False))
    return envs.load(config.env.name, **overrides)


def list_checkpoints(out_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints of a run as (step, path), oldest first.

    Orbax writes each checkpoint into a `*.orbax-checkpoint-tmp-*` folder and renames it when
    complete, so a save interrupted midway is never listed.
    """
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if ppo_loop.is_complete(path):
            found.append((int(name), path))
    return sorted(found)


def load_params(path: str):
    """Loads (normalizer, policy, value) params from a checkpoint folder, failing clearly."""
    return ppo_loop.load_inference_params(path)


def read_run_config(run_dir: str) -> config_dict.ConfigDict:
    """The config.json of a run directory, failing clearly."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise RunDirError(f"{path} not found (is {run_dir} a training run?).")
    with open(path) as f:
        return config_dict.ConfigDict(_tuples(json.load(f)))


def load_policy(path: str, env):
    """A teacher's deterministic policy from a run or checkpoint folder.

    Returns:
      (policy_fn(params, batched obs) -> action, params, run config, step, checkpoint path).
    """
    step, checkpoint = resolve_checkpoint(path)
    config = read_run_config(os.path.dirname(os.path.dirname(checkpoint)))
    networks = network_factory(config)(env.observation_size, env.action_size)
    params = load_params(checkpoint)
    ppo_loop.check_fits(networks.policy_network.init(jax.random.PRNGKey(0)), params[1],
                        "policy parameters", checkpoint)
    return deterministic_policy(networks), params, config, step, checkpoint


def deterministic_policy(networks):
    """`(params, batched obs) -> action`: the mode of the PPO networks' policy."""
    inference = ppo_networks.make_inference_fn(networks)

    def policy_fn(p, obs):
        return inference(p, deterministic=True)(obs, jax.random.PRNGKey(0))[0]

    return policy_fn


def resolve_checkpoint(path: str) -> tuple[int, str]:
    """(step, checkpoint folder) of `path`: a checkpoint, or a run (its latest checkpoint)."""
    path = os.path.abspath(path)
    if ppo_loop.is_complete(path):
        return int(os.path.basename(os.path.normpath(path))), path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} does not exist (expected a run or checkpoint folder).")
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise RunDirError(f"{path} is neither a checkpoint nor a run with a complete checkpoint "
                          f"in {CHECKPOINT_DIR}/.")
    return checkpoints[-1]


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return float(np.asarray(value).mean())
    return value


def _tuples(value):
    """JSON gives lists where the config held tuples; turn them back, at any depth."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def prepare_run_dir(out_dir: str, config: config_dict.ConfigDict | None, resume: bool,
                    check: Callable[[str], object] = None):
    """Checks the run directory and returns (config, start step, checkpoint path or None).

    A fresh run needs `out_dir` absent or empty; `resume` needs a run with a checkpoint, and
    continues from its saved config (a differing `config` is an error, not silently used). On
    resume, folders of interrupted saves are deleted and the latest complete checkpoint is
    read once (by `check`, default `load_params`), so a corrupt one fails here with its path.
    """
    config_path = os.path.join(out_dir, "config.json")
    writer = jax.process_index() == 0
    if not resume:
        if writer and os.path.isdir(out_dir) and os.listdir(out_dir):
            raise RunDirError(
                f"Output directory {out_dir} already exists and is not empty. Choose a new "
                "--out, or pass --resume to continue the run in it.")
        if config is None:
            raise ValueError("A fresh run needs a config.")
        if writer:
            os.makedirs(out_dir, exist_ok=True)
            with open(config_path, "w") as f:
                f.write(config.to_json(indent=2))
        return config, 0, None
    if not os.path.isfile(config_path):
        raise RunDirError(f"Cannot resume: {config_path} not found (is {out_dir} a training run?).")
    saved = read_run_config(out_dir)
    if config is not None and config.to_dict() != saved.to_dict():
        raise RunDirError(
            f"--resume continues with the config saved in {config_path}; the arguments given "
            "describe a different run. Drop them, or start a new --out.")
    if writer:
        ppo_loop.remove_stale_tmp(os.path.join(out_dir, CHECKPOINT_DIR))
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        raise RunDirError(f"Cannot resume: no complete checkpoint in {out_dir}/{CHECKPOINT_DIR}.")
    step, path = checkpoints[-1]
    (check or load_params)(path)  # fail now, clearly, on a corrupt checkpoint
    return saved, step, path


def _diverged_message(out_dir: str, step: int, metrics: dict) -> str:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    what = f"non-finite {', '.join(bad)}" if bad else "non-finite parameters or optimizer state"
    saved = list_checkpoints(out_dir)
    head = (f"Training diverged in the epoch ending at step {step:,} ({what}); nothing of that "
            "epoch was saved.")
    if not saved:
        return head + " No checkpoint was written; start again with a lower --learning-rate."
    good_step, good_path = saved[-1]
    return (f"{head} Last good checkpoint: step {good_step:,} at {good_path}. Resuming it would "
            "repeat the same computation, so start a new run from it with a fresh optimizer and "
            f"a lower learning rate: dex4d train teacher --init-from {good_path} "
            "--learning-rate LR --out NEW_DIR (with the same --env/--encoder/--preset/--set).")


def run_epochs(out_dir: str, state: ppo_loop.LoopState, schedule: ppo_loop.Schedule,
               run_epoch, save, evaluate, diverged_message, progress: bool = True,
               log: Callable[[str], None] = print, start_step: int = 0) -> ppo_loop.LoopState:
    """The epoch loop shared by teacher and student training; returns the final state.

    Evaluates `state` first, then until the schedule's end: `run_epoch(state) -> (state,
    metrics, finite)`, `save(root, state, epoch)` on process 0, `evaluate(state) -> dict`, one
    line of metrics.jsonl and TensorBoard scalars per epoch, a progress bar. A non-finite epoch
    raises TrainingDiverged with `diverged_message(out_dir, step, metrics)` before anything of
    it is saved; Ctrl-C prints where to resume from and re-raises.
    """
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (heavy import, only for training)
    from tqdm import tqdm  # noqa: PLC0415

    writer_process = jax.process_index() == 0
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    total = schedule.total_steps
    writer = SummaryWriter(os.path.join(out_dir, "tb")) if writer_process else None
    bar = tqdm(total=total, initial=start_step, unit="step", unit_scale=True,
               disable=not (progress and writer_process), dynamic_ncols=True)
    t0 = time.time()
    walltime = 0.0

    def evaluate_and_log(step, metrics):
        if not writer_process:
            return
        result = evaluate(state)
        record = {"step": step, "time": time.time() - t0,
                  **{k: _jsonable(v) for k, v in metrics.items()},
                  **{f"eval/{k}": _jsonable(v) for k, v in result.items()}}
        with open(os.path.join(out_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
        writer.flush()
        bar.update(max(step - bar.n, 0))
        bar.set_postfix(reward=f"{record['eval/episode_reward']:.1f}",
                        success=f"{record['eval/success_rate']:.2f}")

    try:
        # The first evaluation and the first epoch compile (minutes for the robot on a CPU).
        bar.set_description("compiling evaluation")
        evaluate_and_log(state.env_steps, {})
        first = True
        while state.env_steps < total:
            epoch = state.env_steps // schedule.steps_per_epoch
            bar.set_description("compiling training" if first else "training")
            next_state, metrics, finite = run_epoch(state)
            bar.set_description("training")
            first = False
            if not finite:
                raise ppo_loop.TrainingDiverged(
                    diverged_message(out_dir, next_state.env_steps, metrics))
            state = next_state
            walltime += schedule.steps_per_epoch / metrics["training/sps"]
            metrics["training/walltime"] = walltime
            if writer_process:
                save(root, state, epoch + 1)
            evaluate_and_log(state.env_steps, metrics)
    except KeyboardInterrupt:
        bar.close()
        saved = list_checkpoints(out_dir)
        where = f"step {saved[-1][0]:,}" if saved else "nothing yet"
        log(f"\nInterrupted. Last checkpoint: {where}. Continue with --resume --out {out_dir}")
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return state


def train_teacher(config: config_dict.ConfigDict | None, out_dir: str, resume: bool = False,
                  progress: bool = True, log: Callable[[str], None] = print,
                  init_from: str | None = None) -> evaluation.EvalResult:
    """Trains (or resumes) a teacher, checkpointing into `out_dir`, and evaluates it.

    Args:
      config: the run configuration (see experiments/configs/teacher.py); None on resume.
      out_dir: run directory.
      resume: continue the run in `out_dir` from its latest complete checkpoint, with its
        optimizer state, step count, PRNG key, normaliser and parameters.
      progress: show a progress bar.
      log: where to print messages.
      init_from: a run or checkpoint folder whose parameters and normaliser start this (new)
        run, with a fresh optimizer at step 0; recorded in config.json as `init_from`.

    Returns:
      The final evaluation, also written to `out_dir/eval.json`.

    Raises:
      ppo_loop.TrainingDiverged: a loss, parameter or optimizer value became NaN or infinite;
        the message names the last good checkpoint and how to go on from it.
    """
    out_dir = os.path.abspath(out_dir)  # orbax needs absolute paths
    source = None
    if init_from is not None:
        if resume or config is None:
            raise RunDirError("--init-from starts a new run; it cannot be combined with --resume.")
        source_step, source = resolve_checkpoint(init_from)
        warm = load_params(source)
        config = config_dict.ConfigDict(config.to_dict())
        config.init_from = {"path": source, "step": source_step}
    config, start_step, restore_path = prepare_run_dir(out_dir, config, resume)
    ppo_cfg = config.ppo
    env = make_env(config)
    writer_process = jax.process_index() == 0

    factory = network_factory(config)
    networks = factory(env.observation_size, env.action_size)
    loop = ppo_loop.PPOLoop(env, networks, ppo_cfg)
    schedule = loop.schedule
    total = schedule.total_steps
    state = loop.init_state(ppo_cfg.seed)
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    if resume:
        state = ppo_loop.restore_checkpoint(restore_path, state)
        if state.env_steps % schedule.steps_per_epoch:
            raise RunDirError(f"Checkpoint {restore_path} is not at an epoch boundary of this "
                              "run's schedule.")
        log(f"Resuming {out_dir} at step {start_step:,} of {total:,}.")
        if state.env_steps >= total:
            log("The run is already complete; evaluating its last checkpoint.")
    else:
        if source is not None:
            state = loop.warm_start(state, *warm, source=source)
            log(f"Starting from the parameters of {source} (step {source_step:,}).")
        if writer_process:  # step 0: resumable at once, and a good checkpoint to fall back to
            ppo_loop.save_checkpoint(root, state, 0)

    rollout = evaluation.make_rollout(make_env(config, evaluation=True),
                                      deterministic_policy(networks), ppo_cfg.episode_length)

    def run_eval(params, num_episodes, seed):
        return evaluation.evaluate(rollout, params, num_episodes, seed,
                                   batch_size=ppo_cfg.num_eval_envs)

    def evaluate_params(state):
        return run_eval(loop.inference_params(state), ppo_cfg.num_eval_envs,
                        config.eval.seed + 1).as_dict()

    t0 = time.time()
    state = run_epochs(out_dir, state, schedule, loop.run_epoch, ppo_loop.save_checkpoint,
                       evaluate_params, _diverged_message, progress=progress, log=log,
                       start_step=start_step)
    result = run_eval(loop.inference_params(state), config.eval.num_episodes, config.eval.seed)
    if writer_process:
        with open(os.path.join(out_dir, "eval.json"), "w") as f:
            json.dump({"step": state.env_steps, "train_seconds": time.time() - t0,
                       **result.as_dict()}, f, indent=2)
    return result
