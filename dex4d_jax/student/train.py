"""Student distillation runs: DAgger (dagger.py) driven by the shared epoch loop.

A run directory is a teacher's (training/run_dir.py): config.json (with the teacher's
checkpoint path and step, and its environment), metrics.jsonl, tb/, checkpoints/<step>/ (the
whole DAgger state, dagger.py) and eval.json: the student's success rate under masking and
the teacher's on the same episodes with all points, and the world model's held-out next-state
error beside the "nothing changes" predictor's. `train_student` is given its environments;
the command line builds them from the run config's `env` section (the teacher's).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
from ml_collections import config_dict

from dex4d_jax.student import dagger
from dex4d_jax.student.policy import make_policy
from dex4d_jax.training import checkpoint, evaluation, loop, policies, run_dir


def bind_teacher(config: config_dict.ConfigDict, teacher: str, env_name: str
                 ) -> config_dict.ConfigDict:
    """`config` with the teacher's checkpoint, environment and episode length filled in.

    Raises:
      FileNotFoundError, run_dir.RunDirError: a missing teacher, or a run that is not a
        teacher's.
      ValueError: `env_name` is not the environment the teacher was trained on.
    """
    step, ckpt = run_dir.resolve_checkpoint(teacher)
    teacher_config = run_dir.read_run_config(run_dir.run_of(ckpt))
    if "ppo" not in teacher_config:
        raise run_dir.RunDirError(f"{run_dir.run_of(ckpt)} is not a teacher run (its "
                                  "config.json has no `ppo` section); give a teacher to distil.")
    if teacher_config.env.name != env_name:
        raise ValueError(f"The teacher {ckpt} was trained on {teacher_config.env.name!r}, "
                         f"not {env_name!r}; distil it on --env {teacher_config.env.name}.")
    config = config_dict.ConfigDict(config.to_dict())
    config.teacher = {"path": ckpt, "step": step}
    config.env = teacher_config.env.to_dict()
    config.dagger.episode_length = teacher_config.ppo.episode_length
    return config


def train_student(config: config_dict.ConfigDict | None, out_dir: str, env, eval_env,
                  resume: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print, max_devices: int | None = None,
                  policy_params_fn: Callable[[int, int, Any], Any] | None = None) -> dict:
    """Distils (or resumes distilling) a teacher into a student; evaluates both.

    Args:
      config: the run configuration with its teacher bound (`bind_teacher`); None on resume.
      out_dir: run directory.
      env: the training environment (the teacher's task, built from `config.env`).
      eval_env: the evaluation environment (the same task, randomization as `config.eval`
        asks).
      resume: continue the run in `out_dir` from its latest complete checkpoint.
      progress: show a progress bar.
      log: where to print messages.
      max_devices: use at most this many local devices.
      policy_params_fn: called after each evaluation during training (on process 0) as
        `policy_params_fn(evaluation, step, params)`: `evaluation` numbers the evaluations
        from 0 at step 0 (a resumed run numbers them as the uninterrupted one), `params` are
        the student's network parameters (`StudentPolicy`). Training videos
        (`viz.render.TrainingVideos`); it must not change what it is given.

    Returns:
      The final evaluation (also in `out_dir/eval.json`): "student" and "teacher" results on
      the same episodes, their success ratio and the world model's held-out errors.

    Raises:
      run_dir.RunDirError, checkpoint.CheckpointError, loop.TrainingDiverged: as
      `teacher.train.train_teacher`; ValueError for a config without a teacher.
    """
    out_dir = os.path.abspath(out_dir)
    if config is not None and not config.teacher.path:
        raise ValueError("The config has no teacher; use bind_teacher(config, TEACHER, ENV).")
    with run_dir.exclusive(out_dir, resume):
        config, start_step, restore_path = run_dir.prepare_run_dir(
            out_dir, config, resume, checkpoint.DAGGER_FORMAT, log=log)
        writer_process = jax.process_index() == 0
        try:
            teacher_fn, teacher_params, _, _, _ = policies.load_teacher_policy(
                config.teacher.path, env.observation_size, env.action_size)
            policy = make_policy(config, env)
            algo = dagger.DAgger(env, policy, teacher_fn, config.dagger,
                                 max_devices=max_devices)
            schedule = algo.schedule
            state = algo.init_state(config.dagger.seed)
            root = os.path.join(out_dir, run_dir.CHECKPOINT_DIR)
            if restore_path is not None:
                state = dagger.restore_checkpoint(restore_path, state)
                loop.check_resumable(state, schedule, restore_path)
                log(f"Resuming {out_dir} at step {start_step:,} of {schedule.total_steps:,}.")
            elif writer_process:
                dagger.save_checkpoint(root, state, 0)
        except BaseException:
            if not resume and writer_process:
                run_dir.remove_unfinished(out_dir)  # a setup that failed leaves nothing
            raise

        length = config.dagger.episode_length
        student_rollout = evaluation.make_rollout(eval_env, policy.rollout_act, length,
                                                  policy_init=policy.rollout_init)

        def run_eval(state, num_episodes, seed):
            return evaluation.evaluate(student_rollout, state.training.params, num_episodes,
                                       seed, batch_size=config.dagger.num_eval_envs)

        def evaluate_state(state):
            result = run_eval(state, config.dagger.num_eval_envs, config.eval.seed + 1).as_dict()
            if policy_params_fn is not None:
                policy_params_fn(state.env_steps // schedule.steps_per_epoch, state.env_steps,
                                 state.training.params)
            return result

        def on_diverged(step, metrics):
            return loop.diverged_message(
                "Distillation", out_dir, step, metrics,
                "Start a new run with a lower learning rate (--set dagger.learning_rate=...) or "
                "gradient clipping (--set dagger.max_grad_norm=1.0).")

        t0 = time.time()
        last_metrics = {}

        def run_epoch(state):
            out = algo.run_epoch(state, teacher_params)
            last_metrics.clear()
            last_metrics.update(out[1])
            return out

        state = loop.run_epochs(out_dir, state, schedule, run_epoch, dagger.save_checkpoint,
                                evaluate_state, on_diverged, progress=progress,
                                start_step=start_step)
        student = run_eval(state, config.eval.num_episodes, config.eval.seed)
        teacher_rollout = evaluation.make_rollout(eval_env, teacher_fn, length)
        teacher = evaluation.evaluate(teacher_rollout, teacher_params, config.eval.num_episodes,
                                      config.eval.seed, batch_size=config.dagger.num_eval_envs)
        # The whole run's training time and its last epoch's losses, from metrics.jsonl: the
        # same when a finished run is resumed (no epoch left to run).
        record = loop.last_record(out_dir) if writer_process else {}
        result = {
            "step": state.env_steps,
            "train_seconds": record.get("time", time.time() - t0),
            "student": student.as_dict(),
            "teacher": teacher.as_dict(),
            # null when the teacher never succeeds (nothing to compare with).
            "success_ratio": (student.success_rate / teacher.success_rate
                              if teacher.success_rate > 0 else None),
            # Held-out world-model errors of the last epoch.
            "world_model": {k.removeprefix("training/loss/"): v
                            for k, v in (record or last_metrics).items()
                            if k.startswith("training/loss/next_")},
        }
        if writer_process:
            run_dir.write_atomic(os.path.join(out_dir, "eval.json"), json.dumps(result, indent=2))
    return result
