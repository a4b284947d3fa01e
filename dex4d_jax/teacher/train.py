"""Teacher training: PPO (ppo.py) driven by the shared epoch loop (dex4d_jax/training).

`train_teacher` is given its environments, as Brax's `train(environment=..., eval_env=...)`:
the command line (or a notebook) builds them from the run config's `env` section. The run
folder's layout is training/run_dir.py's; the checkpoint's, ppo.py's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
from ml_collections import config_dict

from dex4d_jax.teacher import ppo
from dex4d_jax.training import checkpoint, evaluation, loop, policies, run_dir


def _advice(out_dir: str) -> str:
    saved = run_dir.list_checkpoints(out_dir)
    if not saved:
        return "Start again with a lower learning rate (--set ppo.learning_rate=LR)."
    return ("Resuming it would repeat the same computation, so start a new run from it with a "
            f"fresh optimizer and a lower learning rate: dex4d train teacher --init-from "
            f"{saved[-1][1]} --set ppo.learning_rate=LR --out NEW_DIR (with the same "
            "--env/--encoder/--preset/--set).")


def train_teacher(config: config_dict.ConfigDict | None, out_dir: str, env, eval_env,
                  resume: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print,
                  init_from: str | None = None,
                  policy_params_fn: Callable[[int, int, Any], Any] | None = None
                  ) -> evaluation.EvalResult:
    """Trains (or resumes) a teacher, checkpointing into `out_dir`, and evaluates it.

    Args:
      config: the run configuration (experiments/configs/teacher.py); None on resume (the
        saved one is used; a given one must equal it).
      out_dir: run directory.
      env: the training environment (unwrapped; built from `config.env`).
      eval_env: the evaluation environment (the same task, randomization as `config.eval`
        asks).
      resume: continue the run in `out_dir` from its latest complete checkpoint, with its
        optimizer state, step count, PRNG key, normaliser and parameters.
      progress: show a progress bar.
      log: where to print messages.
      init_from: a run or checkpoint folder whose parameters and normaliser start this (new)
        run, with a fresh optimizer at step 0; recorded in config.json as `init_from`.
      policy_params_fn: called after each evaluation during training (on process 0) as
        `policy_params_fn(evaluation, step, params)`: `evaluation` numbers the evaluations
        from 0 at step 0 (a resumed run numbers them as the uninterrupted one), `params` are
        the inference parameters (normaliser, policy, value) of
        `policies.deterministic_policy`. Training videos (`viz.render.TrainingVideos`); it
        must not change what it is given.

    Returns:
      The final evaluation, also written to `out_dir/eval.json`.

    Raises:
      run_dir.RunDirError: the run folder cannot be used as asked.
      checkpoint.CheckpointError: a checkpoint is unreadable or does not fit.
      loop.TrainingDiverged: a loss, parameter or optimizer value became NaN or infinite; the
        message names the last good checkpoint and how to go on from it.
      loop.Interrupted: Ctrl-C; the message says where to resume from.

    A fresh run whose setup fails before its step-0 checkpoint (parameters that do not fit,
    Ctrl-C) leaves no folder behind; a run folder is used by one process at a time
    (`run_dir.exclusive`).
    """
    out_dir = os.path.abspath(out_dir)  # orbax needs absolute paths
    source = None
    if init_from is not None:
        if resume or config is None:
            raise run_dir.RunDirError(
                "--init-from starts a new run; it cannot be combined with --resume.")
        source_step, source = run_dir.resolve_checkpoint(init_from)
        warm = policies.load_inference_params(source)
        config = config_dict.ConfigDict(config.to_dict())
        config.init_from = {"path": source, "step": source_step}
    with run_dir.exclusive(out_dir, resume):
        config, start_step, restore_path = run_dir.prepare_run_dir(
            out_dir, config, resume, checkpoint.PPO_FORMAT, log=log)
        ppo_cfg = config.ppo
        writer_process = jax.process_index() == 0
        try:
            networks = policies.teacher_networks(config, env.observation_size,
                                                 env.action_size)
            algo = ppo.PPO(env, networks, ppo_cfg)
            schedule = algo.schedule
            state = algo.init_state(ppo_cfg.seed)
            root = os.path.join(out_dir, run_dir.CHECKPOINT_DIR)
            if restore_path is not None:
                state = ppo.restore_checkpoint(restore_path, state)
                loop.check_resumable(state, schedule, restore_path)
                log(f"Resuming {out_dir} at step {start_step:,} of {schedule.total_steps:,}.")
                if state.env_steps >= schedule.total_steps:
                    log("The run is already complete; evaluating its last checkpoint.")
            else:
                if source is not None:
                    state = algo.warm_start(state, *warm, source=source)
                    log(f"Starting from the parameters of {source} (step {source_step:,}).")
                if writer_process:  # step 0: resumable at once, a checkpoint to fall back to
                    ppo.save_checkpoint(root, state, 0)
        except BaseException:
            if not resume and writer_process:
                run_dir.remove_unfinished(out_dir)  # a setup that failed leaves nothing
            raise

        rollout = evaluation.make_rollout(eval_env, policies.deterministic_policy(networks),
                                          ppo_cfg.episode_length)

        def run_eval(params, num_episodes, seed):
            return evaluation.evaluate(rollout, params, num_episodes, seed,
                                       batch_size=ppo_cfg.num_eval_envs)

        def evaluate_params(state):
            params = algo.inference_params(state)
            result = run_eval(params, ppo_cfg.num_eval_envs, config.eval.seed + 1).as_dict()
            if policy_params_fn is not None:
                policy_params_fn(state.env_steps // schedule.steps_per_epoch, state.env_steps,
                                 params)
            return result

        def on_diverged(step, metrics):
            return loop.diverged_message("Training", out_dir, step, metrics, _advice(out_dir))

        t0 = time.time()
        state = loop.run_epochs(out_dir, state, schedule, algo.run_epoch, ppo.save_checkpoint,
                                evaluate_params, on_diverged, progress=progress,
                                start_step=start_step)
        result = run_eval(algo.inference_params(state), config.eval.num_episodes,
                          config.eval.seed)
        if writer_process:
            # train_seconds: the whole run's, over every resumed session (metrics.jsonl).
            seconds = loop.last_record(out_dir).get("time", time.time() - t0)
            run_dir.write_atomic(os.path.join(out_dir, "eval.json"), json.dumps(
                {"step": state.env_steps, "train_seconds": seconds, **result.as_dict()},
                indent=2))
    return result
