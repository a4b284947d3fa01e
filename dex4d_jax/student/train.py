"""Student distillation runs: teacher loading, checkpoints, resume, logging, evaluation.

A run directory holds, as a teacher's (teacher/train.py): config.json (with the teacher's
checkpoint path and step, and its environment), metrics.jsonl, tb/, checkpoints/<step>/ (the
whole DAgger state, dagger.py) and eval.json: the student's success rate under masking and
the teacher's on the same episodes with all points, and the world model's held-out next-state
error beside the "nothing changes" predictor's.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable

import jax
from ml_collections import config_dict

from dex4d_jax.student import dagger
from dex4d_jax.teacher import evaluate as evaluation
from dex4d_jax.teacher import train as teacher_train


def bind_teacher(config: config_dict.ConfigDict, teacher: str, env_name: str
                 ) -> config_dict.ConfigDict:
    """`config` with the teacher's checkpoint, environment and episode length filled in.

    Raises RunDirError/FileNotFoundError for a missing teacher, ValueError when `env_name`
    is not the environment the teacher was trained on.
    """
    step, checkpoint = teacher_train.resolve_checkpoint(teacher)
    teacher_config = teacher_train.read_run_config(os.path.dirname(os.path.dirname(checkpoint)))
    if teacher_config.env.name != env_name:
        raise ValueError(f"The teacher {checkpoint} was trained on {teacher_config.env.name!r}, "
                         f"not {env_name!r}; distil it on --env {teacher_config.env.name}.")
    config = config_dict.ConfigDict(config.to_dict())
    config.teacher = {"path": checkpoint, "step": step}
    config.env = teacher_config.env.to_dict()
    config.dagger.episode_length = teacher_config.ppo.episode_length
    return config


def _diverged_message(out_dir: str, step: int, metrics: dict) -> str:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    what = f"non-finite {', '.join(bad)}" if bad else "non-finite parameters or optimizer state"
    saved = teacher_train.list_checkpoints(out_dir)
    where = (f" Last good checkpoint: step {saved[-1][0]:,} at {saved[-1][1]}." if saved else "")
    return (f"Distillation diverged in the epoch ending at step {step:,} ({what}); nothing of "
            f"that epoch was saved.{where} Start a new run with a lower learning rate "
            "(--set dagger.learning_rate=...) or gradient clipping (--set "
            "dagger.max_grad_norm=1.0).")


def make_policy(config: config_dict.ConfigDict, env) -> dagger.StudentPolicy:
    """The StudentPolicy of a student run's config for its environment."""
    network = dagger.make_student(config.network, env.action_size)
    return dagger.StudentPolicy(env.student_layout, network, dagger.masking_config(config.masking))


def train_student(config: config_dict.ConfigDict | None, out_dir: str, resume: bool = False,
                  progress: bool = True, log: Callable[[str], None] = print,
                  max_devices: int | None = None) -> dict:
    """Distils (or resumes distilling) a teacher into a student; evaluates both.

    Args:
      config: the run configuration with its teacher bound (`bind_teacher`); None on resume.
      out_dir: run directory.
      resume: continue the run in `out_dir` from its latest complete checkpoint.
      progress: show a progress bar.
      log: where to print messages.
      max_devices: use at most this many local devices.

    Returns:
      The final evaluation (also in `out_dir/eval.json`): "student" and "teacher" results on
      the same episodes, their success ratio and the world model's held-out errors.
    """
    out_dir = os.path.abspath(out_dir)
    if config is not None and not config.teacher.path:
        raise ValueError("The config has no teacher; use bind_teacher(config, TEACHER, ENV).")
    config, start_step, restore_path = teacher_train.prepare_run_dir(
        out_dir, config, resume, check=dagger.load_student_params)
    env = teacher_train.make_env(config)
    if not hasattr(env, "student_layout"):
        raise ValueError(f"Environment {config.env.name!r} does not say where the student's "
                         "inputs are (no student_layout).")
    teacher_fn, teacher_params, _, _, _ = teacher_train.load_policy(config.teacher.path, env)
    policy = make_policy(config, env)
    loop = dagger.DaggerLoop(env, policy, teacher_fn, config.dagger, max_devices=max_devices)
    schedule = loop.schedule
    state = loop.init_state(config.dagger.seed)
    root = os.path.join(out_dir, teacher_train.CHECKPOINT_DIR)
    writer_process = jax.process_index() == 0
    if resume:
        state = dagger.restore_checkpoint(restore_path, state)
        if state.env_steps % schedule.steps_per_epoch:
            raise teacher_train.RunDirError(f"Checkpoint {restore_path} is not at an epoch "
                                            "boundary of this run's schedule.")
        log(f"Resuming {out_dir} at step {start_step:,} of {schedule.total_steps:,}.")
    elif writer_process:
        dagger.save_checkpoint(root, state, 0)

    eval_env = teacher_train.make_env(config, evaluation=True)
    length = config.dagger.episode_length
    student_rollout = evaluation.make_rollout(eval_env, policy.rollout_act, length,
                                              policy_init=policy.rollout_init)

    def run_eval(state, num_episodes, seed):
        return evaluation.evaluate(student_rollout, state.training.params, num_episodes, seed,
                                   batch_size=config.dagger.num_eval_envs)

    def evaluate_state(state):
        return run_eval(state, config.dagger.num_eval_envs, config.eval.seed + 1).as_dict()

    t0 = time.time()
    last_metrics = {}

    def run_epoch(state):
        out = loop.run_epoch(state, teacher_params)
        last_metrics.clear()
        last_metrics.update(out[1])
        return out

    state = teacher_train.run_epochs(out_dir, state, schedule, run_epoch, dagger.save_checkpoint,
                                     evaluate_state, _diverged_message, progress=progress,
                                     log=log, start_step=start_step)
    student = run_eval(state, config.eval.num_episodes, config.eval.seed)
    teacher_rollout = evaluation.make_rollout(eval_env, teacher_fn, length)
    teacher = evaluation.evaluate(teacher_rollout, teacher_params, config.eval.num_episodes,
                                  config.eval.seed, batch_size=config.dagger.num_eval_envs)
    result = {
        "step": state.env_steps,
        "train_seconds": time.time() - t0,
        "student": student.as_dict(),
        "teacher": teacher.as_dict(),
        # null when the teacher never succeeds (nothing to compare with).
        "success_ratio": (student.success_rate / teacher.success_rate
                          if teacher.success_rate > 0 else None),
        # Held-out world-model errors of the last epoch (absent when resuming a finished run).
        "world_model": {k.removeprefix("training/loss/"): v for k, v in last_metrics.items()
                        if k.startswith("training/loss/next_")},
    }
    if writer_process:
        with open(os.path.join(out_dir, "eval.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result
