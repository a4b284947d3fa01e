"""Student (DAgger) presets (SPEC section 6; paper Table VIII).

`paper` is the authors' setting for GPU servers: 3200 environments, Adam 1e-4, 25k DAgger
iterations; we read one iteration as one step of every environment followed by one Adam step
on those 3200 labelled states (the paper gives the count, not the batch). `quick` distils the
`quick` teacher on `ap2ap_wrench` on a laptop CPU: 256 environments, 8 steps per iteration in
4 minibatches, 4 passes over each batch, the paper's network, masking and learning rate. On a
CPU the Adam steps, not the environment, are the cost, and the number of Adam steps decides
how far the student gets: with one pass per batch, 600k environment steps (1,172 Adam steps)
reached 34% success; with four passes, 100k steps (780 Adam steps) reached 100%
(docs/benchmarks.md). `smoke` runs the pipeline on any environment in minutes.

The environment (its name and all its settings) and the episode length always come from the
teacher's run, so the student is trained on the task its teacher solved.
"""

from __future__ import annotations

from ml_collections import config_dict

from dex4d_jax import config_checks
from dex4d_jax.networks.point_encoders import ENCODERS
from dex4d_jax.networks.student import ARCHS
from dex4d_jax.student.masking import VARIANTS

PRESETS = ("quick", "paper", "smoke")


# Declared ranges of the student's settings (dex4d_jax/config_checks.py).
RANGES = {
    "network.width": config_checks.at_least(1),
    "network.num_layers": config_checks.at_least(1),
    "network.num_heads": config_checks.at_least(1),
    "network.arch": config_checks.OneOf(ARCHS),
    "network.encoder": config_checks.OneOf(ENCODERS),
    "masking.num_keep": config_checks.at_least(1),
    "masking.variant": config_checks.OneOf(tuple(VARIANTS)),
    "masking.hide_above": config_checks.fraction(),
    "masking.hide_below": config_checks.fraction(),
    "masking.noise_std": config_checks.non_negative(),
    "dagger.num_timesteps": config_checks.at_least(1),
    "dagger.num_envs": config_checks.at_least(1),
    "dagger.unroll_length": config_checks.at_least(1),
    "dagger.num_minibatches": config_checks.at_least(1),
    "dagger.num_updates_per_batch": config_checks.at_least(1),
    "dagger.learning_rate": config_checks.positive(),
    "dagger.max_grad_norm": config_checks.Range(0, None, low_open=True, optional=True),
    "dagger.world_model_weight": config_checks.non_negative(),
    "dagger.beta": config_checks.fraction(),
    "dagger.beta_decay": config_checks.Range(0, 1, low_open=True),
    "dagger.episode_length": config_checks.at_least(1),
    "dagger.num_evals": config_checks.at_least(1),
    "dagger.num_eval_envs": config_checks.at_least(1),
    "dagger.seed": config_checks.Range(integer=True),
    "eval.num_episodes": config_checks.at_least(1),
    "eval.seed": config_checks.Range(integer=True),
}


def get_config(preset: str = "quick", arch: str = "transformer", world_model: bool = True,
               encoder: str = "paired", masking: str = "paper") -> config_dict.ConfigDict:
    """The student configuration of a preset.

    Args:
      preset: one of PRESETS.
      arch: "transformer" (the paper's) or "mlp" (Table II "w/o self-attention").
      world_model: False for Table II "w/o world modeling" (no next-state loss).
      encoder: point tokenizer, "paired" (the paper's), "decoupled" or "mlp".
      masking: "paper" (height quantile U(0.2, 1.0)) or "code" (U(0, 0.8)).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    for name, value, valid in (("arch", arch, ARCHS), ("encoder", encoder, ENCODERS),
                               ("masking", masking, tuple(VARIANTS))):
        if value not in valid:
            raise ValueError(f"Unknown {name} {value!r}; valid: {', '.join(valid)}")
    config = config_dict.create(
        # Filled from the teacher's run when training starts.
        teacher=config_dict.create(path="", step=-1),
        env=config_dict.create(name=""),
        network=config_dict.create(width=128, num_layers=4, num_heads=4,
                                   point_hidden=(128, 128), arch=arch, encoder=encoder),
        masking=config_dict.create(num_keep=64, variant=masking, hide_above=0.9,
                                   hide_below=0.05, noise_std=0.005),
        dagger=config_dict.create(
            num_timesteps=25_000 * 3200,
            num_envs=3200,
            unroll_length=1,
            num_minibatches=1,
            num_updates_per_batch=1,
            learning_rate=1e-4,
            max_grad_norm=config_dict.placeholder(float),  # None: no clipping
            world_model_weight=1.0 if world_model else 0.0,
            # Probability of executing the teacher's action, decaying to 0 over the first
            # `beta_decay` of the run; 0 (the authors' code): the student always acts.
            beta=0.0,
            beta_decay=0.5,
            episode_length=400,  # replaced by the teacher's
            num_evals=51,
            num_eval_envs=1024,
            seed=0,
        ),
        eval=config_dict.create(num_episodes=512, seed=12345, randomization=False),
    )
    if preset == "quick":
        config.dagger.update(num_timesteps=300_000, num_envs=256, unroll_length=8,
                             num_minibatches=4, num_updates_per_batch=4, num_evals=7,
                             num_eval_envs=128)
        config.eval.num_episodes = 256
    elif preset == "smoke":
        config.network.update(width=32, num_layers=1, point_hidden=(32, 32))
        config.dagger.update(num_timesteps=512, num_envs=16, unroll_length=8,
                             num_minibatches=2, num_evals=3, num_eval_envs=16)
        config.eval.num_episodes = 16
    return config
