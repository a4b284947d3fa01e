"""A PNG contact sheet of library objects on a plane, coloured by family (offscreen MuJoCo).

Rendering needs an OpenGL backend; on a headless Linux machine set MUJOCO_GL=egl (or osmesa)
before mujoco is first imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dex4d_jax import object_library, shapes

# Tableau 10, one colour per family id (cycled).
_FAMILY_COLOURS = (
    "4e79a7",
    "f28e2b",
    "e15759",
    "76b7b2",
    "59a14f",
    "edc948",
    "b07aa1",
    "ff9da7",
    "9c755f",
    "bab0ac",
)
_SHEET_FOVY = 20.0  # degrees
_SHEET_ELEVATION = -60.0  # degrees
_GEOM_TYPES = {"box": mujoco.mjtGeom.mjGEOM_BOX, "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE}


def _family_rgba(family_id: int) -> list[float]:
    code = _FAMILY_COLOURS[family_id % len(_FAMILY_COLOURS)]
    return [int(code[k : k + 2], 16) / 255.0 for k in (0, 2, 4)] + [1.0]


def _sheet_spec(
    library: object_library.ObjectLibrary,
    indices: Sequence[int],
    columns: int,
    spacing: float,
    width: int,
    height: int,
) -> mujoco.MjSpec:
    """A scene with the objects resting on a plane, row-major from the back left."""
    spec = mujoco.MjSpec()
    spec.visual.global_.offwidth, spec.visual.global_.offheight = width, height
    # A narrow field of view keeps tall objects at the edges from leaning in perspective.
    spec.visual.global_.fovy = _SHEET_FOVY
    rows = -(-len(indices) // columns)
    # A plane of zero size is drawn without bounds.
    spec.worldbody.add_geom(
        type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.01], rgba=[0.93, 0.93, 0.9, 1.0]
    )
    # No shadows: the two coplanar tops of a star prism would show shadow-map stripes.
    spec.worldbody.add_light(
        pos=[0.0, 0.0, 3.0],
        dir=[0.0, 0.3, -1.0],
        castshadow=False,
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
    )
    for slot, index in enumerate(indices):
        obj = library.spec(index)
        low, _ = shapes.bounding_box(obj.primitives)
        x = spacing * (slot % columns - 0.5 * (columns - 1))
        y = spacing * (0.5 * (rows - 1) - slot // columns)
        # The explicit inertial makes the compiler check it (positive, triangle inequality).
        body = spec.worldbody.add_body(
            name=obj.name,
            pos=[x, y, -low[2]],
            mass=library.mass[index],
            ipos=library.com[index],
            iquat=library.iquat[index],
            inertia=library.inertia[index],
            explicitinertial=True,
        )
        rgba = _family_rgba(int(library.family_ids[index]))
        for p in obj.primitives:
            size = np.zeros(3)
            size[: len(p.size)] = p.size
            body.add_geom(type=_GEOM_TYPES[p.kind], size=size, pos=p.pos, quat=p.quat, rgba=rgba)
    return spec


def _draw_legend(
    image: Image.Image, library: object_library.ObjectLibrary, indices: Sequence[int]
) -> None:
    """Writes one colour swatch and family name per family shown, top left."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.height // 40))
    line = int(font.size * 1.4)
    shown = sorted({int(library.family_ids[i]) for i in indices})
    longest = max(draw.textlength(library.family_names[f], font=font) for f in shown)
    draw.rectangle([4, 4, 26 + font.size + longest, 14 + len(shown) * line], fill="white")
    for row, family_id in enumerate(shown):
        top = 10 + row * line
        colour = tuple(int(255 * c) for c in _family_rgba(family_id)[:3])
        draw.rectangle([10, top, 10 + font.size, top + font.size], fill=colour, outline="black")
        draw.text((18 + font.size, top), library.family_names[family_id], fill="black", font=font)


def render_sheet(
    library: object_library.ObjectLibrary,
    indices: Sequence[int],
    path: str,
    width: int = 1600,
    height: int = 1000,
) -> None:
    """Renders the chosen objects on a grid, coloured by family, to a PNG file.

    Args:
        library: The objects.
        indices: [K] objects to show, laid out row by row.
        path: Output PNG path.
        width: Image width, pixels.
        height: Image height, pixels.
    """
    indices = [int(i) for i in indices]
    boxes = [shapes.bounding_box(library.spec(i).primitives) for i in indices]
    spacing = 1.4 * max(np.max(high - low) for low, high in boxes)
    columns = max(1, int(np.ceil(np.sqrt(len(indices) * width / height))))
    rows = -(-len(indices) // columns)
    model = _sheet_spec(library, indices, columns, spacing, width, height).compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = mujoco.MjvCamera()
    camera.lookat[:] = [0.0, 0.0, 0.0]
    camera.azimuth, camera.elevation = 90.0, _SHEET_ELEVATION
    # Fit the grid in the field of view with a 10% margin; the depth is foreshortened.
    half_view = np.tan(np.deg2rad(_SHEET_FOVY) / 2.0)
    fit = max(
        spacing * columns * height / width, spacing * rows * np.sin(np.deg2rad(-_SHEET_ELEVATION))
    )
    camera.distance = 0.55 * fit / half_view
    with mujoco.Renderer(model, height, width) as renderer:
        renderer.update_scene(data, camera)
        image = Image.fromarray(renderer.render())
    _draw_legend(image, library, indices)
    image.save(path, format="PNG")
