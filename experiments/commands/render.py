"""`dex4d render`: a trained policy's rollouts as an MP4, its points drawn, and the rollout file.

dex4d render --policy runs/student --env ap2ap_wrench --out rollout.mp4 --episodes 2

Rolls the run's policy out in the MJX environment (jitted, all episodes at once), then renders
every control step offscreen with native MuJoCo (dex4d_jax/viz/video.py says what a frame
shows). Writes the video and, beside it, the rollout file (`rollout.npz`, same stem; format in
dex4d_jax/viz/rollout_file.py, read by `dex4d view`). Every episode of one render holds the
same object (the rollout file has one scene): the first episode's draw, or --object.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time

from dex4d_jax.experiments.commands.common import (
    CommandProblem,
    enable_compilation_cache,
    error,
    read_run_env,
    use_headless_gl,
)

from dex4d_jax.outputs import output_problem

ENVS = ("ap2ap_wrench", "ap2ap")  # as dex4d_jax.viz.video.ENVS (not imported: no mujoco yet)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (nothing here imports mujoco: MUJOCO_GL is chosen in `run`)."""
    parser.add_argument("--policy", required=True, metavar="RUN",
                        help="a teacher or student run folder (its latest checkpoint) or one of "
                             "its checkpoint folders")
    parser.add_argument("--env", required=True, choices=ENVS,
                        help="the environment the run was trained on")
    parser.add_argument("--out", required=True, metavar="FILE.mp4",
                        help="the video to write (its folder must exist); the rollout file "
                             "goes beside it with the same stem (.npz)")
    parser.add_argument("--episodes", type=int, default=1, metavar="N",
                        help="episodes, played one after another (default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the episodes' start poses, goals and policy noise "
                             "(default 0)")
    parser.add_argument("--steps", type=int, default=None, metavar="T",
                        help="control steps per episode (default: the run's episode length)")
    parser.add_argument("--size", default="640x480", metavar="WxH",
                        help="frame size in pixels, even sides (default 640x480)")
    parser.add_argument("--object", type=int, default=None, metavar="ID",
                        help="the object every episode holds, an index into the environment's "
                             "object set (default: the first episode's draw)")


_Problem = CommandProblem


def _read_run(path: str, env_name: str):
    """(run config, environment config) of --policy, checked against --env."""
    if not os.path.exists(path):
        raise _Problem(f"--policy {path} does not exist")
    if os.path.isfile(path):
        raise _Problem(f"--policy {path} is a file; give a teacher or student run folder (an "
                       "ONNX student cannot run inside the jitted rollout)")
    return read_run_env(path, env_name)


def _check_arguments(args) -> tuple[int, int]:
    """(width, height); raises _Problem for a bad count, size or output."""
    from dex4d_jax.viz.video import parse_size  # noqa: PLC0415

    if args.episodes < 1:
        raise _Problem(f"--episodes must be at least 1, got {args.episodes}")
    if args.steps is not None and args.steps < 1:
        raise _Problem(f"--steps must be at least 1, got {args.steps}")
    if args.object is not None and args.object < 0:
        raise _Problem(f"--object must be an object index (0 or more), got {args.object}")
    try:
        size = parse_size(args.size)
    except ValueError as err:
        raise _Problem(str(err)) from err
    problem = output_problem(args.out, "--out", suffix=".mp4")
    if problem:
        raise _Problem(problem)
    return size


@contextlib.contextmanager
def _still(what: str, start: float, every: float = 30.0):
    """Prints `  ... still WHAT (N s)` every `every` seconds until the block ends."""
    done = threading.Event()

    def tick():
        while not done.wait(every):
            print(f"  ... still {what} ({time.time() - start:.0f} s)", flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run(args, parser, argv) -> int:
    """Checks everything, rolls out, renders, writes the video and the rollout file."""
    use_headless_gl()  # before anything imports mujoco
    try:
        width, height = _check_arguments(args)
    except _Problem as err:
        return error(str(err))

    import jax  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.config_checks import SettingError  # noqa: PLC0415
    from dex4d_jax.training import checkpoint, run_dir  # noqa: PLC0415
    from dex4d_jax.viz import render, rollout_file, video  # noqa: PLC0415

    try:
        config, env_config = _read_run(args.policy, args.env)
        problem = video.gl_problem()
        if problem:
            raise _Problem(problem)
        print(f"Building {args.env} ...", flush=True)
        env = envs.load(args.env, config=env_config)
        params, step, ckpt = render.load_policy(args.policy, env)
        policy_fn, policy_init, policy_seen = render.policy_functions(config, env)
        enable_compilation_cache()
        keys, _ = render.episode_keys(env, args.seed, args.episodes, args.object)
    except (_Problem, run_dir.RunDirError, SettingError, OSError, checkpoint.CheckpointError,
            ValueError, KeyError) as err:
        return error(" ".join(str(err).strip("'\"").split()))

    steps = args.steps or render.episode_length(config)
    kind = render.run_kind(config)
    print(f"The {kind} of {ckpt} (step {step:,}): {args.episodes} episode(s) of {steps} control "
          "steps; compiling and rolling out ...", flush=True)
    start = time.time()
    rollout_fn = render.make_rollout(env, policy_fn, steps, policy_init, policy_seen)
    with _still("compiling", start):  # minutes for ap2ap on a CPU, unless cached
        compiled = rollout_fn.lower(params, keys).compile()
    print(f"  compiled in {time.time() - start:.0f} s; rolling out ...", flush=True)
    with _still("rolling out", start):
        recorded = jax.block_until_ready(compiled(params, keys))
    object_id = int(recorded.object_id[0])
    xml = video.model_xml(video.scene_spec(args.env, env, object_id))
    try:
        rollout = render.to_rollout(args.env, xml, env.dt, recorded)
    except rollout_file.RolloutFileError as err:
        return error(str(err))
    held = int(rollout.goals_reached.reshape(args.episodes, steps)[:, -1].sum())
    print(f"  object {object_id}: success at {100 * rollout.success.mean():.0f}% of the steps, "
          f"{held} goal(s) held ({time.time() - start:.0f} s in all)", flush=True)

    total = rollout.num_steps
    start = time.time()
    report_every = max(1, total // 10)
    print(f"Rendering {total} frames at {width}x{height} ...", flush=True)

    def progress(done, total):
        if done % report_every == 0 or done == total:
            print(f"  frame {done}/{total} ({time.time() - start:.0f} s)", flush=True)

    try:
        frames = video.write_video(rollout, args.out, width, height,
                                   threshold=float(env.config.success_threshold),
                                   progress_fn=progress)
    except video.RenderError as err:
        return error(str(err))
    except OSError as err:
        return error(f"cannot write {args.out}: {' '.join(str(err).split())}")
    print(f"Wrote {args.out} ({frames} frames, {frames * env.dt:.1f} s of video, rendered in "
          f"{time.time() - start:.0f} s) and {video.rollout_path(args.out)}")
    return 0
