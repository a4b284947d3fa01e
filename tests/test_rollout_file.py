"""The rollout file (dex4d_jax/viz/rollout_file.py): round trip and refusals."""

import dataclasses

import numpy as np
import pytest

from dex4d_jax.viz import rollout_file as rf


def make(steps=6, points=5, nq=7):
    rng = np.random.default_rng(0)
    return rf.Rollout(
        env="ap2ap_wrench", model_xml="<mujoco><worldbody/></mujoco>", dt=0.05,
        qpos=rng.normal(size=(steps, nq)), points=rng.normal(size=(steps, points, 3)),
        targets=rng.normal(size=(steps, points, 3)), visible=rng.random((steps, points)) > 0.3,
        distance=rng.random(steps), success=np.arange(steps) % 2 == 0,
        goals_reached=np.arange(steps) // 3, episode=np.arange(steps) // 3)


def test_round_trip_keeps_every_field(tmp_path):
    rollout = make()
    path = tmp_path / "r.npz"
    rf.save(path, rollout)
    loaded = rf.load(path)
    assert (loaded.env, loaded.model_xml, loaded.dt) == (rollout.env, rollout.model_xml, 0.05)
    for field in ("qpos", "points", "targets", "visible", "distance", "success",
                  "goals_reached", "episode"):
        np.testing.assert_allclose(getattr(loaded, field), getattr(rollout, field), rtol=1e-6)
    assert (loaded.num_steps, loaded.num_points, loaded.num_episodes) == (6, 5, 2)
    assert loaded.qpos.dtype == np.float32 and loaded.visible.dtype == bool
    assert rf.is_rollout_file(path) and not list(tmp_path.glob(".rollout-*"))


@pytest.mark.parametrize("change, named", [
    (dict(points=np.zeros((6, 4, 3))), "same number of points"),
    (dict(targets=np.zeros((6, 5, 2))), "'targets' must have shape [*, *, 3]"),
    (dict(distance=np.zeros(5)), "'distance' has 5 steps"),
    (dict(qpos=np.full((6, 7), np.nan)), "NaN"),
    (dict(episode=np.array([0, 1, 1, 0, 2, 2])), "non-decreasing"),
    (dict(visible=np.full((6, 5), 0.5)), "bool"),
    (dict(dt=0.0), "'dt'"),
    (dict(model_xml=""), "MJCF"),
    (dict(qpos=np.zeros((0, 7)), points=np.zeros((0, 5, 3)), targets=np.zeros((0, 5, 3)),
          visible=np.zeros((0, 5), bool), distance=np.zeros(0), success=np.zeros(0, bool),
          goals_reached=np.zeros(0), episode=np.zeros(0)), "no steps"),
])
def test_save_refuses_what_the_format_forbids_and_writes_nothing(tmp_path, change, named):
    with pytest.raises(rf.RolloutFileError, match=None) as err:
        rf.save(tmp_path / "r.npz", dataclasses.replace(make(), **change))
    assert named in str(err.value)
    assert not list(tmp_path.iterdir())


def test_load_names_the_file_and_the_fault(tmp_path):
    with pytest.raises(FileNotFoundError):
        rf.load(tmp_path / "missing.npz")
    other = tmp_path / "track.npz"
    np.savez(other, points=np.zeros((2, 3, 3)), visible=np.ones((2, 3), bool))
    with pytest.raises(rf.RolloutFileError, match="not a rollout file: missing"):
        rf.load(other)
    assert not rf.is_rollout_file(other)
    text = tmp_path / "x.npz"
    text.write_text("hello")
    with pytest.raises(rf.RolloutFileError, match=str(text)):
        rf.load(text)
