r"""The `tracks` command: `lift` 2D tracks to 3D, or go `from-video` to 3D tracks.

  dex4d tracks lift --tracks2d T2.npz --depth D.npz --camera C.npz --depth0 D0.npy --out T.npz
  dex4d tracks demo --out demo/
  dex4d tracks from-video --video V.mp4 --mask M.png --depth D.npz --camera C.npz \\
      --depth0 D0.npy --out T.npz --num-points 64 --waypoint-distance 0.01

`add_parser(subparsers)` adds the command to a parser; `run(args, parser)` executes it and turns
bad input (an argument out of range, an output that cannot be written, a missing file, a
malformed array) into a usage error (exit status 2) before anything is written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from dex4d_jax.outputs import output_problem

_DESCRIPTION = """\
3D object point tracks, the goals `dex4d run` follows (docs/tracks.md).

  dex4d tracks lift --tracks2d T2.npz --depth D.npz --camera C.npz --depth0 D0.npy --out T.npz
  dex4d tracks demo --out demo/
  dex4d tracks from-video --video V.mp4 --mask M.png --depth D.npz --camera C.npz \\
      --depth0 D0.npy --out T.npz --num-points 64 --waypoint-distance 0.01

Bad input (a missing file, a malformed array, a number out of range, an output that cannot be
written) stops with one line `dex4d: error: ...` and exit status 2, writing nothing.
"""


def _add_clean_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="TRACKS.npz",
                   help="the 3D tracks to write (points [T, N, 3] in metres, world frame; "
                        "visible [T, N]); its folder must exist")
    p.add_argument("--sampling", choices=("bilinear", "nearest"), default="bilinear",
                   help="how depth is read at the track pixels (default: bilinear)")
    p.add_argument("--ransac-threshold", type=float, default=0.01, metavar="METRES",
                   help="distance off the object's rigid motion, in metres, that makes a point "
                        "an outlier in a frame (default: 0.01)")
    p.add_argument("--max-outlier-fraction", type=float, default=0.2, metavar="FRACTION",
                   help="share of its frames, in [0, 1), a track may be an outlier and still be "
                        "kept (default: 0.2)")
    p.add_argument("--smooth-sigma", type=float, default=0.0, metavar="FRAMES",
                   help="Gaussian sigma in frames; > 0 smooths the fitted rigid motion and "
                        "rebuilds the points (default: 0, no smoothing)")
    p.add_argument("--waypoint-distance", type=float, default=0.0, metavar="METRES",
                   help="mean point motion in metres between goal waypoints (default: 0, every "
                        "frame)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds `tracks {lift, from-video, demo}` to an argparse subparsers object; returns it."""
    tracks = subparsers.add_parser(
        "tracks", help="3D object point tracks from 2D tracks or a video (docs/tracks.md)",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = tracks.add_subparsers(dest="tracks_command", required=True)
    lift_p = sub.add_parser("lift", help="lift 2D tracks to metric world-frame 3D tracks",
                            description="Lift 2D pixel tracks to metric 3D tracks in the world "
                                        "frame with a depth video and the camera.")
    lift_p.add_argument("--tracks2d", required=True, metavar="T2.npz",
                        help="2D tracks: tracks [T, N, 2] in pixels, visible [T, N]")
    _add_input_args(lift_p)
    lift_p.add_argument("--mask", default=None, metavar="MASK.png",
                        help="first-frame object mask for the metric scale (default: the "
                             "first-frame track pixels)")
    _add_clean_args(lift_p)
    video_p = sub.add_parser("from-video", help="track points in a video and lift them to 3D",
                             description="Track points on the object in a video and lift them "
                                         "to metric 3D tracks in the world frame.")
    video_p.add_argument("--video", required=True, metavar="VIDEO.mp4",
                         help="the video (MP4 or any format imageio reads)")
    video_p.add_argument("--mask", required=True, metavar="MASK.png",
                         help="first-frame object mask: an image, .npy or .npz, non-zero on "
                              "the object")
    _add_input_args(video_p)
    video_p.add_argument("--num-points", type=int, default=64, metavar="N",
                         help="points to track on the object (default: 64)")
    _add_clean_args(video_p)
    demo_p = sub.add_parser("demo", help="render a textured box moving above the ap2ap_wrench "
                                         "table: the inputs of from-video, with ground truth",
                            description="Render a textured box moving above the ap2ap_wrench "
                                        "table and write the inputs of `tracks from-video` with "
                                        "the ground truth; prints the commands that use them.")
    demo_p.add_argument("--out", required=True, metavar="DIR",
                        help="a new or empty folder for video.mp4, mask.png, depth.npz, "
                             "camera.npz, depth0.npy and ground_truth.npz (created if missing)")
    demo_p.add_argument("--disparity", action="store_true",
                        help="write relative disparity instead of relative depth (default: "
                             "relative depth)")
    return tracks


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", required=True, metavar="DEPTH.npz",
                   help="relative depth video: depth [T, H, W] and kind (depth or disparity)")
    p.add_argument("--camera", required=True, metavar="CAMERA.npz",
                   help="intrinsics K [3, 3] (pixels) and, optionally, the camera pose "
                        "T_world_camera [4, 4] (metres)")
    p.add_argument("--depth0", required=True, metavar="DEPTH0.npy",
                   help="first-frame metric depth [H, W] in metres (.npy or .npz)")


def _demo(args, parser: argparse.ArgumentParser) -> int:
    """Renders synthetic.table_demo() and prints the commands that use it."""
    from dex4d_jax.tracks import synthetic  # noqa: PLC0415

    half, (pos, quat), camera = synthetic.table_demo()
    scene = synthetic.render_box_scene(half, camera=camera, poses=(pos, quat))
    try:
        paths = synthetic.save_scene_files(scene, args.out,
                                           depth_kind="disparity" if args.disparity else "depth",
                                           depth_scale=2.5 if args.disparity else 0.37)
    except OSError as err:  # disk full, ...
        parser.error(f"cannot write --out {args.out}: {' '.join(str(err).split())}; free space "
                     "or choose another location")
        return 2
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


def _output_problem(path: str, is_folder: bool = False) -> str | None:
    """Why --out `path` cannot be written, or None; nothing is created or changed.

    A file must be a .npz whose folder exists; a folder (`is_folder`, tracks demo) may be
    missing (it is created) but not hold anything (the user's files are never overwritten).
    """
    path = os.path.abspath(path)
    if is_folder and os.path.isdir(path) and os.listdir(path):
        return (f"--out {path} already exists and is not empty; choose a new folder or "
                "empty it")
    if is_folder:
        return output_problem(path, "--out", is_folder=True, create_missing=True)
    return output_problem(path, "--out", suffix=".npz")


def _argument_problem(args) -> str | None:
    """The first argument out of its range, or None (checked before anything is read)."""
    if args.tracks_command == "demo":
        return _output_problem(args.out, is_folder=True)
    numbers = {"--ransac-threshold": args.ransac_threshold,
               "--max-outlier-fraction": args.max_outlier_fraction,
               "--smooth-sigma": args.smooth_sigma, "--waypoint-distance": args.waypoint_distance}
    for flag, value in numbers.items():
        if not math.isfinite(value):
            return f"{flag} is {value}; give a finite number"
    if args.ransac_threshold <= 0:
        return f"--ransac-threshold must be positive (metres), got {args.ransac_threshold:g}"
    if not 0.0 <= args.max_outlier_fraction < 1.0:
        return f"--max-outlier-fraction must be in [0, 1), got {args.max_outlier_fraction:g}"
    if args.smooth_sigma < 0:
        return f"--smooth-sigma must be >= 0 (frames), got {args.smooth_sigma:g}"
    if args.waypoint_distance < 0:
        return f"--waypoint-distance must be >= 0 (metres), got {args.waypoint_distance:g}"
    if getattr(args, "num_points", 1) <= 0:
        return f"--num-points must be positive, got {args.num_points}"
    return _output_problem(args.out)


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
    """Executes `tracks lift`, `tracks from-video` or `tracks demo`; prints a summary; returns 0.

    Bad input (an argument out of range, an output that cannot be written, a missing file, a
    malformed array, inputs that do not fit together) becomes `parser.error(message)`, which
    exits with status 2, before anything is written.
    """
    from dex4d_jax.tracks import clean, formats, pipeline  # noqa: PLC0415

    problem = _argument_problem(args)
    if problem:
        parser.error(problem)
    if args.tracks_command == "demo":
        return _demo(args, parser)
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
        parser.error(" ".join(str(err).split()))
        return 2
    except OSError as err:  # a folder given for a file, no permission
        parser.error(f"cannot read {err.filename}: {err.strerror}; check the path")
        return 2
    try:
        formats.save_tracks3d(args.out, result.tracks)
    except OSError as err:  # disk full, ...
        parser.error(f"cannot write --out {args.out}: {' '.join(str(err).split())}; free space "
                     "or choose another location")
        return 2
    print(_summary(result, args.out))
    return 0
