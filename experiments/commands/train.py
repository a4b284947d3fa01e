"""`dex4d train teacher|student`: build the run's config and environments, train, print."""

from __future__ import annotations

import argparse

from dex4d_jax.experiments.commands.common import (
    enable_compilation_cache,
    error,
    start_distributed,
    use_headless_gl,
)

from dex4d_jax.outputs import output_problem

# Flags that are shorthands for config fields: flag dest -> dotted path.
TEACHER_SHORTHANDS = {"encoder": "network.encoder", "pooling": "network.pooling",
                      "seed": "ppo.seed", "steps": "ppo.num_timesteps",
                      "learning_rate": "ppo.learning_rate"}
STUDENT_SHORTHANDS = {"arch": "network.arch", "encoder": "network.encoder",
                      "masking": "masking.variant", "beta": "dagger.beta", "seed": "dagger.seed",
                      "steps": "dagger.num_timesteps"}
_SET_HELP = ("change any config field, e.g. --set {example}; repeat for several (the keys are "
             "those of the run's config.json)")
_VIDEO_HELP = ("every N-th evaluation (the one at step 0 first) writes a video of one evaluation "
               "episode, RUN/videos/eval_<step>.mp4 (320x240, points drawn; "
               "dex4d_jax/viz/video.py), and its rollout file eval_<step>.npz; training computes "
               "the same with or without it; also with --resume (default: no videos)")
# Flags a resume takes as given (the others come from the run's saved config).
_RESUME_FLAGS = ("--out", "--resume", "--no-progress", "--video-every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train teacher` and `train student` subcommands."""
    # --video-every renders offscreen; MuJoCo picks its GL backend when first imported (below).
    use_headless_gl()
    from dex4d_jax.envs import ALL_ENVS  # noqa: PLC0415
    from dex4d_jax.experiments.configs import student, teacher  # noqa: PLC0415

    from dex4d_jax.networks.point_encoders import ENCODERS, POOLINGS  # noqa: PLC0415
    from dex4d_jax.networks.student import ARCHS  # noqa: PLC0415
    from dex4d_jax.student.masking import VARIANTS  # noqa: PLC0415

    sub = parser.add_subparsers(dest="policy", required=True)
    t = sub.add_parser("teacher", help="train a privileged teacher with PPO")
    t.add_argument("--env", choices=ALL_ENVS, default="ap2ap_wrench",
                   help="the task (default: ap2ap_wrench)")
    t.add_argument("--encoder", choices=ENCODERS, default="paired",
                   help="point encoder (network.encoder; default: paired)")
    t.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="point pooling (network.pooling; default: the preset's, mean_max)")
    t.add_argument("--preset", choices=teacher.PRESETS, default="quick",
                   help="quick (default): ap2ap_wrench on a laptop CPU; paper: the authors' "
                        "settings (4096 envs, GPU); smoke: the whole pipeline on a CPU in "
                        "minutes")
    t.add_argument("--stage", type=int, choices=teacher.STAGES, default=None,
                   help="curriculum stage of Table IV on --env ap2ap (default 1); stage 3 "
                        "starts from the stage-2 run: --init-from RUN")
    t.add_argument("--out", required=True, help="run directory (must not exist, or --resume)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    t.add_argument("--seed", type=int, default=None, help="PPO seed (ppo.seed; default: 0)")
    t.add_argument("--steps", type=int, default=None,
                   help="environment steps (ppo.num_timesteps; default: the preset's)")
    t.add_argument("--learning-rate", type=float, default=None,
                   help="PPO learning rate, the adaptive-KL schedule's start "
                        "(ppo.learning_rate; default: the preset's)")
    t.add_argument("--init-from", metavar="DIR", default=None,
                   help="start a new run from the parameters of a run or checkpoint folder "
                        "(fresh optimizer, step 0)")
    t.add_argument("--set", dest="settings", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help=_SET_HELP.format(example="env.first_goal_max_angle=0.5"))
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--video-every", type=int, default=None, metavar="N", help=_VIDEO_HELP)

    s = sub.add_parser("student", help="distil a teacher into the masked-point student "
                                       "with DAgger")
    s.add_argument("--teacher", metavar="DIR",
                   help="teacher run or checkpoint folder (required for a new run)")
    s.add_argument("--env", choices=ALL_ENVS, default=None,
                   help="the environment the teacher was trained on (required for a new run)")
    s.add_argument("--out", required=True, help="run directory (must not exist, or --resume)")
    s.add_argument("--preset", choices=student.PRESETS, default="quick",
                   help="quick (default): ap2ap_wrench on a laptop CPU; paper: the authors' "
                        "settings (3200 envs, 25k iterations, GPU); smoke: the pipeline in "
                        "minutes")
    s.add_argument("--arch", choices=ARCHS, default="transformer",
                   help="network.arch (default: transformer); mlp: Table II 'w/o self-attention'")
    s.add_argument("--no-world-model", action="store_true",
                   help="Table II 'w/o world modeling': dagger.world_model_weight=0")
    s.add_argument("--encoder", choices=ENCODERS, default="paired",
                   help="point tokenizer (network.encoder; default: paired; Table II: "
                        "decoupled, mlp)")
    s.add_argument("--masking", choices=tuple(VARIANTS), default="paper",
                   help="height-mask quantile (masking.variant): paper U(0.2, 1.0) "
                        "(default) or the authors' code U(0, 0.8)")
    s.add_argument("--beta", type=float, default=None,
                   help="probability of executing the teacher's action, decaying to 0 over "
                        "the first half of the run (dagger.beta; default 0: the student acts)")
    s.add_argument("--seed", type=int, default=None, help="DAgger seed (dagger.seed; default 0)")
    s.add_argument("--steps", type=int, default=None,
                   help="environment steps (dagger.num_timesteps; default: the preset's)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    s.add_argument("--set", dest="settings", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help=_SET_HELP.format(example="dagger.learning_rate=3e-4"))
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--video-every", type=int, default=None, metavar="N", help=_VIDEO_HELP)


def _settings(args, shorthands: dict) -> dict:
    """The named flags given (as config paths) followed by the --set assignments."""
    from dex4d_jax.experiments.configs import parse_assignments  # noqa: PLC0415

    given = {path: getattr(args, dest) for dest, path in shorthands.items()
             if getattr(args, dest) is not None}
    return {**given, **parse_assignments(args.settings)}


def _ignored_on_resume(argv: list[str]) -> None:
    """Says which given flags a resume ignores (all but _RESUME_FLAGS)."""
    used = [a for a in argv if a.startswith("--") and a.split("=")[0] not in _RESUME_FLAGS]
    if used:
        print(f"--resume continues with the run's saved config; ignoring {' '.join(used)}.")


def _envs(config):
    """The training and evaluation environments of a run config (the only place they are
    built from a config for training).
    """
    from dex4d_jax import envs  # noqa: PLC0415

    return envs.from_run_config(config), envs.from_run_config(config, evaluation=True)


def _saved_config(out: str):
    """A run's config.json to resume, checked whole (types, ranges)."""
    import os  # noqa: PLC0415

    from dex4d_jax.experiments import configs  # noqa: PLC0415

    from dex4d_jax.training import run_dir  # noqa: PLC0415

    return configs.validate(run_dir.config_to_resume(out),
                            os.path.join(out, run_dir.CONFIG_FILE))


def _check_out(out: str) -> None:
    """Raises OSError unless the run folder can be created (before anything else runs)."""
    problem = output_problem(out, "--out", is_folder=True, create_missing=True)
    if problem:
        raise OSError(problem)


def _user_errors():
    """The exceptions that mean bad input (one line, exit 2) rather than a bug (traceback)."""
    from dex4d_jax.config_checks import SettingError  # noqa: PLC0415
    from dex4d_jax.training import checkpoint, loop, run_dir  # noqa: PLC0415

    return (run_dir.RunDirError, SettingError, checkpoint.CheckpointError, OSError,
            loop.TrainingDiverged)


def _teacher_config(args, parser):
    from dex4d_jax.experiments import configs  # noqa: PLC0415
    from dex4d_jax.experiments.configs import teacher  # noqa: PLC0415

    if args.stage is not None and args.env != "ap2ap":
        parser.error("--stage selects a curriculum stage of --env ap2ap")
    config = teacher.get_config(args.preset, args.env, args.stage)
    if args.stage == 3 and not args.init_from:
        print("Note: the paper starts stage 3 from the stage-2 checkpoint "
              "(--init-from RUN); this run starts from scratch.")
    return configs.validate(configs.apply_settings(config, _settings(args, TEACHER_SHORTHANDS)))


def _videos(args, config, eval_env):
    """The `policy_params_fn` of --video-every (viz.render.TrainingVideos), or None (also on
    the processes of a multi-process job but the first, which alone evaluates)."""
    import jax  # noqa: PLC0415

    if args.video_every is None or jax.process_index() != 0:
        return None
    from dex4d_jax.viz import render  # noqa: PLC0415

    return render.TrainingVideos(eval_env, config.env.name, config, args.out, args.video_every,
                                 seed=int(config.eval.seed))


def _train(args, argv: list[str], new_config, train, kind: str):
    """The flow both trainers share: the config (saved one on --resume, else `new_config()`)
    and the environments checked and built before anything is created or compiled, then
    `train(config, env, eval_env, videos)` (videos: the --video-every callback or None); bad
    input is one line and exit 2. Returns (code, result). With DEX4D_COORDINATOR,
    DEX4D_NUM_PROCESSES and DEX4D_PROCESS_ID set, this process first joins that
    multi-process job (common.start_distributed). `kind`: "teacher" or "student", the command
    (a resume of the other kind's run is refused by name)."""
    if args.video_every is not None and args.video_every < 1:
        return error(f"--video-every must be at least 1, got {args.video_every}"), None
    problem = start_distributed()
    if problem:
        return error(problem), None
    config = None
    try:
        if args.resume:
            _ignored_on_resume(argv)
            saved = _saved_config(args.out)
            saved_kind = "student" if "dagger" in saved else "teacher"
            if saved_kind != kind:
                return error(f"{args.out} is a {saved_kind} run; resume it with `dex4d train "
                             f"{saved_kind} --resume --out {args.out}`"), None
            env, eval_env = _envs(saved)
        else:
            _check_out(args.out)
            config = saved = new_config()
            env, eval_env = _envs(config)
        enable_compilation_cache()
        return 0, train(config, env, eval_env, _videos(args, saved, eval_env))
    except _user_errors() as err:
        return error(_one_line(err)), None


def _train_teacher(args, parser, argv: list[str]) -> int:
    from dex4d_jax.teacher import train  # noqa: PLC0415

    if args.resume and args.init_from:
        parser.error("--init-from starts a new run; it cannot be combined with --resume")
    code, result = _train(args, argv, lambda: _teacher_config(args, parser),
                          lambda config, env, eval_env, videos: train.train_teacher(
                              config, args.out, env, eval_env, resume=args.resume,
                              progress=not args.no_progress, init_from=args.init_from,
                              policy_params_fn=videos), "teacher")
    if code:
        return code
    print(f"Success rate {result.success_rate:.3f} on {result.num_episodes} fresh episodes "
          f"(first goal reached and held; {result.goals_reached:.2f} goals held per episode). "
          f"Checkpoints in {args.out}/checkpoints")
    return 0


def _one_line(err: Exception) -> str:
    """An exception as one line of at most a few hundred characters."""
    text = " ".join(str(err).strip("'\"").split())
    return text if len(text) <= 400 else text[:397] + "..."


def _student_config(args, parser):
    import os  # noqa: PLC0415

    from dex4d_jax.experiments import configs  # noqa: PLC0415
    from dex4d_jax.experiments.configs import student  # noqa: PLC0415

    from dex4d_jax.student import train  # noqa: PLC0415
    from dex4d_jax.training import run_dir  # noqa: PLC0415

    if not args.teacher or not args.env:
        parser.error("a new student run needs --teacher DIR and --env ENV")
    config = student.get_config(args.preset, world_model=not args.no_world_model)
    config = configs.apply_settings(config, _settings(args, STUDENT_SHORTHANDS),
                                    frozen=("env", "teacher"))
    _, ckpt = run_dir.resolve_checkpoint(args.teacher)
    teacher_dir = run_dir.run_of(ckpt)
    teacher_config = run_dir.read_run_config(teacher_dir)
    if "dagger" in teacher_config:
        raise run_dir.RunDirError(f"{teacher_dir} is not a teacher run (it is a student's); "
                                  "give a teacher run to distil")
    configs.validate(teacher_config, os.path.join(teacher_dir, run_dir.CONFIG_FILE))
    try:
        return configs.validate(train.bind_teacher(config, args.teacher, args.env))
    except ValueError as err:  # the teacher's environment is not --env
        raise configs.SettingError(str(err)) from err


def _train_student(args, parser, argv: list[str]) -> int:
    from dex4d_jax.student import train  # noqa: PLC0415

    code, result = _train(args, argv, lambda: _student_config(args, parser),
                          lambda config, env, eval_env, videos: train.train_student(
                              config, args.out, env, eval_env, resume=args.resume,
                              progress=not args.no_progress, policy_params_fn=videos),
                          "student")
    if code:
        return code
    s, t = result["student"], result["teacher"]
    print(f"Student success rate {s['success_rate']:.3f} with masked points, teacher "
          f"{t['success_rate']:.3f} with all points, on the same {s['num_episodes']} fresh "
          f"episodes ({s['goals_reached']:.2f} vs {t['goals_reached']:.2f} goals held per "
          f"episode). Checkpoints in {args.out}/checkpoints")
    return 0


def run(args, parser, argv: list[str]) -> int:
    """Runs `dex4d train teacher|student`; returns the exit code."""
    if args.policy == "teacher":
        return _train_teacher(args, parser, argv)
    return _train_student(args, parser, argv)
