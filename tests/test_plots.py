"""`dex4d plot`: learning curves from metrics.jsonl (dex4d_jax/viz/plots.py)."""

import json

import numpy as np
import pytest
from helpers import assert_one_error_line, run_cli
from PIL import Image

from dex4d_jax.viz import plots


def write_run(folder, records):
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


@pytest.fixture
def runs(tmp_path):
    """A teacher-like run (PPO losses) and a student-like run (DAgger losses)."""
    teacher = write_run(tmp_path / "paired", [
        {"step": 0, "time": 1.0, "eval/success_rate": 0.0, "eval/episode_reward": 10.0},
        {"step": 1000, "time": 60.0, "eval/success_rate": 0.5, "eval/episode_reward": 50.0,
         "training/total_loss": 3.0},
        {"step": 2000, "time": 120.0, "eval/success_rate": 1.0, "eval/episode_reward": 90.0,
         "training/total_loss": float("nan")}])
    student = write_run(tmp_path / "student", [
        {"step": 0, "time": 1.0, "eval/success_rate": 0.0, "eval/episode_reward": 5.0},
        {"step": 500, "time": 30.0, "eval/success_rate": 0.8, "eval/episode_reward": 70.0,
         "training/loss/action": 0.2}])
    return teacher, student


def test_series_picks_the_first_key_a_run_has_and_drops_non_finite(runs):
    teacher, student = (plots.read_metrics(r) for r in runs)
    keys = ("training/total_loss", "training/loss/action")
    assert plots.series(teacher, keys) == ("training/total_loss", [1000], [3.0])
    assert plots.series(student, keys) == ("training/loss/action", [500], [0.2])
    assert plots.series(student, ("nothing",)) == (None, [], [])


def test_default_panels_are_those_some_run_has(runs, tmp_path):
    """A teacher alone gets no DAgger panel; a teacher and a student get both losses, apart."""
    teacher, student = runs
    notes = plots.plot_runs({teacher: plots.read_metrics(teacher)}, str(tmp_path / "t.png"))
    assert notes == []
    notes = plots.plot_runs({r: plots.read_metrics(r) for r in runs}, str(tmp_path / "b.png"))
    assert notes == ["student: no training/total_loss; left out of 'PPO total loss (teacher)'",
                     "paired: no training/loss/action; left out of "
                     "'DAgger action loss (student, Eq. 3)'"]


def test_cli_draws_every_run(runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    code, text = run_cli(capsys, "plot", *runs, "--out", str(out), "--title", "encoders")
    assert code == 0, text
    assert "2 run(s)" in text
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 1000
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    # Matplotlib's first two line colours (C0 blue, C1 orange) are both drawn.
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 50, colour
    assert not list(tmp_path.glob(".*.tmp.png"))


def test_a_key_one_run_lacks_is_noted(runs, tmp_path, capsys):
    code, text = run_cli(capsys, "plot", *runs, "--keys", "training/total_loss",
                         "--out", str(tmp_path / "c.png"))
    assert code == 0, text
    assert "note: student: no training/total_loss" in text


def test_labels_of_runs_with_one_name_are_their_paths(tmp_path):
    assert plots.run_labels(["a/run", "b/run", "c"]) == ["a/run", "b/run", "c"]


@pytest.mark.parametrize("case", ["missing", "empty", "not_json", "no_key", "bad_out"])
def test_cli_refuses_bad_input(case, runs, tmp_path, capsys):
    out = str(tmp_path / "c.png")
    if case == "missing":
        args, named = [str(tmp_path / "nope")], ("metrics.jsonl", "training run folder")
    elif case == "empty":
        args, named = [write_run(tmp_path / "empty", [])], ("no records",)
    elif case == "not_json":
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "metrics.jsonl").write_text('{"step": 0}\n{oops\n')
        args, named = [str(bad)], ("metrics.jsonl:2", "not JSON")
    elif case == "no_key":
        args, named = [runs[0], "--keys", "eval/nothing"], ("eval/nothing",)
    else:
        args, named, out = [runs[0]], ("--out", ".png"), str(tmp_path / "c.jpg")
    code, text = run_cli(capsys, "plot", *args, "--out", out)
    assert_one_error_line(code, text, *named)
    assert not (tmp_path / "c.png").exists()
