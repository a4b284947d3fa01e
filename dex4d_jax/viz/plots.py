"""Learning curves of training runs, read from their `metrics.jsonl` (`dex4d plot`).

Every run folder (teacher or student, `dex4d train`) holds `metrics.jsonl`: one JSON record
per evaluation, with `step` (environment steps so far), `eval/...` (the deterministic policy
on fixed episodes) and, after the first epoch, `training/...` (the epoch's losses and the
environment's per-step metrics averaged over its rollouts). The default figure has three
panels, the ones used to compare encoders and ablations: evaluation reward, evaluation
success rate, and the training loss: PPO's total loss for teachers, the DAgger action loss
(paper Eq. 3's first term) for students, each in its own panel (their scales differ by
orders of magnitude); a default panel that no run has is left out.
"""

from __future__ import annotations

import json
import math
import os

# Panel title -> candidate keys, the first one a run has is plotted (teacher, then student).
DEFAULT_PANELS: dict[str, tuple[str, ...]] = {
    "reward (evaluation episode return)": ("eval/episode_reward",),
    "success rate (evaluation)": ("eval/success_rate",),
    "PPO total loss (teacher)": ("training/total_loss",),
    "DAgger action loss (student, Eq. 3)": ("training/loss/action",),
}


class MetricsError(ValueError):
    """A run's metrics.jsonl is missing, empty or malformed, or a key is in no run."""


def read_metrics(run: str) -> list[dict]:
    """The records of `RUN/metrics.jsonl`, in file order.

    Raises:
      FileNotFoundError: `run` has no metrics.jsonl (not a training run folder).
      MetricsError: a line is not a JSON object, a record has no `step`, or there is no record.
    """
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (is {run!r} a training run folder?)")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise MetricsError(f"{path}:{number} is not JSON ({err})") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise MetricsError(f"{path}:{number} is not a metrics record with a 'step'")
            records.append(record)
    if not records:
        raise MetricsError(f"{path} has no records yet (the run has not evaluated once)")
    return records


def run_labels(runs: list[str]) -> list[str]:
    """Legend labels: each folder's base name, or its path where base names repeat."""
    names = [os.path.basename(os.path.normpath(run)) for run in runs]
    return [name if names.count(name) == 1 else os.path.normpath(run)
            for name, run in zip(names, runs, strict=True)]


def series(records: list[dict], keys: tuple[str, ...]) -> tuple[str | None, list, list]:
    """(the first of `keys` the records have, its steps, its finite values)."""
    for key in keys:
        points = [(r["step"], float(r[key])) for r in records
                  if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if points:
            return key, [p[0] for p in points], [p[1] for p in points]
    return None, [], []


def plot_runs(runs: dict[str, list[dict]], out: str,
              panels: dict[str, tuple[str, ...]] | None = None, title: str | None = None,
              x: str = "step") -> list[str]:
    """Writes one PNG at `out`: a panel per entry of `panels`, a line per run.

    Args:
      runs: run folder -> its metrics.jsonl records (`read_metrics`).
      out: the PNG to write (written to a temporary name in the same folder, then renamed).
      panels: panel title -> candidate metric keys, the first one a run has is plotted
        (default: the `DEFAULT_PANELS` that at least one run has).
      title: the figure's title.
      x: "step" (environment steps, millions) or "time" (wall-clock hours, the records' `time`).

    Returns:
      Notes for the user: which run lacks which panel.

    Raises:
      MetricsError: no run has any key of a panel.
      ValueError: an unknown `x`.
      OSError: the PNG cannot be written.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")
    if panels is None:  # the defaults that some run has (teachers and students differ)
        panels = {title: keys for title, keys in DEFAULT_PANELS.items()
                  if any(series(records, keys)[0] for records in runs.values())}
        panels = panels or DEFAULT_PANELS
    labels = run_labels(list(runs))
    notes = []
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    try:
        for ax, (panel, keys) in zip(axes.flat, panels.items(), strict=False):
            used = set()
            for records, label in zip(runs.values(), labels, strict=True):
                key, steps, values = series(records, keys)
                if key is None:
                    notes.append(f"{label}: no {' / '.join(keys)}; left out of {panel!r}")
                    continue
                used.add(key)
                if x == "step":
                    xs = [s / 1e6 for s in steps]
                else:
                    times = {r["step"]: r.get("time", math.nan) for r in records}
                    xs = [times[s] / 3600 for s in steps]
                ax.plot(xs, values, marker=".", label=label)
            if not used:
                raise MetricsError(f"no run has {' or '.join(repr(k) for k in keys)} in its "
                                   "metrics.jsonl")
            ax.set_title(panel if len(keys) > 1 or panel != keys[0] else keys[0], fontsize=9)
            ax.set_ylabel(", ".join(sorted(used)), fontsize=7)
            ax.set_xlabel("env steps (M)" if x == "step" else "wall-clock hours")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        if len(runs) > 1:
            axes.flat[0].legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        tmp = os.path.join(os.path.dirname(os.path.abspath(out)),
                           f".{os.path.basename(out)}.tmp.png")
        try:
            fig.savefig(tmp, dpi=110)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    finally:
        plt.close(fig)
    return notes
