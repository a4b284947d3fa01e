"""The `smoke` preset trains a teacher on the robot environment end to end (slow: compiles it)."""

import json

import numpy as np
import pytest

from dex4d_jax.envs import ap2ap
from dex4d_jax.experiments.configs import teacher
from dex4d_jax.teacher import train
from dex4d_jax.training import run_dir

from helpers import envs_of


@pytest.mark.slow
def test_smoke_run_on_the_robot(tmp_path):
    config = teacher.get_config("smoke", "ap2ap", stage=1)
    config.env.num_objects = 8
    config.ppo.update(num_timesteps=1024, num_evals=2, episode_length=20, num_eval_envs=8)
    config.eval.num_episodes = 8
    out = tmp_path / "run"
    env, eval_env = envs_of(config)
    result = train.train_teacher(config, str(out), env, eval_env, progress=False)
    assert result.num_episodes == 8 and np.isfinite(result.episode_reward)
    assert [s for s, _ in run_dir.list_checkpoints(str(out))] == [0, 1024]
    saved = json.loads((out / "config.json").read_text())
    assert saved["stage"] == 1 and saved["env"]["arm_speed_scale"] == 10.0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    # Every reward term of Table V and the task metrics are logged from the training rollouts.
    for name in [f"reward/{t}" for t in ap2ap.REWARD_TERMS] + ["distance", "success", "contact"]:
        assert np.isfinite(record[f"training/env/{name}"]), name
    assert record["training/env/distance"] > 0
    # Training randomizes; evaluation does not.
    assert env.config.domain_randomization
    assert not eval_env.config.domain_randomization
