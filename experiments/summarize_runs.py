"""Prints a markdown table of finished teacher runs (their config.json and eval.json).

  python experiments/summarize_runs.py runs/ablation/*
"""

from __future__ import annotations

import json
import os
import sys


def main(paths: list[str]) -> int:
    """Prints one table row per run directory that has an eval.json."""
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print("| run | encoder | seed | env steps | train min | success | goals held "
          "| closest d_t to first goal (cm) |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        eval_path = os.path.join(path, "eval.json")
        if not os.path.isfile(eval_path):
            print(f"skipping {path}: no eval.json (unfinished run?)", file=sys.stderr)
            continue
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        with open(eval_path) as f:
            ev = json.load(f)
        print(f"| {os.path.basename(path.rstrip('/'))} | {config['network']['encoder']} "
              f"| {config['ppo']['seed']} | {ev['step']:,} | {ev['train_seconds'] / 60:.1f} "
              f"| {ev['success_rate']:.3f} | {ev['goals_reached']:.2f} "
              f"| {100 * ev['min_distance']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
