"""Prints a markdown table of finished teacher or student runs (config.json and eval.json).

python experiments/summarize_runs.py runs/ablation/*
python experiments/summarize_runs.py runs/student_ablation/*
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
    runs = []
    for path in paths:
        eval_path = os.path.join(path, "eval.json")
        if not os.path.isfile(eval_path):
            print(f"skipping {path}: no eval.json (unfinished run?)", file=sys.stderr)
            continue
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        with open(eval_path) as f:
            runs.append((path, config, json.load(f)))
    teachers = [r for r in runs if "dagger" not in r[1]]
    students = [r for r in runs if "dagger" in r[1]]
    if teachers:
        _teacher_table(teachers)
    if students:
        _student_table(students)
    return 0


def _student_table(runs) -> None:
    print("| run | arch | points | world model | seed | env steps | train min | student "
          "success | teacher success | ratio | goals held (student / teacher) "
          "| next-velocity L1 (model / unchanged) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path, config, ev in runs:
        net, wm = config["network"], ev.get("world_model", {})
        model = (f"{wm['next_qvel']:.3f} / {wm['next_qvel_unchanged']:.3f}"
                 if "next_qvel" in wm else "-")
        print(f"| {os.path.basename(path.rstrip('/'))} | {net['arch']} | {net['encoder']} "
              f"| {'yes' if config['dagger']['world_model_weight'] > 0 else 'no'} "
              f"| {config['dagger']['seed']} | {ev['step']:,} | {ev['train_seconds'] / 60:.1f} "
              f"| {ev['student']['success_rate']:.3f} | {ev['teacher']['success_rate']:.3f} "
              f"| {'-' if ev['success_ratio'] is None else format(ev['success_ratio'], '.3f')} "
              f"| {ev['student']['goals_reached']:.2f} / {ev['teacher']['goals_reached']:.2f} "
              f"| {model} |")


def _teacher_table(runs) -> None:
    print("| run | encoder | seed | env steps | train min | success | goals held "
          "| closest d_t to first goal (cm) |")
    print("|---|---|---|---|---|---|---|---|")
    for path, config, ev in runs:
        print(f"| {os.path.basename(path.rstrip('/'))} | {config['network']['encoder']} "
              f"| {config['ppo']['seed']} | {ev['step']:,} | {ev['train_seconds'] / 60:.1f} "
              f"| {ev['success_rate']:.3f} | {ev['goals_reached']:.2f} "
              f"| {100 * ev['min_distance']:.2f} |")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
