"""SR and TP with 95% intervals, and the tables, files and chart of `dex4d eval`.

SR (success rate): the fraction of trials that reach the last waypoint. TP (task progress):
the mean over trials of waypoints reached / waypoints (SPEC section 7; the authors' code
counts goals reached over the number of waypoints). Intervals: Wilson's score interval for SR
(a proportion; sensible at 0 and 1 and for small counts), and for TP the normal interval of a
mean, mean +- 1.96 s / sqrt(n), clipped to [0, 1].
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927). (0, 1) for no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """Normal interval of a mean in [0, 1], clipped to [0, 1]."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return 0.0, 1.0
    half = z * values.std(ddof=1) / math.sqrt(n)
    mean = values.mean()
    return max(0.0, mean - half), min(1.0, mean + half)


def task_scores(num_reached: np.ndarray, num_waypoints: np.ndarray) -> dict:
    """SR, TP and their intervals of one task's trials.

    Args:
      num_reached: [n] waypoints reached per trial.
      num_waypoints: [n] waypoints of the task.

    Returns:
      {"sr", "sr_ci" (low, high), "tp", "tp_ci", "trials"}.
    """
    num_reached = np.asarray(num_reached)
    num_waypoints = np.asarray(num_waypoints)
    success = num_reached >= num_waypoints
    progress = num_reached / num_waypoints
    return {"sr": float(success.mean()), "sr_ci": wilson_interval(int(success.sum()),
                                                                  len(success)),
            "tp": float(progress.mean()), "tp_ci": mean_interval(progress),
            "trials": len(success)}


def method_scores(task_index: np.ndarray, num_reached: np.ndarray, num_waypoints: np.ndarray,
                  task_names: Sequence[str], indices: Sequence[int]) -> dict:
    """{task name: task_scores} of one method, plus "mean": SR and TP averaged over the
    tasks (as Table I's last column)."""
    out = {}
    for name, index in zip(task_names, indices, strict=True):
        rows = task_index == index
        out[name] = task_scores(num_reached[rows], num_waypoints[rows])
    out["mean"] = {"sr": float(np.mean([out[n]["sr"] for n in task_names])),
                   "tp": float(np.mean([out[n]["tp"] for n in task_names]))}
    return out


def _cell(score: dict) -> str:
    return f"{score['sr']:.2f} / {score['tp']:.2f}"


def markdown_table(results: dict, task_names: Sequence[str], title: str = "") -> str:
    """Table I's shape: rows = methods, SR / TP per task and their mean, then a second table of
    the 95% intervals."""
    head = "| Method | " + " | ".join(task_names) + " | Mean |"
    rule = "|---" * (len(task_names) + 2) + "|"
    lines = [title, "", "SR / TP per task (SR: last waypoint reached; TP: waypoints reached / "
             "waypoints).", "", head, rule] if title else [head, rule]
    for method, scores in results.items():
        cells = [_cell(scores[n]) for n in task_names] + [_cell(scores["mean"])]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "95% intervals (SR: Wilson; TP: normal), trials per task in brackets.", "",
              "| Method | " + " | ".join(task_names) + " |", "|---" * (len(task_names) + 1) + "|"]
    for method, scores in results.items():
        cells = []
        for n in task_names:
            s = scores[n]
            cells.append(f"SR {s['sr_ci'][0]:.2f}-{s['sr_ci'][1]:.2f}, TP "
                         f"{s['tp_ci'][0]:.2f}-{s['tp_ci'][1]:.2f} ({s['trials']})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_trials_csv(path: str, rows: Sequence[dict]) -> None:
    """Per-trial rows (one dict each, same keys) as CSV, written whole to a temporary name
    and renamed."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: str, payload: dict) -> None:
    """JSON, written whole to a temporary name and renamed."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def bar_chart(path: str, results: dict, task_names: Sequence[str], title: str) -> None:
    """Grouped bars, SR (top) and TP (bottom) per task and their mean, one colour per method,
    with the 95% intervals as error bars."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [*task_names, "mean"]
    methods = list(results)
    width = 0.8 / max(len(methods), 1)
    fig, axes = plt.subplots(2, 1, figsize=(1.3 * len(names) + 2, 6), sharex=True)
    x = np.arange(len(names))
    for ax, key in zip(axes, ("sr", "tp"), strict=True):
        for m, method in enumerate(methods):
            values = [results[method][n][key] for n in names]
            low = [results[method][n][key] - results[method][n][f"{key}_ci"][0]
                   if n != "mean" else 0.0 for n in names]
            high = [results[method][n][f"{key}_ci"][1] - results[method][n][key]
                    if n != "mean" else 0.0 for n in names]
            ax.bar(x + (m - (len(methods) - 1) / 2) * width, values, width, label=method,
                   yerr=[low, high], capsize=2)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(key.upper())
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(title)
    axes[0].legend(fontsize=8, ncol=min(len(methods), 4))
    axes[1].set_xticks(x, names, rotation=20)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
