"""Frames per second of the Lucas-Kanade point tracker on this CPU (640x480, 64 points).

  .venv/bin/python bench/tracker_fps.py [--width 640 --height 480 --num-points 64 --frames 300]

The sequence is synthetic: a smooth random texture that translates and turns a little every
frame (warped with OpenCV), so that LK has features and real motion to follow. Only
`tracker.track(frame)` is timed (both LK passes of the forward-backward check and the
grayscale conversion), not making the frames. OpenCV runs on one thread, as on a robot computer
sharing its cores with the policy.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from dex4d_jax.tracks import trackers


def make_frames(width: int, height: int, num_frames: int, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8 frames of a textured plane moving back and forth."""
    key = np.random.default_rng(seed)
    big = 2 * max(width, height)
    coarse = key.uniform(0, 255, (big // 6, big // 6, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (big, big), interpolation=cv2.INTER_CUBIC)
    texture = np.clip(texture, 0, 255).astype(np.uint8)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        # Oscillating motion (at most about 2.5 px and 0.3 deg a frame) keeps the points in view.
        angle = 5.0 * np.sin(2 * np.pi * t / 120)
        shift = (40.0 * np.sin(2 * np.pi * t / 100), 30.0 * np.sin(2 * np.pi * t / 70))
        warp = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
        warp[:, 2] += [shift[0] - (big - width) / 2, shift[1] - (big - height) / 2]
        frames[t] = cv2.warpAffine(texture, warp, (width, height), flags=cv2.INTER_LINEAR)
    return frames


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints frames per second."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--num-points", type=int, default=64)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    frames = make_frames(args.width, args.height, args.frames)
    mask = np.zeros((args.height, args.width), bool)
    mask[args.height // 4: 3 * args.height // 4, args.width // 4: 3 * args.width // 4] = True
    points = trackers.select_points(frames[0], mask, args.num_points)
    tracker = trackers.LucasKanadeTracker()
    tracker.init(frames[0], points)
    start = time.perf_counter()
    for frame in frames[1:]:
        _, visible = tracker.track(frame)
    elapsed = time.perf_counter() - start
    fps = (len(frames) - 1) / elapsed
    print(f"command: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    print(f"LucasKanadeTracker {args.width}x{args.height}, {args.num_points} points, "
          f"{args.threads} OpenCV thread(s): {fps:.0f} frames/s "
          f"({1000 / fps:.2f} ms/frame); {visible.mean():.0%} of points still visible after "
          f"{len(frames) - 1} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
