"""Teacher training presets and the curriculum's stages.

`paper` holds the authors' PPO settings (SPEC section 5) for GPU servers; `quick` is sized for
a 2-core laptop CPU on `ap2ap_wrench` (about 10 minutes): smaller actor and critic MLPs, a
half-width shared point MLP ([64, 64], mean-max pooling), an asymmetric critic on the
privileged state, and fewer environments. `smoke` runs the whole pipeline (environment, PPO
iterations, checkpoints, evaluation) on a CPU in minutes and learns nothing worth keeping.

On `ap2ap` (the robot), `stage` selects a column of Table IV: the environment's settings
(envs/ap2ap.py STAGES, written into the config's `env` section), the learning rate and, under
`paper`, the stage's PPO iterations. Stage 3 starts from the stage-2 checkpoint
(`dex4d train teacher --stage 3 --init-from RUN`).

A run's config is one ConfigDict: `env` (the environment's name and all its settings),
`network`, `ppo`, `eval` (and `stage` on ap2ap). Every field can be changed from the command
line with `--set SECTION.KEY=VALUE` (experiments/configs/__init__.py).
"""

from __future__ import annotations

from ml_collections import config_dict

from dex4d_jax import config_checks, envs
from dex4d_jax.networks.point_encoders import ENCODERS, POOLINGS

PRESETS = ("quick", "paper", "smoke")
STAGES = (1, 2, 3)
# Table IV: learning rate and PPO iterations of each stage.
STAGE_LEARNING_RATE = {1: 3e-4, 2: 3e-4, 3: 3e-5}
STAGE_ITERATIONS = {1: 15_000, 2: 10_000, 3: 25_000}


# Declared ranges of the training settings (dex4d_jax/config_checks.py); the environment's are
# declared with its defaults (envs/*.py SETTING_RANGES).
RANGES = {
    "network.encoder": config_checks.OneOf(ENCODERS),
    "network.pooling": config_checks.OneOf(POOLINGS),
    "network.num_points": config_checks.at_least(1),
    "network.init_std": config_checks.positive(),
    "ppo.num_timesteps": config_checks.at_least(1),
    "ppo.num_envs": config_checks.at_least(1),
    "ppo.unroll_length": config_checks.at_least(1),
    "ppo.batch_size": config_checks.at_least(1),
    "ppo.num_minibatches": config_checks.at_least(1),
    "ppo.num_updates_per_batch": config_checks.at_least(1),
    "ppo.learning_rate": config_checks.positive(),
    "ppo.desired_kl": config_checks.positive(),
    "ppo.discounting": config_checks.Range(0.0, 1.0),
    "ppo.gae_lambda": config_checks.fraction(),
    "ppo.clipping_epsilon": config_checks.positive(),
    "ppo.entropy_cost": config_checks.non_negative(),
    "ppo.max_grad_norm": config_checks.Range(0, None, low_open=True, optional=True),
    "ppo.vf_loss_coefficient": config_checks.non_negative(),
    "ppo.reward_scaling": config_checks.positive(),
    "ppo.episode_length": config_checks.at_least(1),
    "ppo.num_evals": config_checks.at_least(1),
    "ppo.num_eval_envs": config_checks.at_least(1),
    "ppo.seed": config_checks.Range(integer=True),
    "eval.num_episodes": config_checks.at_least(1),
    "eval.seed": config_checks.Range(integer=True),
}


def _base() -> config_dict.ConfigDict:
    return config_dict.create(
        network=config_dict.create(
            encoder="paired",
            num_points=128,
            point_hidden=(128, 128),
            pooling="mean_max",
            policy_hidden=(1024, 1024, 512, 512),
            value_hidden=(1024, 1024, 512, 512),
            activation="elu",
            init_std=0.8,
            policy_obs_key="state",
            value_obs_key="state",
        ),
        ppo=config_dict.create(
            num_timesteps=2_000_000_000,
            num_envs=4096,
            unroll_length=8,
            # One PPO iteration = 4096 envs x 8 steps in 4 minibatches, as the authors' code:
            # Brax's batch_size counts trajectories of unroll_length steps (4 x 1024 = 4096).
            batch_size=1024,
            num_minibatches=4,
            num_updates_per_batch=5,
            learning_rate=3e-4,
            learning_rate_schedule="ADAPTIVE_KL",
            desired_kl=0.016,
            discounting=0.96,
            gae_lambda=0.95,
            clipping_epsilon=0.2,
            entropy_cost=0.0,
            max_grad_norm=1.0,
            # Brax halves its value loss; 4 here is the authors' coefficient of 2.
            vf_loss_coefficient=4.0,
            reward_scaling=1.0,
            episode_length=400,
            num_evals=200,
            num_eval_envs=1024,
            deterministic_eval=True,
            seed=0,
        ),
        # Evaluation runs without domain randomization unless `randomization` is True.
        eval=config_dict.create(num_episodes=512, seed=12345, randomization=False),
    )


def get_config(preset: str, env: str = "ap2ap_wrench", stage: int | None = None
               ) -> config_dict.ConfigDict:
    """The configuration of a preset (one of PRESETS) for an environment.

    Args:
      preset: "quick", "paper" or "smoke".
      env: the registered environment to train on.
      stage: the curriculum stage (1, 2 or 3) on "ap2ap"; None there means 1. Other
        environments have no stages.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if env != "ap2ap" and stage is not None:
        raise ValueError(f"Curriculum stages belong to the ap2ap environment, not {env!r}.")
    if stage is not None and stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; valid: 1, 2, 3")
    config = _base()
    config.env = envs.run_env_config(env)
    if preset in ("quick", "smoke"):
        config.network.policy_hidden = (256, 256, 128)
        config.network.value_hidden = (256, 256, 128)
        config.network.init_std = 0.5
        # CPU budget: the shared point MLP at half width and a critic on the privileged
        # low-dimensional state (no point encoder) cut the PPO compute per env step about 8x.
        config.network.point_hidden = (64, 64)
        config.network.value_obs_key = "privileged_state"
    if preset == "quick":
        config.ppo.update(
            num_timesteps=1_000_000,
            num_envs=256,
            unroll_length=16,
            batch_size=256,
            num_minibatches=4,
            num_updates_per_batch=4,
            episode_length=100,
            num_evals=13,
            num_eval_envs=128,
        )
        config.eval.num_episodes = 256
    if preset == "smoke":
        config.ppo.update(
            num_timesteps=2048,  # 4 PPO iterations of 512 env steps
            num_envs=16,
            unroll_length=8,
            batch_size=16,
            num_minibatches=4,
            num_updates_per_batch=2,
            episode_length=50,
            num_evals=3,
            num_eval_envs=16,
        )
        config.eval.num_episodes = 16
    if env == "ap2ap":
        stage = stage or 1
        from dex4d_jax.envs import ap2ap  # noqa: PLC0415 (builds nothing; just the tables)

        config.stage = stage
        config.env.update(ap2ap.STAGES[stage])
        config.ppo.learning_rate = STAGE_LEARNING_RATE[stage]
        # The robot's observation has no separate privileged part: the teacher's actor and
        # critic both see the full state ("symmetric", as the authors' code).
        config.network.value_obs_key = "state"
        if preset == "smoke":
            config.env.num_objects = 16
        if preset == "paper":
            # Every epoch (checkpoint + evaluation) starts from fresh resets, so an episode
            # running at its end is cut short: 50 epochs give each environment about 6
            # episodes of 400 steps per epoch (200 would cut every second one).
            config.ppo.num_evals = 51
            per_iteration = config.ppo.batch_size * config.ppo.num_minibatches * (
                config.ppo.unroll_length)
            config.ppo.num_timesteps = STAGE_ITERATIONS[stage] * per_iteration
    return config
