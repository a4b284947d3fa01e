"""`dex4d eval`: the paper's simulated benchmark (Table I, Table II) for a policy and baselines.

dex4d eval --policy runs/student --env ap2ap_wrench --tasks all --trials 100 --method all \
    --ablations runs/ablation/no_attention runs/ablation/no_world_model --out runs/eval

Writes into --out: table.md (Table I's shape; `--ablations` add Table II's rows), trials.csv
and results.json (every trial), chart.png (SR and TP bars with 95% intervals).
"""

from __future__ import annotations

import argparse
import os
import time

from dex4d_jax.experiments.commands.common import (
    CommandProblem,
    enable_compilation_cache,
    error,
    read_run_env,
)

METHODS = ("policy", "novaflow", "novaflow-cl")
_ABLATION_LABELS = (
    (("network", "arch"), "mlp", "w/o self-attention"),
    (("dagger", "world_model_weight"), 0.0, "w/o world modeling"),
    (("network", "encoder"), "decoupled", "Decoupled Point Encoding"),
    (("network", "encoder"), "mlp", "MLP Point Encoding"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("--policy", metavar="RUN_OR_ONNX",
                        help="a student or teacher run folder (or one of its checkpoints), or "
                             "an ONNX student from `dex4d export`; needed by --method policy, "
                             "and on ap2ap the baselines grasp with it (a run folder) instead "
                             "of the scripted grasp")
    parser.add_argument("--env", required=True, choices=("ap2ap", "ap2ap_wrench"))
    parser.add_argument("--tasks", default="all",
                        help="'all' or comma-separated task names (default: all six)")
    parser.add_argument("--trials", type=int, default=100, help="trials per task (default 100)")
    parser.add_argument("--method", default="all", choices=(*METHODS, "all"))
    parser.add_argument("--ablations", nargs="*", default=[], metavar="RUN",
                        help="student runs evaluated as Table II rows, labelled by their "
                             "config (w/o self-attention, w/o world modeling, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", default=None, metavar="FILE",
                        help="a task file shaped like dex4d_jax/benchmark/tasks.json")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default runs/eval_ENV)")


_Problem = CommandProblem  # a one-line reason to stop before any rollout


def _label(config, path: str, kind: str) -> str:
    for keys, value, label in _ABLATION_LABELS:
        section = config.get(keys[0], {})
        if keys[1] in section and section[keys[1]] == value:
            return label
    return f"Dex4D ({kind})" if kind else os.path.basename(os.path.normpath(path))


def _read_policy(path: str, env_name: str):
    """(kind, env config, run config or None, onnx policy or None) of --policy, checked
    against --env before anything is built."""

    from dex4d_jax import envs  # noqa: PLC0415

    if not os.path.exists(path):
        raise _Problem(f"--policy {path} does not exist")
    if os.path.isfile(path):
        if not path.endswith(".onnx"):
            raise _Problem(f"--policy {path} is a file but not an .onnx student")
        from dex4d_jax.deploy.policy import OnnxPolicy  # noqa: PLC0415

        onnx_policy = OnnxPolicy(path)
        info = onnx_policy.info
        if info.env != env_name:
            raise _Problem(f"{path} was trained on {info.env}, not {env_name}: its points, "
                           f"joints and actions do not fit --env {env_name}")
        env_config = envs.get_default_config(env_name)
        if info.env_config:
            env_config.update(info.env_config)
        return "ONNX student", env_config, None, onnx_policy
    config, env_config = read_run_env(path, env_name)
    kind = "student" if "dagger" in config else "teacher, privileged"
    return kind, env_config, config, None


def _check_sizes(setup, kind, config, onnx_policy, path):
    """Raises _Problem when the policy's inputs or outputs do not fit the environment."""
    env = setup.env
    layout = env.student_layout
    num_points = layout.num_points
    if onnx_policy is not None:
        sizes = onnx_policy.info.sizes
        want = {"joint_pos": layout.qpos.stop - layout.qpos.start,
                "joint_vel": layout.qvel.stop - layout.qvel.start, "action": env.action_size}
        bad = [f"{k} {sizes[k]} (the environment has {v})" for k, v in want.items()
               if int(sizes[k]) != v]
        if int(sizes["points"]) > num_points:
            bad.append(f"points {sizes['points']} (the environment has {num_points})")
        if bad:
            raise _Problem(f"{path} does not fit {setup.env_name}: " + ", ".join(bad))
    elif kind == "student" and int(config.masking.num_keep) > num_points:
        raise _Problem(f"{path} reads {config.masking.num_keep} points; {setup.env_name} has "
                       f"{num_points}")


def _policy_controller(setup, kind, config, onnx_policy, path, trials, seed):
    """(controller, params, host policy_fn) for a policy; checkpoint errors become _Problem."""
    from dex4d_jax.benchmark import methods  # noqa: PLC0415
    from dex4d_jax.export.policy import LoadedPolicy  # noqa: PLC0415
    from dex4d_jax.student.policy import make_policy  # noqa: PLC0415
    from dex4d_jax.training import policies  # noqa: PLC0415

    env = setup.env
    if onnx_policy is not None:
        return None, None, methods.onnx_policy_fn(onnx_policy, env.student_layout, trials,
                                                  seed)
    loaded = LoadedPolicy(path, env)  # checks the parameters fit the networks
    if kind == "student":
        policy = make_policy(config, env)
        return methods.student_controller(policy, int(config.masking.num_keep)), \
            loaded.params, None
    policy_fn, params, _, _, _ = policies.load_teacher_policy(
        loaded.checkpoint, env.observation_size, env.action_size)
    return methods.teacher_controller(policy_fn), params, None


def _baseline_controller(setup, method: str, grasp):
    from dex4d_jax.benchmark import methods  # noqa: PLC0415

    if setup.env_name == "ap2ap_wrench":
        return (methods.wrench_novaflow_cl(setup.env) if method == "novaflow-cl"
                else methods.wrench_novaflow(setup.env))
    from dex4d_jax.benchmark import robot_baselines  # noqa: PLC0415

    return robot_baselines.robot_novaflow(setup.env, closed_loop=method == "novaflow-cl",
                                          grasp_controller=grasp)


def run(args, parser, argv) -> int:  # noqa: C901 (one flow, each branch a check)
    """Checks everything, then runs each method's rollout and writes the results."""
    if args.trials < 1:
        return error(f"--trials must be at least 1, got {args.trials}")
    methods_wanted = list(METHODS) if args.method == "all" else [args.method]
    if "policy" in methods_wanted and not args.policy:
        if args.method == "policy":
            return error("--method policy needs --policy RUN_OR_ONNX")
        methods_wanted.remove("policy")
    out = args.out or os.path.join("runs", f"eval_{args.env}")
    from dex4d_jax.outputs import output_problem  # noqa: PLC0415

    problem = output_problem(os.path.join(out, "table.md"), "--out", suffix=".md",
                             create_missing=True)
    if problem:
        return error(problem)

    import numpy as np  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.benchmark import metrics, rollout, tasks  # noqa: PLC0415
    from dex4d_jax.config_checks import SettingError  # noqa: PLC0415
    from dex4d_jax.contract import PolicyFileError  # noqa: PLC0415
    from dex4d_jax.training import checkpoint, run_dir  # noqa: PLC0415

    try:
        suite = tasks.load_suite(args.suite)
        chosen = suite.select(args.tasks)
        policy = None
        if args.policy:
            policy = (args.policy, *_read_policy(args.policy, args.env))
        ablations = [(p, *_read_policy(p, args.env)) for p in args.ablations]
        for p, kind, *_ in ablations:
            if kind != "student":
                raise _Problem(f"--ablations {p} is not a student run")
        env_config = policy[2] if policy else envs.get_default_config(args.env)
        enable_compilation_cache()
        print(f"Building {args.env} with the suite's objects and items ...", flush=True)
        config, kwargs = rollout.env_arguments(suite, args.env, env_config)
        setup = rollout.make_setup(suite, args.env, envs.build(args.env, config,
                                                               init_kwargs=kwargs), env_config)
        for p, kind, _, config, onnx_policy in ([policy] if policy else []) + ablations:
            _check_sizes(setup, kind, config, onnx_policy, p)
        trials = rollout.sample_trials(setup, suite, chosen, args.trials, args.seed)
        num = len(trials.pos)
        rows = []  # (label, controller, params, host fn)
        grasp = None
        if policy:
            p, kind, _, config, onnx_policy = policy
            controller, params, host = _policy_controller(setup, kind, config, onnx_policy, p,
                                                          trials, args.seed)
            grasp = controller if args.env == "ap2ap" and controller is not None else None
            if "policy" in methods_wanted:
                rows.append((_label(config or {}, p, kind) if kind == "student"
                             else f"Dex4D ({kind})", controller, params, host))
        for method in ("novaflow", "novaflow-cl"):
            if method in methods_wanted:
                label = {"novaflow": "NovaFlow", "novaflow-cl": "NovaFlow-CL"}[method]
                if args.env == "ap2ap":
                    label += " (policy grasp)" if grasp is not None else " (scripted grasp)"
                rows.append((label, _baseline_controller(setup, method, grasp),
                             params if grasp is not None else None, None))
        for p, kind, _, config, onnx_policy in ablations:
            controller, params, host = _policy_controller(setup, kind, config, onnx_policy, p,
                                                          trials, args.seed)
            rows.append((_label(config, p, ""), controller, params, host))
    except (_Problem, tasks.SuiteError, run_dir.RunDirError, SettingError, OSError,
            checkpoint.CheckpointError, PolicyFileError, ValueError, KeyError) as err:
        return error(" ".join(str(err).strip("'\"").split()))

    names = [t.name for t in chosen]
    indices = [list(suite.tasks).index(t) for t in chosen]
    results, per_trial = {}, []
    print(f"{len(rows)} method(s), {len(chosen)} task(s) x {args.trials} trials = {num} "
          f"trials, {setup.episode_length} control steps each", flush=True)
    for label, controller, params, host in rows:
        start = time.time()
        print(f"  {label}: compiling and rolling out ...", flush=True)
        def progress(step, length, label=label, start=start):
            print(f"    {label}: step {step}/{length} ({time.time() - start:.0f} s)", flush=True)

        run_fn = rollout.make_rollout(setup, suite, controller, policy_fn=host,
                                      progress=progress,
                                      progress_every=max(setup.episode_length // 4, 1))
        outputs = run_fn(params, trials, args.seed)
        seconds = time.time() - start
        scores = metrics.method_scores(trials.task, outputs.num_reached, trials.num_waypoints,
                                       names, indices)
        results[label] = scores
        print(f"  {label}: SR {scores['mean']['sr']:.3f}  TP {scores['mean']['tp']:.3f}  "
              f"({seconds:.0f} s)", flush=True)
        counter = {}
        for i in range(num):
            task = suite.tasks[int(trials.task[i])].name
            counter[task] = counter.get(task, -1) + 1
            rows_i = {"method": label, "task": task, "trial": counter[task],
                      "waypoints": int(trials.num_waypoints[i]),
                      "reached": int(outputs.num_reached[i]),
                      "success": bool(outputs.num_reached[i] >= trials.num_waypoints[i]),
                      "reached_steps": " ".join(str(int(s)) for s in outputs.reached_step[i]
                                                [: trials.num_waypoints[i]]),
                      "final_distance_m": round(float(outputs.final_distance[i]), 5),
                      "unstable": bool(outputs.unstable[i])}
            per_trial.append(rows_i)
        if np.any(outputs.unstable):
            print(f"  warning: {int(np.sum(outputs.unstable))} trial(s) of {label} went "
                  "numerically unstable", flush=True)
    title = (f"Benchmark on {args.env}: {len(chosen)} task(s), {args.trials} trials each, "
             f"seed {args.seed}")
    table = metrics.markdown_table(results, names, title)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table.md.tmp"), "w") as f:
        f.write(table)
    os.replace(os.path.join(out, "table.md.tmp"), os.path.join(out, "table.md"))
    metrics.write_trials_csv(os.path.join(out, "trials.csv"), per_trial)
    metrics.write_json(os.path.join(out, "results.json"), {
        "env": args.env, "tasks": names, "trials_per_task": args.trials, "seed": args.seed,
        "suite": suite.path, "policy": args.policy, "ablations": args.ablations,
        "success_threshold": setup.threshold, "hold_steps": setup.hold_steps,
        "episode_length": setup.episode_length, "point_noise": suite.point_noise,
        "results": results, "trials": per_trial})
    try:
        metrics.bar_chart(os.path.join(out, "chart.png"), results, names, title)
    except ImportError:
        print("  (no chart: matplotlib is not installed; pip install matplotlib)")
    print("\n" + table)
    print(f"Wrote {out}/table.md, trials.csv, results.json, chart.png")
    return 0
