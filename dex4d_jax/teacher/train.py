"""Teacher training with Brax PPO: logging, orbax checkpoints, resume and final evaluation.

A run directory holds:
  config.json          the resolved configuration (written before training starts)
  metrics.jsonl        one JSON object per evaluation (step, wall time, every Brax metric)
  tb/                  TensorBoard scalars
  checkpoints/<step>/  orbax checkpoints of (normalizer, policy, value) params, with Brax's
                       network config.json beside them (its presence marks a complete save)
  eval.json            the final deterministic evaluation on freshly sampled episodes
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable

import jax
import numpy as np
from brax.training import checkpoint as brax_checkpoint
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as ppo
from ml_collections import config_dict

from dex4d_jax import envs, wrappers
from dex4d_jax.networks import ppo as point_networks
from dex4d_jax.teacher import evaluate as evaluation

CHECKPOINT_DIR = "checkpoints"


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists, or nothing to resume)."""


def network_factory(config: config_dict.ConfigDict):
    """The PPO network factory of a config's `network` section."""
    return functools.partial(point_networks.make_ppo_networks, **config.network.to_dict())


def make_env(config: config_dict.ConfigDict):
    """The environment of a config's `env` section."""
    return envs.load(config.env.name, **config.env.overrides.to_dict())


def list_checkpoints(out_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints of a run as (step, path), oldest first.

    A save interrupted midway has no `config.json` (Brax writes it after the orbax save) and is
    skipped.
    """
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.isdigit() and os.path.isfile(os.path.join(path, "config.json")):
            found.append((int(name), path))
    return sorted(found)


def load_params(path: str):
    """Loads (normalizer, policy, value) params from a checkpoint folder, failing clearly."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        return brax_checkpoint.load(path)
    except Exception as err:  # orbax raises many types for truncated or foreign files
        raise RuntimeError(
            f"Checkpoint {path} could not be read ({type(err).__name__}: {err}). It is corrupt "
            "or not a dex4d-jax checkpoint; move it aside to use an earlier one."
        ) from err


def _save_checkpoint(out_dir, step, params, config, obs_size, action_size):
    net_config = config_dict.create(
        network_factory_kwargs=config.network.to_dict(),
        normalize_observations=False,
        observation_size=obs_size,
        action_size=action_size,
    )
    brax_checkpoint.save(os.path.join(out_dir, CHECKPOINT_DIR), step, params, net_config)


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


def prepare_run_dir(out_dir: str, config: config_dict.ConfigDict | None, resume: bool):
    """Checks the run directory and returns (config, start step, restore params or None).

    A fresh run needs `out_dir` absent or empty; `resume` needs a run with a checkpoint, and
    continues from its saved config (a differing `config` is an error, not silently used).
    """
    config_path = os.path.join(out_dir, "config.json")
    if not resume:
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise RunDirError(
                f"Output directory {out_dir} already exists and is not empty. Choose a new "
                "--out, or pass --resume to continue the run in it.")
        if config is None:
            raise ValueError("A fresh run needs a config.")
        os.makedirs(out_dir, exist_ok=True)
        with open(config_path, "w") as f:
            f.write(config.to_json(indent=2))
        return config, 0, None
    if not os.path.isfile(config_path):
        raise RunDirError(f"Cannot resume: {config_path} not found (is {out_dir} a training run?).")
    with open(config_path) as f:
        saved = config_dict.ConfigDict(_tuples(json.load(f)))
    if config is not None and config.to_dict() != saved.to_dict():
        raise RunDirError(
            f"--resume continues with the config saved in {config_path}; the arguments given "
            "describe a different run. Drop them, or start a new --out.")
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        raise RunDirError(f"Cannot resume: no complete checkpoint in {out_dir}/{CHECKPOINT_DIR}.")
    step, path = checkpoints[-1]
    return saved, step, load_params(path)


def train_teacher(config: config_dict.ConfigDict | None, out_dir: str, resume: bool = False,
                  progress: bool = True,
                  log: Callable[[str], None] = print) -> evaluation.EvalResult:
    """Trains (or resumes) a teacher, checkpointing into `out_dir`, and evaluates it.

    Args:
      config: the run configuration (see experiments/configs/teacher.py); None on resume.
      out_dir: run directory.
      resume: continue the run in `out_dir` from its latest complete checkpoint.
      progress: show a progress bar.
      log: where to print messages.

    Returns:
      The final evaluation, also written to `out_dir/eval.json`.
    """
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (heavy import, only for training)
    from tqdm import tqdm  # noqa: PLC0415

    out_dir = os.path.abspath(out_dir)  # orbax needs absolute paths
    config, start_step, restore = prepare_run_dir(out_dir, config, resume)
    ppo_cfg = config.ppo
    env = make_env(config)
    total = ppo_cfg.num_timesteps
    remaining = total - start_step
    if resume:
        log(f"Resuming {out_dir} at step {start_step:,} of {total:,}.")
    if remaining <= 0:
        log("The run is already complete; evaluating its last checkpoint.")

    factory = network_factory(config)
    networks = factory(env.observation_size, env.action_size)
    inference = ppo_networks.make_inference_fn(networks)

    def policy_fn(p, obs):
        return inference(p, deterministic=True)(obs, jax.random.PRNGKey(0))[0]

    # One compiled rollout serves the evaluations during training and the final one (Brax's own
    # evaluator would compile a second copy of the environment and policy).
    rollout = evaluation.make_rollout(env, policy_fn, ppo_cfg.episode_length)

    def run_eval(params, num_episodes, seed):
        return evaluation.evaluate(rollout, params, num_episodes, seed,
                                   batch_size=ppo_cfg.num_eval_envs)

    writer = SummaryWriter(os.path.join(out_dir, "tb"))
    bar = tqdm(total=total, initial=start_step, unit="step", unit_scale=True, disable=not progress,
               dynamic_ncols=True)
    t0 = time.time()
    pending = {}

    def write_record(step, metrics):
        record = {"step": step, "time": time.time() - t0,
                  **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(os.path.join(out_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, step)
        writer.flush()
        bar.total = max(bar.total, step)
        bar.update(max(step - bar.n, 0))
        bar.set_postfix(reward=f"{record['eval/episode_reward']:.1f}",
                        success=f"{record['eval/success_rate']:.2f}")

    def params_fn(step, make_policy, params):
        del make_policy
        step = start_step + int(step)
        if step > start_step:
            _save_checkpoint(out_dir, step, params, config, env.observation_size,
                             env.action_size)
        result = run_eval(params, ppo_cfg.num_eval_envs, config.eval.seed + 1)
        pending.update({f"eval/{k}": v for k, v in result.as_dict().items()})
        if step == start_step:  # Brax reports no training metrics before the first epoch.
            write_record(step, pending)

    def progress_fn(step, metrics):
        write_record(start_step + int(step), {**metrics, **pending})

    ppo_kwargs = {k: v for k, v in ppo_cfg.to_dict().items() if k != "num_timesteps"}
    # Brax runs at least one PPO iteration between evaluations, so a short run with many
    # evaluations would train far past its budget: keep at most one evaluation per iteration.
    per_iteration = ppo_cfg.batch_size * ppo_cfg.num_minibatches * ppo_cfg.unroll_length
    ppo_kwargs["num_evals"] = max(2, min(ppo_cfg.num_evals, remaining // per_iteration + 1))
    try:
        _, params, _ = ppo.train(
            environment=env,
            num_timesteps=max(remaining, 0),
            wrap_env_fn=wrappers.wrap_for_training,
            network_factory=factory,
            normalize_observations=False,
            run_evals=False,
            progress_fn=progress_fn,
            policy_params_fn=params_fn,
            restore_params=restore,
            **ppo_kwargs,
        )
    except KeyboardInterrupt:
        bar.close()
        saved = list_checkpoints(out_dir)
        where = f"step {saved[-1][0]:,}" if saved else "nothing yet"
        log(f"\nInterrupted. Last checkpoint: {where}. Continue with --resume --out {out_dir}")
        raise
    finally:
        writer.close()
    bar.close()
    # Brax calls params_fn after its last epoch, so the final params are already saved; its
    # epochs round the step count up, so the run may end a little past `total`.
    saved = list_checkpoints(out_dir)
    final_step = saved[-1][0] if saved else start_step

    result = run_eval(params, config.eval.num_episodes, config.eval.seed)
    with open(os.path.join(out_dir, "eval.json"), "w") as f:
        json.dump({"step": final_step, "train_seconds": time.time() - t0, **result.as_dict()}, f,
                  indent=2)
    return result
