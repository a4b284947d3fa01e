"""GPU check (issue 17): one run that measures the robot environment and PPO on a GPU.

  bash bench/gpu_check.sh                 # on the GPU machine: 8 minutes in all
  bash bench/gpu_check.sh --smoke         # on a CPU: tiny sizes, the same code paths

Prints a Markdown table (and writes it to OUT/table.md, with OUT/results.json):
  * compile time of the jitted, vmapped `ap2ap` step (stage 1, a scan of --steps control
    steps of `jax.vmap(env.step)`), compiled alone at the first batch size;
  * env steps/s of that program at each of --envs (1024, 4096, 8192), best of --repeats
    timed calls; the batch sizes after the first compile in parallel threads;
  * the same through MuJoCo Warp when `import warp` works and the environment has an `impl`
    setting (else the row says why not);
  * peak device memory (`peak_bytes_in_use`; n/a on a CPU);
  * PPO with the `paper` preset (stage 1, 4096 environments, the paper's networks): env
    steps/s over whole epochs (rollouts and learning; evaluation, which runs between epochs,
    excluded) after the first, which compiles;
  * a stage-1 learning curve: that PPO run goes on until the budget is spent (less
    --dagger-seconds), and its metrics.jsonl is plotted to OUT/curve.png (dex4d_jax.viz.plots,
    `dex4d plot`);
  * DAgger with the `paper` student preset (3200 environments, the paper's transformer), the
    PPO run's last policy as its teacher: the first epoch's time (its compile included) and
    env steps/s over the later epochs (student and teacher rollouts and the student's update).

The budget (--minutes, default 8) counts from the start of bench/gpu_check.sh (its wheel
install included) or of this script. The PPO run uses small epochs (--iterations-per-epoch;
by default sized from the measured env throughput to about --epoch-seconds of training) so
that it can stop at an epoch boundary before the budget; it is our PPO loop
(dex4d_jax/teacher/ppo.py driven by dex4d_jax/training/loop.run_epochs, as `dex4d train
teacher` runs it) without checkpoints. A watchdog prints the table with what was measured
and exits (code 3) if a compile or an epoch runs past the budget.

--smoke uses the `smoke` preset (16 environments, 8 objects, 20-step episodes), env sizes
8 and 16, and at most 4 epochs: on the project's 2-core CPU it takes about 6 minutes with a
cold compile cache (DEX4D_JAX_CACHE or --cache turn JAX's persistent cache on), less with a
warm one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def _start_time() -> float:
    """When the check started: bench/gpu_check.sh's start (DEX4D_CHECK_START), else now."""
    now = time.time()
    try:
        given = float(os.environ.get("DEX4D_CHECK_START", ""))
    except ValueError:
        return now
    return given if 0 <= now - given < 600 else now


START = _start_time()
HERE = os.path.dirname(os.path.abspath(__file__))
CURVE_KEYS = ["training/env/reward/fingertip", "training/env/reward/palm",
              "training/env/contact", "training/env/distance", "eval/success_rate"]
NOT_REACHED = "not reached within the budget"


def elapsed() -> float:
    """Seconds since the check started."""
    return time.time() - START


def say(message: str) -> None:
    """One progress line, with the elapsed time, flushed."""
    print(f"[{elapsed():6.1f} s] {message}", flush=True)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


class Report:
    """The table's rows, filled in as the check goes.

    It is printed once, by whoever ends first: the main thread or the watchdog.
    """

    def __init__(self, args, labels: list[str]):
        """Declares the rows (in order), each "not reached" until set."""
        self.args = args
        self.rows = {label: (NOT_REACHED, "") for label in labels}
        self.header: list[str] = []
        self.results: dict = {"command": _command(), "smoke": args.smoke,
                              "budget_s": args.minutes * 60}
        self._lock = threading.Lock()
        self._done = False

    def set(self, label: str, value: str, note: str = "") -> None:
        """Fills in one row (labels not declared at the start are appended)."""
        with self._lock:
            self.rows[label] = (value, note)

    def table(self) -> str:
        """The Markdown table with its header lines."""
        lines = [*self.header, "", "| measure | value | notes |", "|---|---|---|"]
        lines += [f"| {label} | {value} | {note} |" for label, (value, note)
                  in self.rows.items()]
        return "\n".join(lines) + "\n"

    def finish(self, out: str, status: str) -> bool:
        """Prints and writes the table once; returns False if it was already done."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        self.set("total time", _minutes(elapsed()),
                 f"budget {self.args.minutes:g} min; {status}")
        text = self.table()
        self.results.update(status=status, total_s=elapsed(),
                            rows={k: {"value": v, "note": n} for k, (v, n) in self.rows.items()})
        try:
            with open(os.path.join(out, "table.md"), "w") as f:
                f.write(text)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump(self.results, f, indent=2)
        except OSError as err:
            print(f"could not write the table to {out}: {err}", file=sys.stderr)
        print("\n" + text, flush=True)
        return True


def _command() -> str:
    shown = os.environ.get("DEX4D_CHECK_COMMAND") or f"python {sys.argv[0]}"
    return " ".join([shown, *sys.argv[1:]])


def _versions() -> str:
    from importlib import metadata  # noqa: PLC0415

    names = ["jax", "jaxlib", "flax", "optax", "mujoco", "mujoco-mjx", "brax"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} ?")
    return ", ".join(found) + f"; python {platform.python_version()}"


def _peak_memory() -> tuple[str, float | None]:
    """(`peak_bytes_in_use` of the first device as text, in GiB), or n/a where there is none."""
    import jax  # noqa: PLC0415

    device = jax.local_devices()[0]
    if device.platform == "cpu":
        return "n/a (CPU)", None
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 (a backend without memory statistics)
        stats = {}
    peak = stats.get("peak_bytes_in_use")
    if peak is None:
        return "n/a (no peak_bytes_in_use)", None
    gib = peak / 2**30
    return f"{gib:.2f} GiB", gib


# -- the environment ------------------------------------------------------------------------


def run_config(args):
    """The PPO run's config (teacher.get_config, stage 1): `paper`, or `smoke` for --smoke."""
    from dex4d_jax.experiments import configs  # noqa: PLC0415
    from dex4d_jax.experiments.configs import teacher  # noqa: PLC0415

    config = teacher.get_config("smoke" if args.smoke else "paper", env="ap2ap", stage=1)
    if args.smoke:
        config.env.num_objects = 8
        config.ppo.update(episode_length=20, num_eval_envs=8)
        config.eval.num_episodes = 8
    if args.objects:
        config.env.num_objects = args.objects
    return configs.validate(config)


def _env_program(env):
    """The jit of a `lax.scan` of `jax.vmap(env.step)` over [steps, envs, actions]."""
    import jax  # noqa: PLC0415

    def run(state, actions):
        return jax.lax.scan(lambda s, a: (jax.vmap(env.step)(s, a), None), state, actions)[0]

    return jax.jit(run)


def _states_for(reset, first_keys, base_state, n: int, n0: int):
    """States of `n` environments.

    The `n0` reset states repeated when `n` is a multiple of `n0` (one reset program for every
    size), else a reset at size `n`.
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    if n % n0 == 0:
        return jax.tree.map(lambda x: jnp.concatenate([x] * (n // n0)), base_state)
    return reset(jax.random.split(first_keys, n))


def env_section(args, report: Report, env, labels: dict) -> dict[int, float]:
    """Compile time and env steps/s at each of --envs; returns {envs: steps/s}.

    The first size is compiled alone (its time is the table's compile time), the others in
    parallel threads.
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    sizes = args.envs
    n0 = sizes[0]
    key = jax.random.PRNGKey(0)
    reset = jax.jit(jax.vmap(env.reset))
    say(f"compiling the reset ({n0} envs)")
    t = time.time()
    base_state = jax.block_until_ready(reset(jax.random.split(key, n0)))
    say(f"reset compiled and run in {time.time() - t:.1f} s")
    program = _env_program(env)
    lowered, states, actions = {}, {}, {}
    for n in sizes:
        states[n] = _states_for(reset, key, base_state, n, n0)
        actions[n] = jax.random.uniform(jax.random.PRNGKey(1), (args.steps, n, env.action_size),
                                        minval=-1.0, maxval=1.0)
        t = time.time()
        lowered[n] = program.lower(states[n], actions[n])
        say(f"traced the {args.steps}-step program at {n} envs in {time.time() - t:.1f} s")

    compile_s: dict[int, float] = {}

    def compile_one(n):
        t = time.time()
        compiled = lowered[n].compile()
        compile_s[n] = time.time() - t
        say(f"compiled {n} envs in {compile_s[n]:.1f} s")
        return compiled

    say(f"compiling the env step at {n0} envs (alone)")
    compiled = {n0: compile_one(n0)}
    report.set(labels["compile"], f"{compile_s[n0]:.1f} s",
               f"jit(vmap(env.step)) scanned over {args.steps} control steps, {n0} envs, "
               "compiled alone (XLA compile; tracing excluded)")
    rest = sizes[1:]
    if rest:
        say(f"compiling {', '.join(map(str, rest))} envs in parallel threads")
        with ThreadPoolExecutor(len(rest)) as pool:
            for n, c in zip(rest, pool.map(compile_one, rest), strict=True):
                compiled[n] = c
    rates = {}
    for n in sizes:
        jax.block_until_ready(compiled[n](states[n], actions[n]))  # warm-up
        best = math.inf
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = jax.block_until_ready(compiled[n](states[n], actions[n]))
            best = min(best, time.perf_counter() - t)
        finite = bool(jnp.all(jnp.isfinite(out.reward)))
        rates[n] = n * args.steps / best
        together = ("alone" if n == n0 or len(rest) == 1
                    else f"in parallel with the other {len(rest) - 1}")
        report.set(labels[n], f"{rates[n]:,.0f}",
                   f"best of {args.repeats} calls of {args.steps} steps ({best * 1e3:.0f} ms); "
                   f"compile {compile_s[n]:.1f} s ({together})"
                   + ("" if finite else "; NON-FINITE REWARD"))
        say(f"{n} envs: {rates[n]:,.0f} env steps/s")
        del out
        states[n] = actions[n] = compiled[n] = None
    return rates


def warp_row(args, report: Report, label: str) -> None:
    """The warp row: measured only where warp-lang imports and the environment can use it."""
    try:
        import warp  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 (ImportError, or a warp without a usable CUDA)
        report.set(label, "warp-lang not installed")
        return
    from dex4d_jax import envs  # noqa: PLC0415

    if "impl" not in envs.get_default_config("ap2ap"):
        report.set(label, "not measured", "warp-lang imports, but ap2ap has no `impl` "
                   "setting to select MuJoCo Warp")
        return
    # The environment can select MJX's Warp implementation: the same measurement through it.
    config = run_config(args)
    config.env.impl = "warp"
    # Warp's contact buffer is shared by the whole batch: room for the largest one.
    config.env.warp_naconmax = max(args.envs) * config.env.max_contact_points
    try:
        env = envs.from_run_config(config)
        sub = {n: f"warp {n}" for n in args.envs}
        sub["compile"] = "warp compile"
        rates = env_section(args, report, env, sub)
        report.set(label, ", ".join(f"{n}: {r:,.0f}" for n, r in rates.items()),
                   "env steps/s by batch size; see the warp rows")
    except Exception as err:  # noqa: BLE001 (report it, go on with PPO)
        report.set(label, "failed", " ".join(f"{type(err).__name__}: {err}".split())[:300])


# -- PPO --------------------------------------------------------------------------------------


class _BudgetReachedError(Exception):
    """The next epoch would end past the training deadline."""


def iterations_per_epoch(args, config, env_rates: dict[int, float], seconds_left: float
                         ) -> tuple[int, str, float]:
    """PPO iterations per epoch, why, and the guessed seconds of one epoch's training.

    --iterations-per-epoch, else about --epoch-seconds of training at 40% of the env throughput
    measured nearest the run's environment count (rollouts through the training wrappers and
    the learning cost more than the bare steps), and at most a quarter of what `seconds_left`
    leaves after 150 s for the compiles, so that several epochs follow the first.
    """
    ppo = config.ppo
    per_iteration = ppo.batch_size * ppo.num_minibatches * ppo.unroll_length
    if args.smoke or not env_rates:
        return args.iterations_per_epoch or 1, "smoke" if args.smoke else "no env rate", 0.0
    nearest = min(env_rates, key=lambda n: abs(math.log(n / ppo.num_envs)))
    guess = 0.4 * env_rates[nearest]
    if args.iterations_per_epoch:
        k = args.iterations_per_epoch
        return k, "--iterations-per-epoch", k * per_iteration / guess
    seconds = min(args.epoch_seconds, max(seconds_left - 150.0, 40.0) / 4)
    k = max(1, min(60, round(seconds * guess / per_iteration)))
    return k, (f"about {seconds:.0f} s at 0.4 x {env_rates[nearest]:,.0f} env "
               f"steps/s ({nearest} envs)"), k * per_iteration / guess


def ppo_section(args, report: Report, config, env, eval_env, env_rates, out: str,
                labels: dict, train_deadline: float) -> list[dict]:
    """Trains until the schedule ends or the next epoch would pass the deadline.

    Returns:
      (the run's metrics.jsonl records, its networks, the last epoch's inference parameters:
      the teacher of the DAgger section).
    """
    from dex4d_jax.teacher import ppo  # noqa: PLC0415
    from dex4d_jax.training import evaluation, loop, policies  # noqa: PLC0415

    cfg = config.ppo
    per_iteration = cfg.batch_size * cfg.num_minibatches * cfg.unroll_length
    k, why, guessed_s = iterations_per_epoch(args, config, env_rates,
                                             train_deadline - time.time())
    max_epochs = args.max_epochs or (
        4 if args.smoke else max(1, math.ceil(cfg.num_timesteps / (k * per_iteration))))
    cfg.num_evals = max_epochs + 1
    cfg.num_timesteps = max_epochs * k * per_iteration
    run = os.path.join(out, "ppo_stage1")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "metrics.jsonl"), "w"):
        pass  # a fresh log
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    networks = policies.teacher_networks(config, env.observation_size, env.action_size)
    algo = ppo.PPO(env, networks, cfg)
    schedule = algo.schedule
    say(f"PPO ({'smoke' if args.smoke else 'paper'} preset): {cfg.num_envs} envs, {k} "
        f"iteration(s) of {per_iteration:,} steps per epoch ({why}), at most "
        f"{schedule.num_epochs} epochs; compiling the evaluation, then the first epoch")
    state = algo.init_state(cfg.seed)
    rollout = evaluation.make_rollout(eval_env, policies.deterministic_policy(networks),
                                      cfg.episode_length)
    # `cycle`: the seconds the next epoch and its evaluation should take: the last epoch's
    # (the first one's compile excluded: the guess stands in for it) and evaluation's.
    timing = {"epochs": [], "evals": [], "cycle": 0.0,
              "teacher": algo.inference_params(state)}  # the last epoch's policy

    def evaluate(state):
        t = time.time()
        result = evaluation.evaluate(rollout, algo.inference_params(state), cfg.num_eval_envs,
                                     config.eval.seed + 1, batch_size=cfg.num_eval_envs)
        timing["evals"].append(time.time() - t)
        epoch = len(timing["epochs"])
        if epoch:
            train_s = timing["epochs"][-1][0] if epoch >= 2 else guessed_s
            timing["cycle"] = train_s + timing["evals"][-1]
        rate = (f", {timing['epochs'][-1][1]:,.0f} steps/s" if timing["epochs"] else "")
        say(f"epoch {epoch}: {state.env_steps:,} steps{rate}; evaluation "
            f"{timing['evals'][-1]:.1f} s, success {result.success_rate:.3f}, reward "
            f"{result.episode_reward:.1f}")
        return result.as_dict()

    def run_epoch(state):
        if time.time() + timing["cycle"] > train_deadline:
            raise _BudgetReachedError
        t = time.time()
        next_state, metrics, finite = algo.run_epoch(state)
        timing["epochs"].append((time.time() - t, metrics["training/sps"]))
        if finite:
            timing["teacher"] = algo.inference_params(next_state)
        return next_state, metrics, finite

    def on_diverged(step, metrics):
        return f"PPO diverged in the epoch ending at step {step:,}"

    stopped = "schedule complete"
    try:
        loop.run_epochs(run, state, schedule, run_epoch, lambda *a: None, evaluate,
                        on_diverged, progress=False)
    except _BudgetReachedError:
        stopped = "stopped at the budget"
    except loop.TrainingDiverged as err:
        stopped = f"diverged: {err}"
    epochs = timing["epochs"]
    steps_per_epoch = schedule.steps_per_epoch
    if timing["evals"]:
        first = timing["evals"][0] + (epochs[0][0] if epochs else 0.0)
        report.set(labels["ppo_compile"], f"{first:.1f} s",
                   f"first evaluation ({cfg.num_eval_envs} episodes of {cfg.episode_length} "
                   f"steps: {timing['evals'][0]:.1f} s) + first epoch "
                   f"({epochs[0][0]:.1f} s)" if epochs else "first evaluation only")
    if len(epochs) >= 2:
        later = [s for s, _ in epochs[1:]]
        rate = steps_per_epoch * len(later) / sum(later)
        report.set(labels["ppo"], f"{rate:,.0f}",
                   f"{cfg.num_envs} envs; {len(later)} epoch(s) after the first, {k} "
                   f"iteration(s) = {steps_per_epoch:,} env steps each, "
                   f"{sum(later) / len(later):.2f} s per epoch; evaluation excluded")
        report.results["ppo_steps_per_s"] = rate
    elif epochs:
        report.set(labels["ppo"], "n/a", "only the first (compiling) epoch ran: "
                   f"{steps_per_epoch / epochs[0][0]:,.0f} env steps/s with its compile")
    report.results["ppo"] = {"num_envs": cfg.num_envs, "iterations_per_epoch": k,
                             "steps_per_epoch": steps_per_epoch,
                             "epoch_seconds": [s for s, _ in epochs],
                             "eval_seconds": timing["evals"], "stopped": stopped}
    say(f"PPO {stopped} after {len(epochs)} epoch(s)")
    from dex4d_jax.viz import plots  # noqa: PLC0415

    try:
        records = plots.read_metrics(run)
    except (FileNotFoundError, plots.MetricsError):  # no evaluation finished within the budget
        records = []
    return records, networks, timing["teacher"]


# -- DAgger -----------------------------------------------------------------------------------


def student_config(args, config):
    """The DAgger run's config: the `paper` student preset (3200 environments, the paper's
    transformer), or `smoke` for --smoke, on the PPO run's environment."""
    from dex4d_jax.experiments import configs  # noqa: PLC0415
    from dex4d_jax.experiments.configs import student  # noqa: PLC0415

    s = student.get_config("smoke" if args.smoke else "paper")
    s.env = config.env
    s.dagger.episode_length = config.ppo.episode_length
    if args.smoke:
        s.dagger.update(num_envs=config.ppo.num_envs, unroll_length=2, num_minibatches=1)
    return configs.validate(s)


def dagger_section(args, report: Report, config, env, networks, teacher_params, labels: dict,
                   deadline: float) -> None:
    """DAgger epochs of the student on the robot, the PPO run's policy as its teacher, until
    --dagger-epochs or the next epoch would pass `deadline`: the first epoch's time (its
    compile included) and env steps/s over the later ones (rollouts of student and teacher,
    the student's update; no evaluation). The last epoch's losses go to results.json."""
    from dex4d_jax.student import dagger  # noqa: PLC0415
    from dex4d_jax.student.policy import make_policy  # noqa: PLC0415
    from dex4d_jax.training import policies  # noqa: PLC0415

    s = student_config(args, config)
    cfg = s.dagger
    k = args.dagger_iterations_per_epoch or (1 if args.smoke else 10)
    per_iteration = cfg.num_envs * cfg.unroll_length
    cfg.num_evals = args.dagger_epochs + 1
    cfg.num_timesteps = args.dagger_epochs * k * per_iteration
    policy = make_policy(s, env)
    algo = dagger.DAgger(env, policy, policies.deterministic_policy(networks), cfg)
    steps = algo.schedule.steps_per_epoch
    say(f"DAgger ({'smoke' if args.smoke else 'paper'} student): {cfg.num_envs} envs, {k} "
        f"iteration(s) of {per_iteration:,} steps per epoch, at most {args.dagger_epochs} "
        "epochs; compiling the first epoch")
    state = algo.init_state(cfg.seed)
    epochs, metrics = [], {}
    while len(epochs) < args.dagger_epochs:
        if epochs and time.time() + epochs[-1] > deadline:
            break
        t = time.time()
        state, metrics, finite = algo.run_epoch(state, teacher_params)
        epochs.append(time.time() - t)
        say(f"DAgger epoch {len(epochs)}: {epochs[-1]:.1f} s, action loss "
            f"{float(metrics['training/loss/action']):.4f}")
        if not finite:
            report.set(labels["dagger"], "diverged", f"non-finite values in epoch {len(epochs)}")
            break
    if epochs:
        report.set(labels["dagger_compile"], f"{epochs[0]:.1f} s",
                   f"first epoch, {steps:,} env steps ({cfg.num_envs} envs)")
    if len(epochs) >= 2:
        later = epochs[1:]
        rate = steps * len(later) / sum(later)
        report.set(labels["dagger"], f"{rate:,.0f}",
                   f"{cfg.num_envs} envs; {len(later)} epoch(s) after the first, {steps:,} env "
                   f"steps each, {sum(later) / len(later):.2f} s per epoch")
        report.results["dagger_steps_per_s"] = rate
    elif epochs:
        report.set(labels["dagger"], "n/a", "only the first (compiling) epoch ran before the "
                   "budget")
    heads = state.training.params["params"]
    report.results["dagger"] = {
        "num_envs": cfg.num_envs, "steps_per_epoch": steps, "epoch_seconds": epochs,
        "head_qpos": int(heads["head_qpos"]["kernel"].shape[-1]),
        "head_qvel": int(heads["head_qvel"]["kernel"].shape[-1]),
        "obs_key": env.student_layout.obs_key,
        "metrics": {key: float(value) for key, value in metrics.items()}}


def curve_row(report: Report, records: list[dict], out: str, label: str, run: str) -> None:
    """Plots the run's curve to OUT/curve.png and fills in the curve row."""
    from dex4d_jax.viz import plots  # noqa: PLC0415

    trained = [r for r in records if "training/sps" in r]
    if not trained:
        report.set(label, "no curve", "no training epoch finished within the budget")
        return
    path = os.path.join(out, "curve.png")
    try:
        plots.plot_runs({run: records}, path, {key: (key,) for key in CURVE_KEYS},
                        title=f"stage 1, {os.path.basename(run)}")
    except (ImportError, ValueError) as err:
        report.set(label, "no curve", f"plotting failed: {err}")
        return
    last = trained[-1]
    seconds = last.get("training/walltime", 0.0)
    report.set(label, path,
               f"{len(trained)} epoch(s), {last['step']:,} env steps, {seconds:.0f} s of "
               "training (the first epoch's compile included); last epoch: success "
               f"{last.get('eval/success_rate', math.nan):.3f}, fingertip "
               f"{last.get('training/env/reward/fingertip', math.nan):.3f}, palm "
               f"{last.get('training/env/reward/palm', math.nan):.3f}, contact "
               f"{last.get('training/env/contact', math.nan):.3f}, distance "
               f"{last.get('training/env/distance', math.nan):.3f}")


# -- main -------------------------------------------------------------------------------------


def parse_args(argv=None):
    """The command line; --smoke changes the defaults."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes for a CPU (smoke preset, 8 and 16 envs, 4 epochs)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="time budget of the whole check (default 8; 10 with --smoke)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: $OUT if set, else runs/gpu_check)")
    parser.add_argument("--envs", type=int, nargs="+", default=None,
                        help="env batch sizes (default 1024 4096 8192; 8 16 with --smoke)")
    parser.add_argument("--steps", type=int, default=None,
                        help="control steps per timed call (default 20; 2 with --smoke)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per size (default 3; 1 with --smoke)")
    parser.add_argument("--objects", type=int, default=None,
                        help="library objects (default: the preset's, 1024; 8 with --smoke)")
    parser.add_argument("--iterations-per-epoch", type=int, default=None,
                        help="PPO iterations per epoch (default: sized to --epoch-seconds)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="PPO epochs at most (default: the preset's steps; 4 with --smoke)")
    parser.add_argument("--epoch-seconds", type=float, default=15.0,
                        help="aimed training time of one PPO epoch (default 15)")
    parser.add_argument("--dagger-seconds", type=float, default=150.0,
                        help="budget seconds kept for the DAgger section (default 150)")
    parser.add_argument("--dagger-epochs", type=int, default=None,
                        help="DAgger epochs at most (default 4; 2 with --smoke)")
    parser.add_argument("--dagger-iterations-per-epoch", type=int, default=None,
                        help="DAgger iterations per epoch (default 10; 1 with --smoke)")
    parser.add_argument("--cache", default=os.environ.get("DEX4D_JAX_CACHE"),
                        help="JAX persistent compile cache folder (default: $DEX4D_JAX_CACHE; "
                             "none if unset)")
    args = parser.parse_args(argv)
    small = args.smoke
    args.minutes = args.minutes if args.minutes is not None else (10.0 if small else 8.0)
    args.envs = args.envs or ([8, 16] if small else [1024, 4096, 8192])
    args.steps = args.steps or (2 if small else 20)
    args.repeats = args.repeats or (1 if small else 3)
    args.dagger_epochs = args.dagger_epochs or (2 if small else 4)
    args.out = args.out or os.environ.get("OUT") or os.path.join("runs", "gpu_check")
    if min(args.envs) < 1 or args.steps < 1 or args.repeats < 1 or args.minutes <= 0:
        parser.error("--envs, --steps, --repeats and --minutes must be positive")
    return args


def main(argv=None) -> int:
    """Runs the check; returns the exit code (0, or 3 when the watchdog cut it short)."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    budget = args.minutes * 60
    labels = {"compile": "env step compile",
              **{n: f"env steps/s, {n} envs (jax)" for n in args.envs},
              "warp": "env steps/s (warp)", "memory": "peak device memory",
              "ppo_compile": "PPO compile (evaluation + first epoch)",
              "ppo": "PPO steps/s, learning included",
              "curve": "stage-1 curve",
              "dagger_compile": "DAgger compile (first epoch)",
              "dagger": "DAgger steps/s, learning included"}
    report = Report(args, list(labels.values()))
    say(f"GPU check: budget {args.minutes:g} min, output in {args.out}")

    # The watchdog: past the budget (less a few seconds to exit), print what there is.
    def watchdog():
        time.sleep(max(0.0, budget - 8 - elapsed()))
        if report.finish(args.out, "cut short by the watchdog at the budget"):
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    # dex4d_jax first: it sets XLA's CPU flags before JAX starts its backends.
    import dex4d_jax  # noqa: F401, I001, PLC0415

    from dex4d_jax import xla_flags  # noqa: PLC0415
    import jax  # noqa: I001, PLC0415

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from dex4d_jax import envs  # noqa: PLC0415

    device = jax.local_devices()[0]
    report.header = [
        "## GPU check (issue 17)" + (" --smoke" if args.smoke else ""),
        "",
        f"- command: `{_command()}`",
        f"- device: {device.device_kind} ({device.platform}), {jax.local_device_count()} "
        f"local device(s); {_versions()}",
    ]
    if args.cache:
        report.header.append(f"- JAX persistent compile cache: {args.cache} (a compile time is "
                             "a cache load where it held the program)")
    report.header.append(f"- dex4d_jax's CPU XLA flags (dex4d_jax/xla_flags.py): "
                         f"{xla_flags._status}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    say(f"device: {device.device_kind} ({device.platform}); {_versions()}")
    config = run_config(args)
    say(f"building the environments (stage 1, {config.env.num_objects} objects)")
    t = time.time()
    env = envs.from_run_config(config)
    eval_env = envs.from_run_config(config, evaluation=True)
    say(f"environments built in {time.time() - t:.1f} s")
    report.header.append(
        f"- ap2ap stage 1: {config.env.num_objects} objects, domain randomization "
        f"{'on' if config.env.domain_randomization else 'off'}, {env.n_substeps} physics steps "
        f"per control step; budget {args.minutes:g} min")

    env_rates = env_section(args, report, env, labels)
    memory, gib = _peak_memory()
    report.set(labels["memory"], memory, f"after the env steps (up to {max(args.envs)} envs)")
    warp_row(args, report, labels["warp"])

    # Training stops where the next epoch would end less than `reserve` seconds before the
    # budget: the curve, the table and the interpreter's exit need that much.
    reserve = 25.0
    records, networks, teacher_params = ppo_section(
        args, report, config, env, eval_env, env_rates, args.out, labels,
        START + budget - reserve - args.dagger_seconds)
    dagger_section(args, report, config, env, networks, teacher_params, labels,
                   START + budget - reserve)
    final, final_gib = _peak_memory()
    if final_gib is not None:
        report.set(labels["memory"], final,
                   f"whole check (PPO at {config.ppo.num_envs} envs included); "
                   f"{memory} after the env steps (up to {max(args.envs)} envs)")
    curve_row(report, records, args.out, labels["curve"], os.path.join(args.out, "ppo_stage1"))
    report.finish(args.out, "complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
