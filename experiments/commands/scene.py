"""`dex4d scene`: the robot scene described; both cameras rendered at the grasp-ready pose."""

from __future__ import annotations

import argparse

from dex4d_jax.experiments.commands.common import use_headless_gl, write_render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("--split", choices=("train", "unseen", "ycb"), default="ycb",
                        help="where the object comes from (default: ycb)")
    parser.add_argument("--object", default="mug", help="object name or index within --split (default: mug)")
    parser.add_argument("--collision", default="default",
                        help="collision preset: default (the default), hand_self, table_box or "
                             "full_hand (docs/robot.md)")
    parser.add_argument("--render", metavar="PNG", default=None,
                        help="write the overview and D435 camera views side by side to this PNG "
                             "(default: no picture)")


def run(args, parser, argv) -> int:
    """Prints the scene's description; renders it with --render."""
    if args.render is not None:
        use_headless_gl()
    from dex4d_jax.envs import robot_scene  # noqa: PLC0415

    from dex4d_jax import object_library, robot, scene_models  # noqa: PLC0415

    if args.collision not in scene_models.COLLISION_PRESETS:
        parser.error(f"--collision must be one of {', '.join(scene_models.COLLISION_PRESETS)}")
    library = (object_library.ycb_objects() if args.split == "ycb"
               else object_library.load_library(args.split))
    try:
        index = library.find(args.object)
    except KeyError as err:
        parser.error(f"{err.args[0]} in the {args.split} split")
    scene = robot_scene.build_scene_objects(library.subset([index]), args.collision)
    model, data = robot_scene.grasp_ready_data(scene, 0)
    print(robot_scene.describe(model, args.collision))
    print(f"object {library.names[index]} ({library.family_names[library.family_ids[index]]}, "
          f"{1000 * library.mass[index]:.0f} g) at the grasp-ready pose")
    if args.render is None:
        return 0
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    def render_and_save():
        views = [robot_scene.render(model, data, camera) for camera in ("overview", robot.CAMERA)]
        Image.fromarray(np.concatenate(views, axis=1)).save(args.render, format="PNG")

    return write_render(render_and_save, args.render, f"overview and {robot.CAMERA} views")
