"""`dex4d objects`: the object library counted by family; a rendered sheet of it."""

from __future__ import annotations

import argparse
import os

from dex4d_jax.experiments.commands.common import error, use_headless_gl, write_render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    parser.add_argument("--split", choices=("train", "unseen", "ycb"), default="train",
                        help="which library (default: train)")
    parser.add_argument("--num-objects", type=int, default=None,
                        help="library size (default 1024; ycb has its 9 objects)")
    parser.add_argument("--seed", type=int, default=0, help="library seed (default: 0)")
    parser.add_argument("--show", type=int, default=None, metavar="N",
                        help="render the first N objects as a PNG sheet (families take turns, "
                             "so N spreads over them; default: no sheet)")
    parser.add_argument("--out", default=None,
                        help="PNG written by --show (default objects_<split>.png)")


def run(args, parser, argv) -> int:
    """Prints the family table; renders the sheet with --show."""
    if args.show is not None:
        use_headless_gl()
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
            return error(f"cannot write {out}: {folder} is not a writable folder")
    if args.split == "ycb":
        library = object_library.ycb_objects()
    else:
        library = object_library.load_library(args.split, num_objects, args.seed)
    print(object_library.family_table(library))
    if args.show is None:
        return 0
    from dex4d_jax import object_sheet  # noqa: PLC0415

    return write_render(lambda: object_sheet.render_sheet(library, range(args.show), out), out,
                        f"{args.show} objects")
