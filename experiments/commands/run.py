"""`dex4d run`: an exported student in closed loop along a 3D point track (dex4d_jax/deploy).

No JAX on this path: the simulation is built from the policy file's own metadata.
"""

from __future__ import annotations

import argparse
import sys

from dex4d_jax.experiments.commands.common import use_headless_gl


def add_arguments(r: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    r.add_argument("--onnx", required=True, metavar="FILE", help="the exported student")
    r.add_argument("--tracks", required=True, metavar="TRACKS.npz",
                   help="3D point track: points [T, N, 3] (world, metres), visible [T, N]")
    r.add_argument("--robot", choices=("sim",), default="sim",
                   help="sim: native MuJoCo (the object alone for ap2ap_wrench policies, the "
                        "xArm6 + LEAP hand for ap2ap ones); a real robot plugs in through "
                        "deploy.runtime.Robot (docs/deploy.md)")
    r.add_argument("--object", default=None, metavar="ID|box:HX,HY,HZ",
                   help="the simulated object: an index into the policy's object set, or a "
                        "box of half sizes in metres (default: object 0)")
    r.add_argument("--pose", type=float, nargs=7, default=None,
                   metavar=("X", "Y", "Z", "QW", "QX", "QY", "QZ"),
                   help="the object's world pose at the track's first frame (default: at the "
                        "first frame's centroid, unrotated)")
    r.add_argument("--steps", type=int, default=300, help="control ticks at most")
    r.add_argument("--noise", type=float, default=0.0, help="tracking noise std (metres)")
    r.add_argument("--video", default=None, metavar="OUT.mp4", help="write a video")
    r.add_argument("--report", default=None, metavar="OUT.json",
                   help="write the status and the d_t trace as JSON")
    r.add_argument("--seed", type=int, default=0, help="point-slot order and noise seed")


def _parse_object(text: str | None, parser):
    """(object index or None, box half sizes or None) of --object."""
    if text is None:
        return 0, None
    if text.startswith("box:"):
        try:
            half = [float(v) for v in text[4:].split(",")]
        except ValueError:
            half = []
        if len(half) != 3 or min(half) <= 0:
            parser.error(f"--object {text}: a box is box:HX,HY,HZ with three positive half "
                         "sizes in metres")
        return None, half
    try:
        return int(text), None
    except ValueError:
        parser.error(f"--object {text}: expected an object index or box:HX,HY,HZ")
    return None, None


def run(args, parser, argv) -> int:
    """Runs the policy along the track; exit 0 on success, 1 when not reached, 2 on bad input."""
    if args.video:
        use_headless_gl()
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from dex4d_jax.deploy import sim_setup  # noqa: PLC0415
    from dex4d_jax.deploy.policy import OnnxPolicy, PolicyFileError  # noqa: PLC0415
    from dex4d_jax.tracks import formats  # noqa: PLC0415

    if args.steps <= 0:
        parser.error("--steps must be positive")
    if args.noise < 0:
        parser.error("--noise must be >= 0")
    index, half = _parse_object(args.object, parser)
    try:
        policy = OnnxPolicy(args.onnx)
        track = formats.load_tracks3d(args.tracks)
    except (PolicyFileError, FileNotFoundError, formats.FormatError) as err:
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    try:
        sim, camera = sim_setup.simulation(policy.info, index if half is None else half)
    except PolicyFileError as err:  # exported before the file carried its environment's config
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        parser.error(f"--object {args.object}: {err}")
    pose = None if args.pose is None else (np.array(args.pose[:3]), np.array(args.pose[3:]))

    import warnings  # noqa: PLC0415

    # imageio starts ffmpeg with fork(); JAX, when something loaded it, warns about it.
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)

    def on_tick(step, d, index):
        if step % 20 == 0:
            dist = "no point visible" if d is None else f"d_t {100 * d:.1f} cm"
            print(f"  tick {step:4d}: {dist}, target frame {index}/{track.num_frames - 1}",
                  flush=True)

    try:
        result = sim_setup.run_track(policy, track.points, track.visible, sim, camera, pose,
                                     args.steps, args.noise, args.video, on_tick=on_tick,
                                     seed=args.seed)
    except ValueError as err:
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    report = result.report
    seconds = report.steps / policy.info.control_frequency_hz
    print(f"{report.status} after {report.steps} ticks ({seconds:.1f} s); "
          f"target frame {report.target_index[-1]}/{track.num_frames - 1}; true distance of the "
          f"track's points to its last frame {100 * result.final_true_distance:.1f} cm")
    if args.video:
        print(f"Wrote {args.video}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({**report.as_dict(), "final_true_distance": result.final_true_distance},
                      f, indent=1)
        print(f"Wrote {args.report}")
    return 0 if report.success else 1
