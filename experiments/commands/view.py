"""`dex4d view`: a 3D viewer in the browser (Viser) of a point track, a rollout or objects.

dex4d view rollout.npz                     # a rollout file (dex4d render writes rollout.npz)
dex4d view runs/student                    # a run folder: its newest rollout file
dex4d view track.npz                       # 3D point tracks (dex4d tracks ... --out track.npz)
dex4d view --objects unseen --count 25     # a grid of objects of the library
dex4d view rollout.npz --host 0.0.0.0 --port 8090

It checks the input, prints the URL and serves until Ctrl-C. Viser is an optional extra:
pip install "dex4d-jax[viewer]". dex4d_jax/viz/viewer.py says what each scene shows, and how
to start one from Python.
"""

from __future__ import annotations

import argparse
import glob
import ipaddress
import json
import os
import signal
import socket
import sys
import threading

from dex4d_jax.experiments.commands.common import error

DEFAULT_COUNT = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("path", nargs="?", metavar="FILE_OR_RUN",
                        help="a rollout file (.npz from dex4d render or train --video-every), "
                             "a 3D point-track file (.npz), or a run folder (its newest "
                             "rollout file)")
    parser.add_argument("--objects", default=None, metavar="SPLIT",
                        help="show objects of the library instead: train, unseen or ycb")
    parser.add_argument("--count", type=int, default=None,
                        help=f"how many objects --objects shows (default {DEFAULT_COUNT}, or "
                             "all 9 of ycb)")
    parser.add_argument("--seed", type=int, default=0, help="library seed of --objects")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; "
                             "0.0.0.0 serves every machine that can reach this one)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port (default 8080; the next free one when busy; 0: any)")
    parser.add_argument("--environment-map", action="store_true",
                        help="light the scene with Viser's HDR environment map (glossier, paler "
                             "than MuJoCo's colours; slow to start in a browser without a GPU)")


class InputError(ValueError):
    """An input `dex4d view` cannot show (a one-line message)."""


def newest_rollout(run: str | os.PathLike) -> str:
    """The newest rollout file of a run folder: `RUN/videos/*.npz` or `RUN/*.npz`.

    Only rollout files (`rollout_file.is_rollout_file`) count; the newest by modification time
    wins (by name on a tie).

    Raises:
      InputError: the folder holds none; the message says how to make one, with the run's
        environment from its config.json.
    """
    from dex4d_jax.viz import rollout_file  # noqa: PLC0415

    run = os.fspath(run)
    found = [path for pattern in ("videos/*.npz", "*.npz")
             for path in glob.glob(os.path.join(glob.escape(run), pattern))
             if rollout_file.is_rollout_file(path)]
    if not found:
        raise InputError(f"no rollout file in {run} (looked for videos/*.npz and *.npz); make "
                         f"one with `dex4d render --policy {run} --env {_run_env(run)} --out "
                         f"{os.path.join(run, 'rollout.mp4')}`")
    return max(found, key=lambda path: (os.path.getmtime(path), path))


def _run_env(run: str) -> str:
    """The environment name in a run folder's config.json, or 'ENV'."""
    try:
        with open(os.path.join(run, "config.json")) as f:
            return str(json.load(f)["env"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return "ENV"


def load_input(path: str | os.PathLike):
    """The rollout or 3D point track in a file or run folder, chosen by its content.

    A folder gives its newest rollout file (`newest_rollout`); an .npz with `model_xml` and
    `qpos` is a rollout file (`rollout_file.load`, its model compiled and checked against its
    qpos by `viewer.check_rollout`); one with `points` is a 3D point-track file
    (`formats.load_tracks3d`).

    Returns:
      A `rollout_file.Rollout` or a `formats.Tracks3D`.

    Raises:
      FileNotFoundError: no such file or folder.
      InputError: a folder without a rollout file, or a file that is neither format.
      ValueError: a rollout or track file that breaks its format's rules (RolloutFileError,
        FormatError, viewer.ViewerError; one-line messages).
    """
    from dex4d_jax.tracks import formats  # noqa: PLC0415
    from dex4d_jax.viz import rollout_file, viewer  # noqa: PLC0415

    path = os.fspath(path)
    if os.path.isdir(path):
        path = newest_rollout(path)
    elif not os.path.exists(path):
        raise FileNotFoundError(f"no such file or run folder: {path}")
    if rollout_file.is_rollout_file(path):
        rollout = rollout_file.load(path)
        viewer.check_rollout(rollout, path)
        return rollout
    try:
        import numpy as np  # noqa: PLC0415

        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
    except (OSError, ValueError, AttributeError) as err:  # not an .npz (an .npy has no files)
        raise InputError(f"{path} is not an .npz archive, so neither a rollout file (`dex4d "
                         "render` writes one) nor a 3D point-track file (`dex4d tracks`)") from err
    if "points" in keys:
        return formats.load_tracks3d(path)
    raise InputError(f"{path} is neither a rollout file (model_xml, qpos, points, ...) nor a "
                     f"3D point-track file (points [T, N, 3], visible [T, N]); it holds "
                     f"{', '.join(sorted(keys)) or 'nothing'}")


def load_objects(split: str, count: int | None = None, seed: int = 0):
    """The first `count` objects of a library split, as an `object_library.ObjectLibrary`.

    "train" and "unseen" come from `object_library.load_library` (cached under
    ~/.cache/dex4d_jax/objects), "ycb" are the 9 YCB stand-ins. `count` None means
    DEFAULT_COUNT (all 9 for ycb).

    Raises:
      InputError: an unknown split, or a count below 1 (or above 9 for ycb).
    """
    from dex4d_jax import object_library  # noqa: PLC0415

    splits = (*object_library.SPLITS, "ycb")
    if split not in splits:
        raise InputError(f"--objects {split!r} is not a split; choose {', '.join(splits)}")
    largest = len(object_library.YCB_NAMES) if split == "ycb" else None
    if count is None:
        count = min(DEFAULT_COUNT, largest or DEFAULT_COUNT)
    if count < 1 or (largest is not None and count > largest):
        limit = f"1 to {largest}" if largest else "at least 1"
        raise InputError(f"--count must be {limit} for --objects {split}, got {count}")
    if split == "ycb":
        return object_library.ycb_objects().subset(range(count))
    return object_library.load_library(split, count, seed)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (only this machine reaches it).

    An unresolvable name is not loopback.
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                               for info in infos)


def _wait_for_a_stop_signal() -> None:
    """Returns on Ctrl-C (SIGINT) or SIGTERM.

    Explicit handlers, because a process started in the background by a non-interactive shell
    inherits SIGINT ignored, and Python then raises no KeyboardInterrupt.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args, parser, argv) -> int:
    """Checks the input, starts the server, prints its URL and serves until Ctrl-C."""
    if (args.path is None) == (args.objects is None):
        return error("give one of FILE_OR_RUN (a rollout, track or run folder) or "
                     "--objects SPLIT")
    if args.objects is None and args.count is not None:
        return error("--count goes with --objects")
    from dex4d_jax.viz import viewer  # noqa: PLC0415

    try:
        if args.objects is not None:
            source = load_objects(args.objects, args.count, args.seed)
            what = f"{len(source)} {args.objects} objects"
        else:
            path = newest_rollout(args.path) if os.path.isdir(args.path) else args.path
            source = load_input(path)
            what = f"the {'rollout' if hasattr(source, 'model_xml') else '3D point track'} {path}"
        viewer.require_viser()
        if not 0 <= args.port <= 65535:
            raise InputError(f"--port must be 0 to 65535 (0: any free port), got {args.port}")
        viewer.check_host(args.host)
    except (FileNotFoundError, ValueError, viewer.ViserMissingError) as err:
        return error(" ".join(str(err).split()))
    if not is_loopback(args.host):
        print(f"dex4d: warning: --host {args.host} is not a loopback address: any machine that "
              "can reach this one sees the viewer, without a password", file=sys.stderr)
    server = viewer.make_server(args.host, args.port, environment_map=args.environment_map)
    try:
        scene = viewer.show(server, source)
        busy = (f"; port {args.port} was busy" if args.port and server.get_port() != args.port
                else "")
        print(f"dex4d view: serving {what} at {viewer.url_of(server)} (Ctrl-C to stop{busy})",
              flush=True)
        _wait_for_a_stop_signal()
        print("\nStopped.", file=sys.stderr)
        scene.close()
    finally:
        viewer.stop_server(server)
    return 0
