"""`dex4d run`: an exported student in closed loop along a 3D point track (dex4d_jax/deploy).

No JAX on this path: the simulation is built from the policy file's own metadata. Every
argument is checked before anything is loaded or simulated (`_argument_problem`). The policy
runs in onnxruntime or, with `--runtime torch`, in PyTorch (the optional extra
`pip install "dex4d-jax[torch]"`); the contract checks are the same for both.
"""

from __future__ import annotations

import argparse
import math

from dex4d_jax.experiments.commands.common import error, use_headless_gl

from dex4d_jax.outputs import output_problem


def add_arguments(r: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    r.add_argument("--onnx", required=True, metavar="FILE",
                   help="the exported student (.onnx, written by `dex4d export`)")
    r.add_argument("--tracks", required=True, metavar="TRACKS.npz",
                   help="3D point track: points [T, N, 3] (world frame, metres), visible [T, N]")
    r.add_argument("--runtime", choices=("onnxruntime", "torch"), default="onnxruntime",
                   help="what runs the policy: onnxruntime, or PyTorch through onnx2torch "
                        "(install it with: pip install \"dex4d-jax[torch]\"; the file must be "
                        "exported at opset 17, the default) (default: onnxruntime)")
    r.add_argument("--robot", choices=("sim",), default="sim",
                   help="sim: simulated in MuJoCo (the object alone for ap2ap_wrench policies, "
                        "the xArm6 + LEAP hand for ap2ap ones); a real robot needs a driver, "
                        "see docs/deploy.md (default: sim)")
    r.add_argument("--object", default=None, metavar="ID|box:HX,HY,HZ",
                   help="the simulated object: an index into the policy's object set, or a "
                        "box of half sizes in metres (default: object 0)")
    r.add_argument("--pose", type=float, nargs=7, default=None,
                   metavar=("X", "Y", "Z", "QW", "QX", "QY", "QZ"),
                   help="the object's world pose at the track's first frame: position in "
                        "metres, rotation as a quaternion w x y z, normalized (default: at the "
                        "first frame's centroid, unrotated)")
    r.add_argument("--steps", type=int, default=300, metavar="N",
                   help="control ticks at most, at the policy's control rate (default: 300)")
    r.add_argument("--noise", type=float, default=0.0, metavar="METRES",
                   help="standard deviation of the tracking noise added to each point, in "
                        "metres (default: 0)")
    r.add_argument("--video", default=None, metavar="OUT.mp4",
                   help="write an MP4 video of the simulation, the tracked points yellow "
                        "and the target frame's magenta (faint where not visible); its folder "
                        "must exist (default: none)")
    r.add_argument("--report", default=None, metavar="OUT.json",
                   help="write the status and the d_t and target-frame traces as JSON; its "
                        "folder must exist (default: none)")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of the point-slot order and the noise, >= 0 (default: 0)")


def _parse_object(text: str | None) -> tuple[int | None, list | None, str | None]:
    """(object index or None, box half sizes or None, problem or None) of --object."""
    if text is None:
        return 0, None, None
    if text.startswith("box:"):
        try:
            half = [float(v) for v in text[4:].split(",")]
        except ValueError:
            half = []
        if len(half) != 3 or not all(math.isfinite(h) and h > 0 for h in half):
            return None, None, (f"--object {text} is not a box; give box:HX,HY,HZ with three "
                                "positive finite half sizes in metres")
        return None, half, None
    try:
        return int(text), None, None
    except ValueError:
        return None, None, (f"--object {text} is neither an object index nor a box; give an "
                            "index or box:HX,HY,HZ")


def _argument_problem(args) -> str | None:
    """The first argument out of its range, or None.

    Numbers finite and in range, the pose's quaternion not zero, --object well formed, the
    outputs writable: all checked before anything is loaded or simulated.
    """
    for flag, values in (("--pose", args.pose or []), ("--noise", [args.noise])):
        if not all(math.isfinite(v) for v in values):
            return (f"{flag} {' '.join(f'{v:g}' for v in values)} holds NaN or infinity; give "
                    "finite numbers")
    if args.steps <= 0:
        return f"--steps must be positive (control ticks), got {args.steps}"
    if args.noise < 0:
        return f"--noise must be >= 0 (metres), got {args.noise:g}"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if args.pose is not None and math.hypot(*args.pose[3:]) < 1e-6:
        return ("--pose has a zero quaternion (QW QX QY QZ); give a rotation, e.g. 1 0 0 0 for "
                "none")
    problem = _parse_object(args.object)[2]
    for flag, path, suffix in (("--video", args.video, ".mp4"),
                               ("--report", args.report, None)):
        problem = problem or (path and output_problem(path, flag, suffix))
    return problem or None


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most `limit` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(args, parser, argv) -> int:
    """Runs the policy along the track; exit 0 on success, 1 when not reached, 2 on bad input."""
    problem = _argument_problem(args)
    if problem:
        return error(problem)
    if args.video:
        use_headless_gl()
    import json  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from dex4d_jax.deploy import sim_setup  # noqa: PLC0415
    from dex4d_jax.deploy.policy import (  # noqa: PLC0415
        OnnxPolicy,
        PolicyFileError,
        RuntimeUnavailableError,
    )
    from dex4d_jax.tracks import formats  # noqa: PLC0415

    index, half, _ = _parse_object(args.object)
    try:
        policy = OnnxPolicy(args.onnx, runtime=args.runtime)
        track = formats.load_tracks3d(args.tracks)
    except RuntimeUnavailableError as err:
        return error(f"--runtime {args.runtime}: {_one_line(err)}")
    except (PolicyFileError, FileNotFoundError, formats.FormatError) as err:
        return error(_one_line(err))
    except OSError as err:  # a folder, no permission
        return error(f"cannot read {err.filename}: {err.strerror}; check the path")
    try:
        sim, camera = sim_setup.simulation(policy.info, index if half is None else half)
    except PolicyFileError as err:  # exported before the file carried its environment's config
        return error(_one_line(err))
    except ValueError as err:
        return error(f"--object {args.object}: {_one_line(err)}")
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
    except OSError as err:  # only the video is written while simulating (disk full, ...)
        return error(f"cannot write --video {args.video}: {_one_line(err)}; free space or "
                     "choose another location")
    except ValueError as err:
        return error(_one_line(err))
    report = result.report
    seconds = report.steps / policy.info.control_frequency_hz
    print(f"{report.status} after {report.steps} ticks ({seconds:.1f} s); "
          f"target frame {report.target_index[-1]}/{track.num_frames - 1}; true distance of the "
          f"track's points to its last frame {100 * result.final_true_distance:.1f} cm")
    if args.video:
        print(f"Wrote {args.video}")
    if args.report:
        text = json.dumps({**report.as_dict(), "final_true_distance": result.final_true_distance},
                          indent=1)
        try:
            with open(args.report, "w") as f:
                f.write(text)
        except OSError as err:  # disk full, removed folder, ...
            return error(f"cannot write --report {args.report}: {_one_line(err)}; free space "
                         "or choose another location")
        print(f"Wrote {args.report}")
    return 0 if report.success else 1
