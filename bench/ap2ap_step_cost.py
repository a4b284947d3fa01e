"""Cost of one `ap2ap` control step against the bare `mjx.step` calls it makes.

  python bench/ap2ap_step_cost.py --num-envs 64 256 --steps 10

For each batch size it times, with the same per-environment objects and states:
  env      `jax.vmap(env.step)`: action mapping, randomized model, pushes, `n_substeps`
           physics steps, observation (points, site Jacobians, contact forces), reward, goals.
  bare     the `n_substeps` `mjx.step` calls alone, on each environment's object model.
  wrapped  the step through the training wrappers (episode bookkeeping and the fresh auto-reset,
           which computes a reset for every environment at every step).
The ratio env / bare is what observations, reward, points and randomization cost.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp

from dex4d_jax import envs, wrappers


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, best seconds per call over `repeats`)."""
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return compile_s, best


def main() -> None:
    """Prints a markdown table: compile time, env steps/s and the env/bare ratio."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=10, help="control steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--no-randomization", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("DEX4D_JAX_CACHE", os.path.expanduser("~/.cache/dex4d_jax/jax")))
    from dex4d_jax.envs import ap2ap  # noqa: PLC0415

    config = ap2ap.stage_config(args.stage)
    config.domain_randomization = not args.no_randomization
    env = envs.load("ap2ap", config)
    wrapped = wrappers.wrap_for_training(env, episode_length=config.episode_length)
    print(f"ap2ap stage {args.stage} on {jax.devices()[0].platform} ({os.cpu_count()} cpus), "
          f"{env.n_substeps} physics steps per control step, randomization "
          f"{'on' if config.domain_randomization else 'off'}")
    print("| envs | compile env / bare / wrapped s | env steps/s | bare steps/s | "
          "wrapped steps/s | env / bare |")
    print("|---|---|---|---|---|---|")
    for n in args.num_envs:
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        state = jax.jit(jax.vmap(env.reset))(keys)
        actions = jax.random.uniform(jax.random.PRNGKey(1), (args.steps, n, env.action_size),
                                     minval=-1, maxval=1)

        @jax.jit
        def run_env(state, actions):
            return jax.lax.scan(lambda s, a: (jax.vmap(env.step)(s, a), None), state, actions)[0]

        def bare_one(object_id, data):
            model = env.scene.model_for(env._mjx_model, object_id)
            return env.physics_step(model, data)

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
        assert bool(jnp.all(jnp.isfinite(out.reward))), "non-finite reward"
        steps = n * args.steps
        print(f"| {n} | {c_env:.0f} / {c_bare:.0f} / {c_wrap:.0f} | {steps / t_env:,.0f} | "
              f"{steps / t_bare:,.0f} | {steps / t_wrap:,.0f} | {t_env / t_bare:.2f} |")


if __name__ == "__main__":
    main()
