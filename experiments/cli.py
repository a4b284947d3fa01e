"""The `dex4d` command line.

  dex4d train teacher --env ap2ap_wrench --encoder paired --preset quick --out runs/teacher
  dex4d train teacher --resume --out runs/teacher
  dex4d train teacher --env ap2ap --stage 1 --preset paper --out runs/stage1
  dex4d train student --teacher runs/teacher --env ap2ap_wrench --out runs/student
  dex4d export --policy runs/student --out student.onnx
  dex4d run --onnx student.onnx --tracks track.npz --robot sim --object box:0.03,0.02,0.015
  dex4d tracks from-video --video v.mp4 --mask m.png --depth d.npz --camera c.npz \
      --depth0 d0.npy --out track.npz
  dex4d envs
  dex4d objects --split train --show 40 --out objects_train.png
  dex4d scene --object mug --render scene.png
"""

from __future__ import annotations

import argparse
import ast
import ctypes.util
import os
import sys


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so a second run skips most of the compile time."""
    import jax  # noqa: PLC0415

    cache = os.environ.get("DEX4D_JAX_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "dex4d_jax", "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _overrides(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            parser.error(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _parser() -> argparse.ArgumentParser:
    from dex4d_jax.envs import ALL_ENVS  # noqa: PLC0415
    from dex4d_jax.experiments.configs import teacher  # noqa: PLC0415

    from dex4d_jax.networks.point_encoders import ENCODERS, POOLINGS  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="dex4d", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a policy")
    train_sub = train.add_subparsers(dest="policy", required=True)
    t = train_sub.add_parser("teacher", help="train a privileged teacher with Brax PPO")
    t.add_argument("--env", choices=ALL_ENVS, default="ap2ap_wrench")
    t.add_argument("--encoder", choices=ENCODERS, default="paired")
    t.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="point pooling (default: the preset's, mean_max)")
    t.add_argument("--preset", choices=teacher.PRESETS, default="quick",
                   help="quick: ap2ap_wrench on a laptop CPU; paper: the authors' settings "
                        "(4096 envs, GPU); smoke: the whole pipeline on a CPU in minutes")
    t.add_argument("--stage", type=int, choices=teacher.STAGES, default=None,
                   help="curriculum stage of Table IV on --env ap2ap (default 1); stage 3 "
                        "starts from the stage-2 run: --init-from RUN")
    t.add_argument("--out", required=True, help="run directory (must not exist, or --resume)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    t.add_argument("--seed", type=int, default=None, help="PPO seed (default: the preset's)")
    t.add_argument("--steps", type=int, default=None, help="environment steps (default: preset)")
    t.add_argument("--learning-rate", type=float, default=None,
                   help="PPO learning rate (the adaptive-KL schedule's start; default: preset)")
    t.add_argument("--init-from", metavar="DIR", default=None,
                   help="start a new run from the parameters of a run or checkpoint folder "
                        "(fresh optimizer, step 0)")
    t.add_argument("--set", dest="env_set", action="append", default=[], metavar="KEY=VALUE",
                   help="environment config override, e.g. --set first_goal_max_angle=0.5")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    from dex4d_jax.experiments.configs import student  # noqa: PLC0415

    from dex4d_jax.networks.student import ARCHS  # noqa: PLC0415
    from dex4d_jax.student.masking import VARIANTS  # noqa: PLC0415

    s = train_sub.add_parser("student", help="distil a teacher into the masked-point student "
                                             "with DAgger")
    s.add_argument("--teacher", metavar="DIR",
                   help="teacher run or checkpoint folder (required for a new run)")
    s.add_argument("--env", choices=ALL_ENVS, default=None,
                   help="the environment the teacher was trained on (required for a new run)")
    s.add_argument("--out", required=True, help="run directory (must not exist, or --resume)")
    s.add_argument("--preset", choices=student.PRESETS, default="quick",
                   help="quick: ap2ap_wrench on a laptop CPU; paper: the authors' settings "
                        "(3200 envs, 25k iterations, GPU); smoke: the pipeline in minutes")
    s.add_argument("--arch", choices=ARCHS, default="transformer",
                   help="mlp: Table II 'w/o self-attention' (tokens concatenated, MLP decoder)")
    s.add_argument("--no-world-model", action="store_true",
                   help="Table II 'w/o world modeling': no next-state loss")
    s.add_argument("--encoder", choices=ENCODERS, default="paired",
                   help="point tokenizer (Table II: decoupled, mlp)")
    s.add_argument("--masking", choices=tuple(VARIANTS), default="paper",
                   help="height-mask quantile: paper U(0.2, 1.0) or the authors' code U(0, 0.8)")
    s.add_argument("--beta", type=float, default=None,
                   help="probability of executing the teacher's action, decaying to 0 over "
                        "the first half of the run (default 0: the student acts)")
    s.add_argument("--seed", type=int, default=None, help="DAgger seed (default 0)")
    s.add_argument("--steps", type=int, default=None, help="environment steps (default: preset)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    s.add_argument("--set", dest="config_set", action="append", default=[], metavar="KEY=VALUE",
                   help="student config override, e.g. --set dagger.learning_rate=3e-4")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("export", help="export a student or teacher to ONNX (dex4d_jax/export)")
    e.add_argument("--policy", required=True, metavar="DIR",
                   help="a student or teacher run (its latest checkpoint) or checkpoint folder")
    e.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    r = sub.add_parser("run", help="run an exported student in closed loop along a 3D point "
                                   "track (dex4d_jax/deploy)")
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
    from dex4d_jax.tracks import cli as tracks_cli  # noqa: PLC0415

    tracks_cli.add_parser(sub)
    sub.add_parser("envs", help="list the registered environments")
    o = sub.add_parser("objects", help="count the object library by family; render a sheet of it")
    o.add_argument("--split", choices=("train", "unseen", "ycb"), default="train")
    o.add_argument("--num-objects", type=int, default=None,
                   help="library size (default 1024; ycb has its 9 objects)")
    o.add_argument("--seed", type=int, default=0, help="library seed")
    o.add_argument("--show", type=int, default=None, metavar="N",
                   help="render the first N objects (families take turns, so N spreads over them)")
    o.add_argument("--out", default=None,
                   help="PNG written by --show (default objects_<split>.png)")
    c = sub.add_parser("scene", help="describe the robot scene; render it at the grasp-ready pose")
    c.add_argument("--split", choices=("train", "unseen", "ycb"), default="ycb",
                   help="where the object comes from")
    c.add_argument("--object", default="mug", help="object name or index within --split")
    c.add_argument("--collision", default="default",
                   help="collision preset: default, hand_self, table_box or full_hand")
    c.add_argument("--render", metavar="PNG", default=None,
                   help="write the overview and D435 camera views side by side")
    return parser


def _use_headless_gl() -> None:
    """Picks EGL for offscreen rendering on Linux when it is installed and nothing was chosen.

    MuJoCo reads MUJOCO_GL once, when it is first imported, so this runs before any import.
    """
    if sys.platform.startswith("linux") and ctypes.util.find_library("EGL"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def _family_table(library) -> str:
    """One line per family: object count, largest-extent range (mm) and mass range (g)."""
    from dex4d_jax import shapes  # noqa: PLC0415

    extents = [1000.0 * max(high - low) for low, high in
               (shapes.bounding_box(library.spec(i).primitives) for i in range(len(library)))]
    lines = [f"{'family':<12}{'objects':>8}{'extent mm':>16}{'mass g':>16}"]
    for family_id, family in enumerate(library.family_names):
        members = [i for i in range(len(library)) if library.family_ids[i] == family_id]
        if not members:
            continue
        size = f"{min(extents[i] for i in members):.0f}-{max(extents[i] for i in members):.0f}"
        mass = 1000.0 * library.mass[members]
        lines.append(f"{family:<12}{len(members):>8}{size:>16}"
                     f"{f'{mass.min():.0f}-{mass.max():.0f}':>16}")
    lines.append(f"{'total':<12}{len(library):>8}")
    return "\n".join(lines)


def _objects(args, parser) -> int:
    from dex4d_jax import object_library  # noqa: PLC0415

    if args.split == "ycb":
        num_objects = len(object_library.YCB_NAMES)
    elif args.num_objects is None:
        num_objects = object_library.DEFAULT_NUM_OBJECTS
    else:
        num_objects = args.num_objects
    if num_objects < 1:
        parser.error("--num-objects must be positive")
    out = args.out or f"objects_{args.split}.png"
    if args.show is not None:  # Check before a library is built for nothing.
        if not 1 <= args.show <= num_objects:
            parser.error(f"--show must be between 1 and {num_objects}, the library's size")
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            print(f"dex4d: error: cannot write {out}: {folder} is not a writable folder",
                  file=sys.stderr)
            return 2
    if args.split == "ycb":
        library = object_library.ycb_objects()
    else:
        library = object_library.load_library(args.split, num_objects, args.seed)
    print(_family_table(library))
    if args.show is None:
        return 0
    from dex4d_jax import object_sheet  # noqa: PLC0415

    return _write_render(lambda: object_sheet.render_sheet(library, range(args.show), out), out,
                         f"{args.show} objects")


def _write_render(render_and_save, path: str, what: str) -> int:
    """Runs `render_and_save()`, which writes `path`; turns GL and file errors into messages."""
    import mujoco  # noqa: PLC0415

    try:
        render_and_save()
    except mujoco.FatalError as err:
        print(f"dex4d: error: no OpenGL context for offscreen rendering ({err}); on a headless "
              "machine set MUJOCO_GL=egl or MUJOCO_GL=osmesa", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"dex4d: error: cannot write {path}: {err}", file=sys.stderr)
        return 2
    print(f"Wrote {path} ({what})")
    return 0


def _pair_table(model) -> str:
    """Candidate collision pairs of a model, counted by geom types."""
    import collections  # noqa: PLC0415

    import mujoco  # noqa: PLC0415
    from mujoco.mjx._src import collision_driver  # noqa: PLC0415

    counts = collections.Counter(
        " - ".join(sorted(mujoco.mjtGeom(model.geom_type[g]).name[7:].lower() for g in (a, b)))
        for a, b, _ in collision_driver.geom_pairs(model))
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


def _scene(args, parser) -> int:
    from dex4d_jax.envs import robot_scene  # noqa: PLC0415

    from dex4d_jax import object_library, robot, scene_models  # noqa: PLC0415

    if args.collision not in scene_models.COLLISION_PRESETS:
        parser.error(f"--collision must be one of {', '.join(scene_models.COLLISION_PRESETS)}")
    library = (object_library.ycb_objects() if args.split == "ycb"
               else object_library.load_library(args.split))
    names = [str(n) for n in library.names]
    if args.object in names:
        index = names.index(args.object)
    elif args.object.isdigit() and int(args.object) < len(library):
        index = int(args.object)
    else:
        shown = ", ".join(names) if len(names) <= 12 else f"0-{len(names) - 1} or {names[0]}, ..."
        parser.error(f"no object {args.object!r} in the {args.split} split; choose {shown}")
    scene = robot_scene.build_scene_objects(library.subset([index]), args.collision)
    model, data = robot_scene.grasp_ready_data(scene, 0)
    print(f"{robot.SCENE_XML}: {model.nq} qpos, {model.nv} dofs, {model.nu} actuators, "
          f"{model.ngeom} geoms ({int((model.geom_contype | model.geom_conaffinity).astype(bool).sum())} "
          f"colliders), timestep {model.opt.timestep:.5f} s")
    print("joint/actuator order: " + " ".join(robot.JOINT_NAMES))
    print(f"collision preset {args.collision!r}: {_pair_table(model)}")
    print(f"object {names[index]} ({library.family_names[library.family_ids[index]]}, "
          f"{1000 * library.mass[index]:.0f} g) at the grasp-ready pose")
    if args.render is None:
        return 0
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    def render_and_save():
        views = [robot_scene.render(model, data, camera) for camera in ("overview", robot.CAMERA)]
        Image.fromarray(np.concatenate(views, axis=1)).save(args.render, format="PNG")

    return _write_render(render_and_save, args.render, f"overview and {robot.CAMERA} views")


def _train_teacher(args, parser, argv: list[str]) -> int:
    from dex4d_jax.experiments.configs import teacher  # noqa: PLC0415

    from dex4d_jax import envs  # noqa: PLC0415
    from dex4d_jax.teacher import train  # noqa: PLC0415

    config = None
    given = {"--encoder", "--pooling", "--preset", "--seed", "--steps", "--set", "--env",
             "--learning-rate", "--stage"}
    if args.resume and args.init_from:
        parser.error("--init-from starts a new run; it cannot be combined with --resume")
    if args.resume:
        used = [a for a in argv if a.split("=")[0] in given]
        if used:
            print(f"--resume continues with the run's saved config; ignoring {' '.join(used)}.")
    else:
        if args.stage is not None and args.env != "ap2ap":
            parser.error("--stage selects a curriculum stage of --env ap2ap")
        config = teacher.get_config(args.preset, args.env, args.stage)
        if args.stage == 3 and not args.init_from:
            print("Note: the paper starts stage 3 from the stage-2 checkpoint "
                  "(--init-from RUN); this run starts from scratch.")
        overrides = {**config.env.overrides.to_dict(), **_overrides(args.env_set, parser)}
        try:  # Validate the overrides now rather than after a long compile.
            envs.apply_overrides(envs.get_default_config(args.env), overrides)
        except KeyError as err:
            parser.error(str(err.args[0]))
        config.env.overrides = overrides
        config.network.encoder = args.encoder
        if args.pooling:
            config.network.pooling = args.pooling
        if args.seed is not None:
            config.ppo.seed = args.seed
        if args.steps is not None:
            if args.steps <= 0:
                parser.error("--steps must be positive")
            config.ppo.num_timesteps = args.steps
        if args.learning_rate is not None:
            config.ppo.learning_rate = args.learning_rate
    _enable_compilation_cache()
    try:
        result = train.train_teacher(config, args.out, resume=args.resume,
                                     progress=not args.no_progress, init_from=args.init_from)
    except (train.RunDirError, FileNotFoundError, RuntimeError) as err:
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"Success rate {result.success_rate:.3f} on {result.num_episodes} fresh episodes "
          f"(first goal reached and held; {result.goals_reached:.2f} goals held per episode). "
          f"Checkpoints in {args.out}/checkpoints")
    return 0


def _train_student(args, parser, argv: list[str]) -> int:
    from dex4d_jax.experiments.configs import student  # noqa: PLC0415

    from dex4d_jax.student import train  # noqa: PLC0415
    from dex4d_jax.teacher import train as teacher_train  # noqa: PLC0415

    config = None
    if args.resume:
        given = {"--teacher", "--env", "--preset", "--arch", "--no-world-model", "--encoder",
                 "--masking", "--beta", "--seed", "--steps", "--set"}
        used = [a for a in argv if a.split("=")[0] in given]
        if used:
            print(f"--resume continues with the run's saved config; ignoring {' '.join(used)}.")
    else:
        if not args.teacher or not args.env:
            parser.error("a new student run needs --teacher DIR and --env ENV")
        if args.beta is not None and not 0.0 <= args.beta <= 1.0:
            parser.error("--beta must be between 0 and 1")
        if args.steps is not None and args.steps <= 0:
            parser.error("--steps must be positive")
        config = student.get_config(args.preset, args.arch, not args.no_world_model,
                                    args.encoder, args.masking)
        if args.beta is not None:
            config.dagger.beta = args.beta
        if args.seed is not None:
            config.dagger.seed = args.seed
        if args.steps is not None:
            config.dagger.num_timesteps = args.steps
        for key, value in _overrides(args.config_set, parser).items():
            section, _, name = key.partition(".")
            if section not in ("network", "masking", "dagger", "eval") or name not in config[section]:
                parser.error(f"--set {key}: no such student setting; valid: "
                             + ", ".join(f"{s}.{n}" for s in ("network", "masking", "dagger", "eval")
                                         for n in config[s]))
            try:
                config[section][name] = value
            except (TypeError, ValueError) as err:
                parser.error(f"--set {key}={value!r}: {err}")
        try:
            config = train.bind_teacher(config, args.teacher, args.env)
        except (teacher_train.RunDirError, FileNotFoundError, ValueError) as err:
            print(f"dex4d: error: {err}", file=sys.stderr)
            return 2
    _enable_compilation_cache()
    try:
        result = train.train_student(config, args.out, resume=args.resume,
                                     progress=not args.no_progress)
    except (teacher_train.RunDirError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    s, t = result["student"], result["teacher"]
    print(f"Student success rate {s['success_rate']:.3f} with masked points, teacher "
          f"{t['success_rate']:.3f} with all points, on the same {s['num_episodes']} fresh "
          f"episodes ({s['goals_reached']:.2f} vs {t['goals_reached']:.2f} goals held per "
          f"episode). Checkpoints in {args.out}/checkpoints")
    return 0


def _export(args, parser) -> int:
    from dex4d_jax.export import policy  # noqa: PLC0415
    from dex4d_jax.teacher import ppo_loop  # noqa: PLC0415
    from dex4d_jax.teacher import train as teacher_train  # noqa: PLC0415

    if not args.out.endswith(".onnx"):
        parser.error(f"--out must name a .onnx file, got {args.out!r}")
    try:
        policy.export_policy(args.policy, args.out)
    except (teacher_train.RunDirError, FileNotFoundError, ppo_loop.CheckpointError,
            policy.ExportMismatchError, ValueError) as err:
        print(f"dex4d: error: {err}", file=sys.stderr)
        return 2
    return 0


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


def _run(args, parser) -> int:
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

    # imageio starts ffmpeg with fork(); JAX (loaded for the environment) warns about it.
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dex4d` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["objects"], ["scene"]) or argv[:2] == ["tracks", "demo"] or (
            argv[:1] == ["run"] and "--video" in argv):
        _use_headless_gl()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "envs":
        from dex4d_jax import envs  # noqa: PLC0415

        print("\n".join(envs.ALL_ENVS))
        return 0
    if args.command == "train" and args.policy == "teacher":
        return _train_teacher(args, parser, argv)
    if args.command == "train" and args.policy == "student":
        return _train_student(args, parser, argv)
    if args.command == "export":
        _enable_compilation_cache()
        return _export(args, parser)
    if args.command == "run":
        return _run(args, parser)
    if args.command == "tracks":
        from dex4d_jax.tracks import cli as tracks_cli  # noqa: PLC0415

        return tracks_cli.run(args, parser)
    if args.command == "objects":
        return _objects(args, parser)
    if args.command == "scene":
        return _scene(args, parser)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
