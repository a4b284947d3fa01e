"""Full-scene physics throughput: MJX (jit + vmap, one object per env) vs native MuJoCo rollout.

Every environment holds a different training object resting on the table beside the hand,
the robot servoing at the grasp-ready pose. MJX runs `--steps` physics steps in one jitted
scan; native MuJoCo runs the same scenes (one compiled MjModel per environment) through
`mujoco.rollout` with `--threads` threads.

  python bench/scene_throughput.py --num-envs 64 256 --collision default hand_self
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout
from mujoco.mjx._src import collision_driver

from dex4d_jax import object_library, robot, scene_models
from dex4d_jax.envs import robot_scene

_OBJECT_XY = (0.5, 0.15)  # on the table, clear of the hand at the grasp-ready pose


def bench_mjx(scene, object_ids, qpos, steps, repeats):
    """(compile seconds, physics steps per second) of a jitted, vmapped scan of mjx.step.

    The rate is the median over `repeats` timed runs after the compiling one.
    """
    rollout = robot_scene.batched_rollout(scene, steps)
    run = jax.jit(lambda ids, qpos: rollout(ids, qpos).qpos)
    args = (jnp.asarray(object_ids), jnp.asarray(qpos, jnp.float32))
    t = time.perf_counter()
    jax.block_until_ready(run(*args))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(run(*args))
        times.append(time.perf_counter() - t)
    rate = len(object_ids) * steps / float(np.median(times))
    if not bool(jnp.all(jnp.isfinite(out))):
        raise RuntimeError("MJX produced non-finite states")
    return compile_s, rate


def bench_native(scene, object_ids, qpos, steps, threads, repeats):
    """Physics steps per second of mujoco.rollout over one model per env (median of runs)."""
    models = [scene.native_model(int(k)) for k in object_ids]
    datas = [mujoco.MjData(models[0]) for _ in range(threads)]
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    states = np.empty((len(models), mujoco.mj_stateSize(models[0], spec)))
    for i, m in enumerate(models):
        d = mujoco.MjData(m)
        d.qpos[:] = qpos[i]
        d.ctrl[:] = m.key(robot.GRASP_READY_KEY).ctrl
        mujoco.mj_getState(m, d, states[i], spec)
    control = np.tile(scene.mj_model.key(robot.GRASP_READY_KEY).ctrl, (len(models), 1, 1))
    kwargs = dict(nstep=steps, persistent_pool=True)
    mj_rollout.rollout(models, datas, states, control, **kwargs)  # warm the thread pool
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mj_rollout.rollout(models, datas, states, control, **kwargs)
        times.append(time.perf_counter() - t)
    return len(models) * steps / float(np.median(times))


def main() -> None:
    """Prints a markdown table of compile time and throughput per preset and batch size."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--collision", nargs="+", default=["default"],
                        choices=scene_models.COLLISION_PRESETS)
    parser.add_argument("--steps", type=int, default=60, help="physics steps per env (1/120 s)")
    parser.add_argument("--threads", type=int, default=2, help="native rollout threads")
    parser.add_argument("--objects", type=int, default=256, help="distinct training objects")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")
    parser.add_argument("--skip-native", action="store_true")
    args = parser.parse_args()
    library = object_library.load_library("train", num_objects=args.objects)
    print(f"MJX on {jax.devices()[0].platform}; {args.objects} objects; "
          f"{args.steps} physics steps of 1/120 s per env; median of {args.repeats} timed runs")
    print("| collision | geom pairs | envs | MJX compile s | MJX steps/s | native steps/s "
          f"({args.threads} threads) |")
    print("|---|---|---|---|---|---|")
    for preset in args.collision:
        scene = robot_scene.build_scene_objects(library, preset)
        pairs = len(list(collision_driver.geom_pairs(scene.mj_model)))
        for n in args.num_envs:
            object_ids = np.arange(n) % scene.num_objects
            qpos = np.stack([robot_scene.grasp_ready_qpos(scene, k, _OBJECT_XY)
                             for k in object_ids])
            compile_s, rate = bench_mjx(scene, object_ids, qpos, args.steps, args.repeats)
            native = ("-" if args.skip_native else
                      f"{bench_native(scene, object_ids, qpos, args.steps, args.threads, args.repeats):,.0f}")
            print(f"| {preset} | {pairs} | {n} | {compile_s:.1f} | {rate:,.0f} | {native} |",
                  flush=True)


if __name__ == "__main__":
    main()
