"""Plot chosen metrics of one or more training runs from their `metrics.jsonl` (one panel each).

  python bench/plot_metrics.py runs/robot_s1 --out docs/images/robot_stage1.png \
      --keys training/env/reward/fingertip training/env/reward/palm training/env/contact \
             training/env/distance eval/success_rate

Keys are those of metrics.jsonl (`training/env/...` are the environment's per-step metrics
averaged over the epoch's rollouts; `eval/...` the deterministic evaluations). Needs
matplotlib (`pip install "dex4d-jax[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


def read_metrics(run: str) -> list[dict]:
    """The records of RUN/metrics.jsonl, in order.

    Raises:
      SystemExit: the file is missing or a line is not JSON.
    """
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist (is {run!r} a training run folder?)")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"error: {path}:{number} is not JSON ({e})") from None
    return records


def plot_runs(runs: dict[str, list[dict]], keys: list[str], out: str,
              title: str | None = None) -> None:
    """Writes one PNG at `out` with a panel per key and a line per run.

    Args:
      runs: run folder (its base name labels the line) -> its metrics.jsonl records.
      keys: metrics.jsonl keys, one panel each, plotted against `step`.
      out: PNG file to write (written whole, then moved into place).
      title: the figure's title.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: no run has one of the keys.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    try:
        for ax, key in zip(axes.flat, keys, strict=False):
            found = False
            for run, records in runs.items():
                points = [(r["step"], r[key]) for r in records
                          if isinstance(r.get(key), (int, float)) and "step" in r]
                if points:
                    found = True
                    ax.plot([p[0] / 1e6 for p in points], [p[1] for p in points], marker=".",
                            label=os.path.basename(os.path.normpath(run)))
            if not found:
                raise ValueError(f"no run has the key {key!r} in its metrics.jsonl")
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("env steps (M)")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        if len(runs) > 1:
            axes.flat[0].legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        tmp = out + ".tmp.png"
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)


def main() -> None:
    """Writes one PNG with a panel per key and a line per run."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training run folders")
    parser.add_argument("--keys", nargs="+", required=True, help="metrics.jsonl keys to plot")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    runs = {run: read_metrics(run) for run in args.runs}
    try:
        plot_runs(runs, args.keys, args.out, args.title)
    except ImportError:
        sys.exit('error: plotting needs matplotlib: pip install "dex4d-jax[bench]"')
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
