r"""The `tracks` command: `lift` 2D tracks to 3D, or go `from-video` to 3D tracks.

  dex4d tracks lift --tracks2d T2.npz --depth D.npz --camera C.npz --depth0 D0.npy --out T.npz
  dex4d tracks demo --out demo/
  dex4d tracks from-video --video V.mp4 --mask M.png --depth D.npz --camera C.npz \\
      --depth0 D0.npy --out T.npz --num-points 64 --waypoint-distance 0.01

`add_parser(subparsers)` adds the command to a parser; `run(args, parser)` executes it and turns
bad input (a missing file, a malformed array) into a usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import sys


def _add_clean_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output 3D tracks .npz (points, visible)")
    p.add_argument("--sampling", choices=("bilinear", "nearest"), default="bilinear",
                   help="how depth is read at the track pixels")
    p.add_argument("--ransac-threshold", type=float, default=0.01,
                   help="metres off the object's rigid motion that make a point an outlier")
    p.add_argument("--max-outlier-fraction", type=float, default=0.2,
                   help="share of its frames a track may be off the rigid motion and be kept")
    p.add_argument("--smooth-sigma", type=float, default=0.0,
                   help="frames; > 0 smooths the fitted rigid motion and rebuilds the points")
    p.add_argument("--waypoint-distance", type=float, default=0.0,
                   help="metres of mean point motion between goal waypoints (0: every frame)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds `tracks {lift, from-video}` to an argparse subparsers object; returns its parser."""
    tracks = subparsers.add_parser(
        "tracks", help="3D object point tracks from 2D tracks or a video (docs/tracks.md)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = tracks.add_subparsers(dest="tracks_command", required=True)
    lift_p = sub.add_parser("lift", help="lift 2D tracks to metric world-frame 3D tracks")
    lift_p.add_argument("--tracks2d", required=True, help=".npz with tracks [T,N,2], visible")
    lift_p.add_argument("--depth", required=True, help=".npz with depth [T,H,W] and kind")
    lift_p.add_argument("--camera", required=True, help=".npz with K [3,3], T_world_camera")
    lift_p.add_argument("--depth0", required=True, help="first-frame metric depth .npy/.npz")
    lift_p.add_argument("--mask", default=None,
                        help="first-frame object mask for the metric scale (default: the "
                             "first-frame track pixels)")
    _add_clean_args(lift_p)
    video_p = sub.add_parser("from-video", help="track points in a video and lift them to 3D")
    video_p.add_argument("--video", required=True, help="the video (MP4, ...)")
    video_p.add_argument("--mask", required=True, help="first-frame object mask image")
    video_p.add_argument("--depth", required=True, help=".npz with depth [T,H,W] and kind")
    video_p.add_argument("--camera", required=True, help=".npz with K [3,3], T_world_camera")
    video_p.add_argument("--depth0", required=True, help="first-frame metric depth .npy/.npz")
    video_p.add_argument("--num-points", type=int, default=64, help="points to track")
    _add_clean_args(video_p)
    demo_p = sub.add_parser("demo", help="render a textured box moving above the ap2ap_wrench "
                                         "table: the inputs of from-video, with ground truth")
    demo_p.add_argument("--out", required=True, help="folder for video.mp4, mask.png, "
                                                     "depth.npz, camera.npz, depth0.npy")
    demo_p.add_argument("--disparity", action="store_true",
                        help="write relative disparity instead of relative depth")
    return tracks


def _demo(args) -> int:
    """Renders synthetic.table_demo() and prints the commands that use it."""
    from dex4d_jax.tracks import synthetic  # noqa: PLC0415

    half, (pos, quat), camera = synthetic.table_demo()
    scene = synthetic.render_box_scene(half, camera=camera, poses=(pos, quat))
    paths = synthetic.save_scene_files(scene, args.out,
                                       depth_kind="disparity" if args.disparity else "depth",
                                       depth_scale=2.5 if args.disparity else 0.37)
    box = ",".join(f"{h:g}" for h in half)
    pose = " ".join(f"{v:.4g}" for v in [*pos[0], *quat[0]])
    print(f"Wrote {len(scene.rgb)} frames of a {box} m (half sizes) box to {args.out}/ "
          f"(ground truth in {os.path.basename(paths['ground_truth'])}). Next:\n"
          f"  dex4d tracks from-video --video {paths['video']} --mask {paths['mask']} "
          f"--depth {paths['depth']} --camera {paths['camera']} --depth0 {paths['depth0']} "
          f"--waypoint-distance 0.01 --out track.npz\n"
          f"  dex4d run --onnx student.onnx --tracks track.npz --robot sim "
          f"--object box:{box} --pose {pose}")
    return 0


def _check_numbers(args, parser) -> None:
    if args.ransac_threshold <= 0:
        parser.error("--ransac-threshold must be positive (metres)")
    if not 0.0 <= args.max_outlier_fraction < 1.0:
        parser.error("--max-outlier-fraction must be in [0, 1)")
    if args.waypoint_distance < 0:
        parser.error("--waypoint-distance must be >= 0 (metres)")
    if getattr(args, "num_points", 1) <= 0:
        parser.error("--num-points must be positive")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error(f"--out: the folder {out_dir} does not exist")


def _summary(result, out: str) -> str:
    tracks = result.tracks
    t_video = result.tracks2d.tracks.shape[0]
    n_in = result.tracks2d.tracks.shape[1]
    outliers = int((~result.cleaned.inliers).sum())
    waypoints = result.cleaned.waypoints
    shown = ", ".join(str(i) for i in waypoints[:12]) + (" ..." if len(waypoints) > 12 else "")
    return (f"frames: {t_video}  points: {n_in} tracked, {tracks.num_points} kept\n"
            f"visible: {tracks.visible.mean():.1%} of kept points over the output frames\n"
            f"metric scale: {result.scale:.6g}\n"
            f"RANSAC outliers: {outliers} of {n_in} tracks\n"
            f"waypoints: {len(waypoints)} (frames {shown})\n"
            f"wrote {out}")


def run(args, parser: argparse.ArgumentParser) -> int:
    """Executes `tracks lift` or `tracks from-video`; prints a summary; returns 0.

    Bad input (missing file, malformed array, inputs that do not fit together) becomes
    `parser.error(message)`, which exits with status 2.
    """
    from dex4d_jax.tracks import clean, formats, pipeline  # noqa: PLC0415

    if args.tracks_command == "demo":
        return _demo(args)
    _check_numbers(args, parser)
    clean_kwargs = dict(sampling=args.sampling, cleaning=clean.CleanOptions(
        ransac_threshold=args.ransac_threshold, max_outlier_fraction=args.max_outlier_fraction,
        smooth_sigma_frames=args.smooth_sigma, waypoint_distance=args.waypoint_distance))
    try:
        if args.tracks_command == "lift":
            tracks2d = formats.load_tracks2d(args.tracks2d)
            depth = formats.load_depth(args.depth)
            camera = formats.load_camera(args.camera)
            depth0 = formats.load_depth0(args.depth0)
            mask = None if args.mask is None else formats.load_mask(args.mask)
            if mask is not None and mask.shape != depth0.shape:
                raise ValueError(f"the mask is {list(mask.shape)} but depth0 is "
                                 f"{list(depth0.shape)}; both must be the first camera frame")
            result = pipeline.lift_and_clean(tracks2d, depth, camera, depth0, mask=mask,
                                             **clean_kwargs)
        elif args.tracks_command == "from-video":
            result = pipeline.run_pipeline(
                args.video, args.mask, args.depth, args.camera, args.depth0, args.num_points,
                show_progress=sys.stderr.isatty(), **clean_kwargs)
        else:
            parser.error(f"unknown tracks command {args.tracks_command!r}")
            return 2
    except (FileNotFoundError, ValueError) as err:  # FormatError is a ValueError
        parser.error(str(err))
        return 2
    formats.save_tracks3d(args.out, result.tracks)
    print(_summary(result, args.out))
    return 0
