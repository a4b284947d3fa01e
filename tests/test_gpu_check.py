"""bench/gpu_check.sh --smoke: the GPU check's code paths on this CPU (issue 17).

The check compiles the robot environment's step, the PPO epoch, the evaluation rollout and
the DAgger epoch (minutes with a cold compile cache), so the test is slow. It shares the
suite's persistent compile cache (tests/conftest.py: DEX4D_JAX_CACHE, else .jax_cache).
"""

import json
import math
import os
import subprocess
import sys

import pytest
from dex4d_jax.envs import ap2ap
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One batch size (--envs 8) keeps the test to one env-step compile; the check's default
# smoke sizes are 8 and 16.
ROWS = ("env step compile", "env steps/s, 8 envs (jax)",
        "env steps/s (warp)", "peak device memory", "PPO compile (evaluation + first epoch)",
        "PPO steps/s, learning included", "stage-1 curve", "DAgger compile (first epoch)",
        "DAgger steps/s, learning included", "total time")


@pytest.mark.slow
@pytest.mark.gpu_check
def test_gpu_check_smoke(tmp_path):
    """Every row of the table is filled in, and the curve is a PNG."""
    out = tmp_path / "check"
    env = dict(os.environ, PYTHON=sys.executable,
               DEX4D_JAX_CACHE=os.environ.get("DEX4D_JAX_CACHE",
                                              os.path.join(ROOT, ".jax_cache")))
    env.pop("OUT", None)
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), "--smoke",
                           "--envs", "8", "--out", str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "table.md").read_text()
    assert table in proc.stdout
    assert "device: cpu" in table and "gpu_check.sh --smoke" in table
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    for row in ROWS:
        assert row in rows, row
        assert rows[row] and rows[row] != "not reached within the budget", (row, table)
    for row in ("env steps/s, 8 envs (jax)", "PPO steps/s, learning included",
                "DAgger steps/s, learning included"):
        assert float(rows[row].replace(",", "")) > 0, (row, rows[row])
    assert rows["peak device memory"].startswith("n/a")
    assert rows["env steps/s (warp)"] in ("warp-lang not installed", "not measured")
    assert rows["stage-1 curve"].endswith("curve.png")
    with Image.open(out / "curve.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300
    # The robot's PPO run logs every reward term of Table V and the task metrics from its
    # training rollouts (this was the robot smoke run's check in tests/test_ap2ap_training.py).
    records = [json.loads(line) for line in
               (out / "ppo_stage1" / "metrics.jsonl").read_text().splitlines() if line]
    trained = [r for r in records if "training/sps" in r]
    assert trained, records
    names = [f"reward/{t}" for t in ap2ap.REWARD_TERMS] + ["distance", "success", "contact"]
    for name in names:
        assert math.isfinite(trained[-1][f"training/env/{name}"]), name
    assert trained[-1]["training/env/distance"] > 0
    assert json.loads((out / "ppo_stage1" / "config.json").read_text())["stage"] == 1
    # DAgger on the robot (this was tests/test_dagger.py's robot epoch): the student reads the
    # 22 joint angles and velocities, predicts the next ones, and their targets do change.
    dagger = json.loads((out / "results.json").read_text())["dagger"]
    assert dagger["obs_key"] == "student_state"
    assert dagger["head_qpos"] == dagger["head_qvel"] == 22
    assert len(dagger["epoch_seconds"]) == 2
    losses = dagger["metrics"]
    assert losses["training/loss/next_qpos_unchanged"] > 0
    assert losses["training/loss/next_qvel_unchanged"] > 0
    for key in ("training/loss/action", "training/loss/next_qpos", "training/env/reward/goal"):
        assert math.isfinite(losses[key]), key
