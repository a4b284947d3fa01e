"""MJX's warp implementation against the JAX one on the ap2ap robot scene (issue 17).

Two measurements per implementation and batch size, each a jitted `lax.scan`:
  physics  `--steps` mjx.step calls on the scene (grasp-ready robot holding its pose, a bottle
           dropped 1 cm onto the table), one object per world;
  env      `--control-steps` ap2ap control steps (4 physics steps each) through the training
           wrappers with random actions (`impl` setting).
"first call" is the jit compile plus one run (warp's kernels come from its own cache,
~/.cache/warp, once built: about 90 s the first time on a 2-core CPU); "run" the second call.
Needs warp-lang (`pip install mujoco-warp warp-lang`):

  python bench/mjx_warp.py --worlds 1 2
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from dex4d_jax.envs import ap2ap, objects, robot_scene
from mujoco import mjx

from dex4d_jax import envs, object_library, robot, wrappers


def _timed(fn, *args) -> tuple[float, float, object]:
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return first, time.perf_counter() - t, out


def physics(impl: str, worlds: int, steps: int) -> tuple[float, float, np.ndarray]:
    """(first call s, run s, final qpos [worlds, nq]) of `steps` mjx.step calls per world."""
    scene = robot_scene.build_scene_objects(
        object_library.load_library("train", worlds, 0, ("bottle",)))
    m = scene.mj_model
    model = objects.put_model(m, impl)
    init = (mjx.make_data(m, impl="warp", naconmax=32 * worlds, njmax=150) if impl == "warp"
            else mjx.make_data(model))
    qpos = jnp.asarray(np.stack([robot_scene.grasp_ready_qpos(scene, i, lift=0.01)
                                 for i in range(worlds)]), jnp.float32)

    @jax.jit
    def run(qpos):
        def one(object_id, q):
            world = scene.model_for(model, object_id)
            data = init.replace(qpos=q, ctrl=q[:robot.NUM_JOINTS])
            return jax.lax.scan(lambda d, _: (mjx.step(world, d), None), data, None, steps)[0]
        return jax.vmap(one)(jnp.arange(worlds), qpos).qpos

    first, run_s, out = _timed(run, qpos)
    return first, run_s, np.asarray(out)


def env_steps(impl: str, worlds: int, steps: int) -> tuple[float, float, int]:
    """(first call s, run s, physics steps per step) of `steps` ap2ap control steps."""
    config = ap2ap.default_config()
    config.num_objects, config.impl = 8, impl
    config.warp_naconmax = worlds * config.max_contact_points
    env = envs.load("ap2ap", config)
    wrapped = wrappers.wrap_for_training(env, episode_length=100)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), worlds))

    @jax.jit
    def run(state, key):
        def body(state, key):
            action = jax.random.uniform(key, (worlds, env.action_size), minval=-1, maxval=1)
            return wrapped.step(state, action), None
        return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward

    first, run_s, _ = _timed(run, state, jax.random.PRNGKey(1))
    return first, run_s, env.n_substeps


def main() -> None:
    """Prints one table row per implementation, batch size and measurement."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=60, help="physics steps per world")
    parser.add_argument("--control-steps", type=int, default=15, help="0: skip the env rows")
    parser.add_argument("--impls", nargs="+", default=["jax", "warp"], choices=objects.IMPLS)
    args = parser.parse_args()
    for impl in args.impls:
        objects.require_impl(impl)
    print(f"ap2ap scene on {jax.devices()[0].platform}")
    print("| what | impl | worlds | first call s | run s | physics steps/s | max abs qpos vs jax |")
    print("|---|---|---|---|---|---|---|")
    for worlds in args.worlds:
        final = {}
        for impl in args.impls:
            first, run_s, final[impl] = physics(impl, worlds, args.steps)
            diff = (f"{np.abs(final[impl] - final['jax']).max():.1e}"
                    if "jax" in final and impl != "jax" else "")
            print(f"| physics, {args.steps} steps | {impl} | {worlds} | {first:.1f} | {run_s:.3f} "
                  f"| {worlds * args.steps / run_s:.0f} | {diff} |", flush=True)
        if args.control_steps:
            for impl in args.impls:
                first, run_s, substeps = env_steps(impl, worlds, args.control_steps)
                print(f"| env, {args.control_steps} control steps | {impl} | {worlds} | "
                      f"{first:.1f} | {run_s:.3f} | "
                      f"{worlds * args.control_steps * substeps / run_s:.0f} | |", flush=True)


if __name__ == "__main__":
    main()
