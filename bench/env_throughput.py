"""Batched step throughput of an environment through the training wrappers (jit + vmap).

  python bench/env_throughput.py --env ap2ap_wrench --num-envs 64 256 1024
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from dex4d_jax import envs, wrappers


def main() -> None:
    """Prints compile time and env steps per second for each batch size."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ap2ap_wrench", choices=envs.ALL_ENVS)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    env = envs.load(args.env)
    wrapped = wrappers.wrap_for_training(env, episode_length=100)
    print(f"{args.env} on {jax.devices()[0].platform}, {env.n_substeps} physics steps per step")
    print("| envs | compile s | env steps/s |")
    print("|---|---|---|")
    for n in args.num_envs:
        state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), n))

        @jax.jit
        def run(state, key):
            def body(state, key):
                action = jax.random.uniform(key, (n, env.action_size), minval=-1, maxval=1)
                return wrapped.step(state, action), None
            return jax.lax.scan(body, state, jax.random.split(key, args.steps))[0]

        t = time.perf_counter()
        jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        out = jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
        rate = n * args.steps / (time.perf_counter() - t)
        assert bool(jnp.all(jnp.isfinite(out.reward)))
        print(f"| {n} | {compile_s:.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
