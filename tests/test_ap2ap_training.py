"""Training settings of the robot environment (the robot's PPO run itself: tests/test_gpu_check.py).

The PPO smoke run on the robot (an MJX compile of its reset, step, PPO epoch and evaluation,
about 3 minutes of one process) runs in the GPU check's smoke test, which CI runs after the
README's test command; that test also checks that every Table V reward term is logged.
"""

from dex4d_jax.experiments.configs import teacher

from dex4d_jax import envs


def test_training_randomizes_and_evaluation_does_not():
    config = teacher.get_config("smoke", "ap2ap", stage=1)
    name, train_config = envs.run_env_settings(config)
    _, eval_config = envs.run_env_settings(config, evaluation=True)
    assert name == "ap2ap"
    assert train_config.domain_randomization and not eval_config.domain_randomization
    # Stage 1 moves the arm 10x faster, later stages 1.5x (envs/ap2ap_config.py, the authors').
    assert train_config.arm_speed_scale == 10.0
    _, stage3 = envs.run_env_settings(teacher.get_config("smoke", "ap2ap", stage=3))
    assert stage3.arm_speed_scale == 1.5
