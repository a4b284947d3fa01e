"""The settings of `ap2ap` (envs/ap2ap.py): defaults, their declared ranges, the reward terms
and the curriculum stages of Tables IV and V.

Kept apart from the environment's dynamics so that what a run can set reads in one place;
`ap2ap` imports every name here, so `ap2ap.STAGES`, `ap2ap.default_config()` etc. still work.
"""

from __future__ import annotations

from dex4d_jax.envs import poses
from ml_collections import config_dict

from dex4d_jax import config_checks, object_library, scene_models

REWARD_TERMS = ("goal", "fingertip", "palm", "bonus", "curl", "table", "action")
# Stage weights of Table V.
STAGE12_WEIGHTS = dict(goal=1.0, fingertip=1.0, palm=1.0, bonus=1.0, curl=1.0, table=1.0,
                       action=1.0)
STAGE3_WEIGHTS = dict(goal=1.0, fingertip=0.0, palm=0.0, bonus=1.0, curl=10.0, table=1.0,
                      action=5.0)

# The curriculum of Table IV: the environment's side (the learning rate is the trainer's).
STAGES = {
    1: dict(families=("bottle",), too_far_threshold=0.3, goal_reset_stable_ratio=0.1,
            arm_speed_scale=10.0, ctrl_dt=1 / 30, hand_init="low", reward_weights=STAGE12_WEIGHTS),
    2: dict(families=("bottle",), too_far_threshold=0.0, goal_reset_stable_ratio=0.2,
            arm_speed_scale=1.5, ctrl_dt=1 / 30, hand_init="low", reward_weights=STAGE12_WEIGHTS),
    3: dict(families=object_library.TRAIN_FAMILIES, too_far_threshold=0.0,
            goal_reset_stable_ratio=0.2, arm_speed_scale=1.5, ctrl_dt=1 / 5, hand_init="high",
            reward_weights=STAGE3_WEIGHTS),
}


def default_config() -> config_dict.ConfigDict:
    """Default configuration of `ap2ap`: stage 1 of the curriculum, randomization on."""
    return config_dict.create(
        sim_dt=1 / 120,  # the scene's timestep (mjcf/dex4d_scene.xml)
        ctrl_dt=1 / 30,
        # MJX's caps on contacts per step and on geom pairs per type group (-1: no cap);
        # scene_models.ContactLimits and docs/robot.md say what they cost and keep.
        max_contact_points=scene_models.CONTACT_LIMITS.max_contact_points,
        max_geom_pairs=scene_models.CONTACT_LIMITS.max_geom_pairs,
        # MJX's implementation: "jax", or "warp" (MuJoCo Warp; `pip install mujoco-warp
        # warp-lang`; docs/training.md "MJX's warp implementation"). Warp's contact buffer is
        # shared by all environments of a batch: `warp_naconmax` contacts in all (-1: one
        # environment's max_contact_points), `warp_njmax` constraint rows per environment (-1:
        # 4 per contact plus one per limited joint); with max_contact_points -1, warp's guesses.
        impl="jax",
        warp_naconmax=-1,
        warp_njmax=-1,
        episode_length=400,
        # Objects: `num_objects` of the training library, these families (stages 1-2: bottle).
        split="train",
        families=("bottle",),
        num_objects=1024,
        object_seed=0,
        # Action.
        arm_speed_scale=10.0,
        arm_delta_dt=1 / 60,
        # Reset: the grasp-ready hand just above the object ("low") or HIGH_HAND_LIFT higher
        # ("high"), hand joints perturbed by up to `hand_init_noise` rad.
        hand_init="low",
        hand_init_noise=0.05,
        **poses.sampling_config(goal_reset_stable_ratio=0.1),
        success_threshold=0.05,
        hold_steps=30,
        # Stage 1 ends an episode whose d_t reaches this; <= 0 disables it.
        too_far_threshold=0.3,
        contact_fingertip_sum=0.48,
        contact_palm=0.12,
        reward_weights=config_dict.create(**STAGE12_WEIGHTS),
        obs_clip=5.0,
        domain_randomization=True,
        randomization=config_dict.create(
            obs_white=0.002,        # per-env std ~ U(0, .)
            obs_correlated=0.001,   # per-episode offset std ~ U(0, .)
            action_white=0.05,
            action_correlated=0.015,
            gravity_std=0.4,        # m/s^2, added to each component
            stiffness_scale=(0.9, 1.1),
            damping_scale=(0.9, 1.1),
            joint_limit_std=0.01,   # rad, added to each limit
            robot_mass_scale=(0.5, 1.5),
            object_mass_scale=(0.5, 1.5),
            robot_friction_scale=(0.7, 1.3),
            object_friction_scale=(0.7, 1.3),
            push_interval=4.0,      # seconds of simulated time
            push_linear=0.2,        # m/s, object xy velocity ~ U(-., .)
            push_angular=0.2,       # rad/s ~ U(-., .)
        ),
    )


# Declared ranges of the settings (dex4d_jax/config_checks.py), checked before anything runs.
SETTING_RANGES = {
    **poses.SAMPLING_RANGES,
    **dict.fromkeys(("sim_dt", "ctrl_dt", "arm_speed_scale", "arm_delta_dt", "success_threshold",
                     "contact_fingertip_sum", "contact_palm", "obs_clip",
                     "randomization.push_interval"), config_checks.positive()),
    **dict.fromkeys(("episode_length", "num_objects", "hold_steps"), config_checks.at_least(1)),
    **dict.fromkeys(("hand_init_noise", *(f"randomization.{k}" for k in (
        "obs_white", "obs_correlated", "action_white", "action_correlated", "gravity_std",
        "joint_limit_std", "push_linear", "push_angular"))), config_checks.non_negative()),
    "split": config_checks.OneOf(("train", "unseen", "ycb")),
    "families": config_checks.OneOf(object_library.FAMILIES, many=True),
    "hand_init": config_checks.OneOf(("low", "high")),
    "object_seed": config_checks.Range(integer=True),
    **dict.fromkeys(("max_contact_points", "max_geom_pairs", "warp_naconmax", "warp_njmax"),
                    config_checks.Range(low=-1, integer=True)),
    "impl": config_checks.OneOf(("jax", "warp")),
    "too_far_threshold": config_checks.Range(),
}


def stage_config(stage: int) -> config_dict.ConfigDict:
    """The default config with stage `stage` (1, 2 or 3) of Table IV applied."""
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; valid: {', '.join(map(str, STAGES))}")
    config = default_config()
    for key, value in STAGES[stage].items():
        config[key] = config_dict.create(**value) if isinstance(value, dict) else value
    return config
