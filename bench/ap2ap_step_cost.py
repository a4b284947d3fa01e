"""Cost of one `ap2ap` control step, before and after issue 17, against bare MJX and native MuJoCo.

  python bench/ap2ap_step_cost.py --num-envs 256 --steps 10
  python bench/ap2ap_step_cost.py --num-envs 256 --variants old flag caps new

Each variant runs in its own process (XLA reads its flags once per process), one after the
other, so the table compares them on the same machine in one run:
  old   XLA's default CPU flags and no contact caps (the environment before issue 17);
  flag  `--xla_cpu_use_fusion_emitters=false` (dex4d_jax/xla_flags.py), no caps;
  caps  MJX's contact caps (scene_models.CONTACT_LIMITS), XLA's default flags;
  new   both (what `ap2ap` does now).
For each variant and batch size, with the same per-environment objects and states:
  env      `jax.vmap(env.step)`: action mapping, randomized model, pushes, `n_substeps`
           physics steps, observation (points, site Jacobians, contact forces), reward, goals.
  bare     the `n_substeps` `mjx.step` calls alone, on each environment's object model.
  wrapped  the step through the training wrappers (episode bookkeeping and the fresh auto-reset,
           which computes a reset for every environment at every step).
The ratio env / bare is what observations, reward, points and randomization cost. The last
row is native MuJoCo (`mujoco.rollout`, `--threads` threads) on the same scenes: physics only,
`n_substeps` steps per control step, the limit MJX is measured against on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {
    "old": dict(flags=False, caps=False),
    "flag": dict(flags=True, caps=False),
    "caps": dict(flags=False, caps=True),
    "new": dict(flags=True, caps=True),
}


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, best seconds per call over `repeats`)."""
    import jax  # noqa: PLC0415

    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return compile_s, best


def _config(args, caps: bool):
    from dex4d_jax import scene_models  # noqa: PLC0415
    from dex4d_jax.envs import ap2ap  # noqa: PLC0415

    config = ap2ap.stage_config(args.stage)
    config.domain_randomization = not args.no_randomization
    config.num_objects = args.objects
    limits = scene_models.CONTACT_LIMITS if caps else scene_models.NO_CONTACT_LIMITS
    config.max_contact_points, config.max_geom_pairs = limits
    return config


def worker(args) -> None:
    """Measures one variant in this process; prints one JSON line per batch size."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from dex4d_jax import envs, wrappers  # noqa: PLC0415

    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "DEX4D_JAX_CACHE", os.path.expanduser("~/.cache/dex4d_jax/jax")))
    config = _config(args, VARIANTS[args.worker]["caps"])
    env = envs.load("ap2ap", config)
    wrapped = wrappers.wrap_for_training(env, episode_length=config.episode_length)
    for n in args.num_envs:
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        state = jax.jit(jax.vmap(env.reset))(keys)
        actions = jax.random.uniform(jax.random.PRNGKey(1), (args.steps, n, env.action_size),
                                     minval=-1, maxval=1)

        @jax.jit
        def run_env(state, actions):
            return jax.lax.scan(lambda s, a: (jax.vmap(env.step)(s, a), None), state, actions)[0]

        def bare_one(object_id, data):
            return env.physics_step(env.scene.model_for(env._mjx_model, object_id), data)

        @jax.jit
        def run_bare(state, actions):
            def body(data, a):
                return jax.vmap(bare_one)(state.info["object_id"], data.replace(ctrl=a)), None
            return jax.lax.scan(body, state.pipeline_state, actions)[0]

        wrapped_state = jax.jit(wrapped.reset)(keys)

        @jax.jit
        def run_wrapped(state, actions):
            return jax.lax.scan(lambda s, a: (wrapped.step(s, a), None), state, actions)[0]

        c_env, t_env = _timed(run_env, state, actions, repeats=args.repeats)
        c_bare, t_bare = _timed(run_bare, state, actions, repeats=args.repeats)
        c_wrap, t_wrap = _timed(run_wrapped, wrapped_state, actions, repeats=args.repeats)
        out = run_env(state, actions)
        if not bool(jnp.all(jnp.isfinite(out.reward))):
            raise RuntimeError("non-finite reward")
        steps = n * args.steps
        print(json.dumps(dict(
            variant=args.worker, envs=n, compile=[c_env, c_bare, c_wrap],
            env=steps / t_env, bare=steps / t_bare, wrapped=steps / t_wrap,
            contacts=int(env._init_data._impl.contact.dist.shape[0]),
            substeps=env.n_substeps)), flush=True)


def native(args) -> list[dict]:
    """Native MuJoCo control steps per second (physics only) on the same scenes."""
    import numpy as np  # noqa: PLC0415

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import scene_throughput  # noqa: PLC0415

    from dex4d_jax.envs import robot_scene  # noqa: PLC0415
    from dex4d_jax import object_library  # noqa: PLC0415

    config = _config(args, caps=True)
    library = object_library.load_library(config.split, config.num_objects, config.object_seed,
                                          tuple(config.families))
    scene = robot_scene.build_scene_objects(library)
    substeps = round(config.ctrl_dt / config.sim_dt)
    rows = []
    for n in args.num_envs:
        ids = np.arange(n) % scene.num_objects
        qpos = np.stack([robot_scene.grasp_ready_qpos(scene, k, (0.45, 0.0)) for k in ids])
        rate = scene_throughput.bench_native(scene, ids, qpos, args.steps * substeps,
                                             args.threads, args.repeats)
        rows.append(dict(envs=n, env=rate / substeps))
    return rows


def main() -> None:
    """Runs every variant in a subprocess and prints one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256])
    parser.add_argument("--steps", type=int, default=10, help="control steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--objects", type=int, default=1024, help="library objects")
    parser.add_argument("--threads", type=int, default=2, help="native rollout threads")
    parser.add_argument("--no-randomization", action="store_true")
    parser.add_argument("--variants", nargs="+", default=["old", "new"], choices=list(VARIANTS))
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.num_envs and min(args.num_envs) < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--num-envs, --steps and --repeats must be positive")
    if args.worker:
        worker(args)
        return

    print(f"ap2ap stage {args.stage}, {args.objects} objects, randomization "
          f"{'off' if args.no_randomization else 'on'}; {os.cpu_count()} cpus; best of "
          f"{args.repeats} timed calls of {args.steps} control steps, compile excluded")
    print("| variant | contact slots | envs | compile env / bare / wrapped s | env steps/s | "
          "bare steps/s | wrapped steps/s | env / bare |")
    print("|---|---|---|---|---|---|---|---|")
    base = {}
    for name in args.variants:
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        if not VARIANTS[name]["flags"]:
            env["DEX4D_JAX_KEEP_XLA_FLAGS"] = "1"
        else:
            env.pop("DEX4D_JAX_KEEP_XLA_FLAGS", None)
        argv = [a for a in sys.argv[1:]]
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--worker", name],
                              env=env, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"variant {name} failed (exit {proc.returncode})")
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            base.setdefault(r["envs"], r["env"])
            speedup = r["env"] / base[r["envs"]]
            c = "/".join(f"{x:.0f}" for x in r["compile"])
            print(f"| {name} | {r['contacts']} | {r['envs']} | {c} | {r['env']:,.0f} "
                  f"(x{speedup:.2f}) | {r['bare']:,.0f} | {r['wrapped']:,.0f} | "
                  f"{r['bare'] / r['env']:.2f} |", flush=True)
    if not args.skip_native:
        for r in native(args):
            print(f"| native MuJoCo, {args.threads} threads (physics only) | - | {r['envs']} | "
                  f"- | {r['env']:,.0f} | - | - | - |", flush=True)


if __name__ == "__main__":
    main()
