"""Teacher training presets.

`paper` holds the authors' PPO settings (SPEC section 5) for GPU servers; `quick` is sized for
a 2-core laptop CPU on `ap2ap_wrench` (about 10 minutes): smaller actor and critic MLPs, a
half-width shared point MLP ([64, 64], mean-max pooling), an asymmetric critic on the
privileged state, and fewer environments.
"""

from __future__ import annotations

from ml_collections import config_dict

PRESETS = ("quick", "paper")


def _base() -> config_dict.ConfigDict:
    return config_dict.create(
        env=config_dict.create(name="ap2ap_wrench", overrides=config_dict.create()),
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
            batch_size=8192,
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
        eval=config_dict.create(num_episodes=512, seed=12345),
    )


def get_config(preset: str) -> config_dict.ConfigDict:
    """The configuration of a preset (one of PRESETS)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    config = _base()
    if preset == "quick":
        config.network.policy_hidden = (256, 256, 128)
        config.network.value_hidden = (256, 256, 128)
        config.network.init_std = 0.5
        # CPU budget: the shared point MLP at half width and a critic on the privileged
        # low-dimensional state (no point encoder) cut the PPO compute per env step about 8x.
        config.network.point_hidden = (64, 64)
        config.network.value_obs_key = "privileged_state"
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
    return config
