"""Shape families of rigid objects made of box and capsule primitives, in fixed geom slots.

MJX picks collision functions from geom types when it traces, so every object in a batch has
the same geom types: an object fills a fixed *slot layout* (a tuple of geom types) and leaves
the slots it does not need empty (None). Only boxes and capsules are used (a ball is a capsule
with a near-zero half-length): MJX's JAX implementation has no box-cylinder or box-ellipsoid
collision, and the LEAP hand collides with boxes only.

Each family sampler returns primitives in metres at roughly the paper's object scales; upright
families stand base down along -z. The object frame is the centre of the bounding box.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from dex4d_jax import shapes

QUAT_Z_TO_X = np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])
QUAT_Z_TO_Y = np.array([np.cos(np.pi / 4), -np.sin(np.pi / 4), 0.0, 0.0])
_QUAT_ID = np.array([1.0, 0.0, 0.0, 0.0])
_QUAT_Z45 = np.array([np.cos(np.pi / 8), 0.0, 0.0, np.sin(np.pi / 8)])
# A ball is a capsule whose half-length is this fraction of its radius (MuJoCo needs > 0).
_BALL_HALF_LENGTH_RATIO = 1e-3


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """One rigid object.

    Attributes:
        name: Unique name, `<family>_<index>` for procedural objects.
        family: Shape family.
        slots: One primitive or None (unused) per entry of the slot layout, object frame.
    """

    name: str
    family: str
    slots: tuple[shapes.Primitive | None, ...]

    @property
    def primitives(self) -> list[shapes.Primitive]:
        """The primitives the object is made of (unused slots left out)."""
        return [p for p in self.slots if p is not None]


def box(half, pos=(0.0, 0.0, 0.0), quat=_QUAT_ID) -> shapes.Primitive:
    """A box of half extents `half` [3] at `pos` [3], turned by `quat` [4] (wxyz)."""
    return shapes.Primitive(
        "box", np.asarray(half, float), np.asarray(pos, float), np.asarray(quat, float)
    )


def capsule(radius, half_length, pos=(0.0, 0.0, 0.0), quat=_QUAT_ID) -> shapes.Primitive:
    """A capsule along its local z at `pos` [3], turned by `quat` [4] (wxyz)."""
    return shapes.Primitive(
        "capsule", np.array([radius, half_length]), np.asarray(pos, float), np.asarray(quat, float)
    )


def capsule_between(start, end, radius: float) -> shapes.Primitive:
    """A capsule whose segment runs from `start` to `end` (object frame, not straight down)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = np.linalg.norm(end - start)
    axis = (end - start) / length
    # The shortest rotation taking local +z onto `axis`: (1 + z.axis, z x axis), normalised.
    quat = np.array([1.0 + axis[2], -axis[1], axis[0], 0.0])
    return capsule(radius, 0.5 * length, 0.5 * (start + end), quat / np.linalg.norm(quat))


def octagram(half_width: float, half_height: float, z: float = 0.0) -> list[shapes.Primitive]:
    """Two square boxes 45 degrees apart about z: an eight-pointed star prism.

    Boxes cannot make a cylinder; the star's convex hull is a regular octagon of circumradius
    `half_width * sqrt(2)`, and its extent along x and y is `2 * sqrt(2) * half_width`.
    """
    half = [half_width, half_width, half_height]
    return [box(half, [0.0, 0.0, z]), box(half, [0.0, 0.0, z], _QUAT_Z45)]


def scaled(primitives: Sequence[shapes.Primitive], factor: float) -> list[shapes.Primitive]:
    """The primitives scaled uniformly about the frame origin."""
    return [dataclasses.replace(p, size=p.size * factor, pos=p.pos * factor) for p in primitives]


def centre(
    slots: Sequence[shapes.Primitive | None],
) -> tuple[shapes.Primitive | None, ...]:
    """Shifts the primitives so the object frame sits at the centre of their bounding box.

    Args:
        slots: Primitives or None, in any frame.

    Returns:
        The same slots, moved.
    """
    low, high = shapes.bounding_box([p for p in slots if p is not None])
    middle = 0.5 * (low + high)
    return tuple(None if p is None else dataclasses.replace(p, pos=p.pos - middle) for p in slots)


def fill_slots(
    primitives: Sequence[shapes.Primitive], slot_kinds: Sequence[str], family: str
) -> tuple[shapes.Primitive | None, ...]:
    """Puts each primitive into the first free slot of its kind, in order.

    Args:
        primitives: The object's primitives.
        slot_kinds: Geom type of each slot.
        family: The family, named in the error when the layout lacks a slot.

    Returns:
        One primitive or None per slot.
    """
    slots: list[shapes.Primitive | None] = [None] * len(slot_kinds)
    for p in primitives:
        free = [i for i, kind in enumerate(slot_kinds) if kind == p.kind and slots[i] is None]
        if not free:
            raise ValueError(
                f"Family {family!r} needs more {p.kind} slots than the layout "
                f"{tuple(slot_kinds)} has."
            )
        slots[free[0]] = p
    return tuple(slots)


# ----------------------------------------------------------------------------------------------
# Family samplers. box, bottle, l_shape, t_shape and hammer are also the wrench task's objects:
# keep their draws in this order, or a seed gives that task different objects.
# ----------------------------------------------------------------------------------------------


def _sample_box(rng: np.random.Generator) -> list[shapes.Primitive]:
    return [box([rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05)])]


def _sample_bottle(rng: np.random.Generator) -> list[shapes.Primitive]:
    """Upright capsule body with a square neck on top."""
    radius, half_length = rng.uniform(0.022, 0.035), rng.uniform(0.025, 0.05)
    neck = box([0.009, 0.009, rng.uniform(0.012, 0.02)], pos=[0.0, 0.0, half_length + radius])
    return [neck, capsule(radius, half_length)]


def _sample_l_shape(rng: np.random.Generator) -> list[shapes.Primitive]:
    long_half, thick = rng.uniform(0.04, 0.07), rng.uniform(0.012, 0.022)
    width, leg_half = rng.uniform(0.015, 0.03), rng.uniform(0.025, 0.05)
    bar = box([long_half, width, thick])
    leg = box([thick, width, leg_half], pos=[long_half - thick, 0.0, thick + leg_half])
    return [bar, leg]


def _sample_t_shape(rng: np.random.Generator) -> list[shapes.Primitive]:
    top_half, thick = rng.uniform(0.04, 0.07), rng.uniform(0.012, 0.02)
    width, stem_half = rng.uniform(0.015, 0.03), rng.uniform(0.03, 0.055)
    top = box([top_half, width, thick], pos=[0.0, 0.0, stem_half])
    stem = box([thick, width, stem_half], pos=[0.0, 0.0, -thick])
    return [top, stem]


def _sample_hammer(rng: np.random.Generator) -> list[shapes.Primitive]:
    """Lying capsule handle along x with a box head across its +x end."""
    handle_radius, handle_half = rng.uniform(0.01, 0.016), rng.uniform(0.045, 0.07)
    head = box(
        [rng.uniform(0.012, 0.02), rng.uniform(0.035, 0.05), rng.uniform(0.015, 0.022)],
        pos=[handle_half + 0.01, 0.0, 0.0],
    )
    return [head, capsule(handle_radius, handle_half, quat=QUAT_Z_TO_X)]


def _sample_can(rng: np.random.Generator) -> list[shapes.Primitive]:
    """Upright eight-pointed star prism (the closest box-only shape to a cylinder)."""
    return octagram(rng.uniform(0.022, 0.035), rng.uniform(0.03, 0.06))


def _sample_mug(rng: np.random.Generator) -> list[shapes.Primitive]:
    """Star-prism body with a `>`-shaped handle of two capsules enclosing a hole at +x."""
    half_width, half_height = rng.uniform(0.025, 0.035), rng.uniform(0.03, 0.045)
    radius, clearance = rng.uniform(0.005, 0.008), rng.uniform(0.012, 0.022)
    # The arms start inside the body wall and meet outside the star's point on the +x axis.
    apex = [half_width * np.sqrt(2.0) + clearance, 0.0, 0.0]
    top, bottom = [half_width, 0.0, 0.6 * half_height], [half_width, 0.0, -0.6 * half_height]
    return [
        *octagram(half_width, half_height),
        capsule_between(top, apex, radius),
        capsule_between(apex, bottom, radius),
    ]


def _sample_cross(rng: np.random.Generator) -> list[shapes.Primitive]:
    """Two flat bars crossing at right angles, the second anywhere along the first."""
    long_half, cross_half = rng.uniform(0.04, 0.07), rng.uniform(0.03, 0.06)
    width, cross_width = rng.uniform(0.01, 0.02), rng.uniform(0.01, 0.02)
    thick = rng.uniform(0.008, 0.018)
    offset = rng.uniform(-0.5, 0.5) * (long_half - cross_width)
    return [
        box([long_half, width, thick]),
        box([cross_width, cross_half, thick], pos=[offset, 0.0, 0.0]),
    ]


def _sample_ball(rng: np.random.Generator) -> list[shapes.Primitive]:
    radius = rng.uniform(0.03, 0.075)
    return [capsule(radius, _BALL_HALF_LENGTH_RATIO * radius)]


def _sample_pill(rng: np.random.Generator) -> list[shapes.Primitive]:
    """A capsule lying along x."""
    return [capsule(rng.uniform(0.012, 0.025), rng.uniform(0.02, 0.05), quat=QUAT_Z_TO_X)]


_SAMPLERS: dict[str, Callable[[np.random.Generator], list[shapes.Primitive]]] = {
    "bottle": _sample_bottle,
    "box": _sample_box,
    "can": _sample_can,
    "mug": _sample_mug,
    "hammer": _sample_hammer,
    "l_shape": _sample_l_shape,
    "cross": _sample_cross,
    "t_shape": _sample_t_shape,
    "ball": _sample_ball,
    "pill": _sample_pill,
}
FAMILIES = tuple(_SAMPLERS)


def sample_primitives(family: str, rng: np.random.Generator) -> list[shapes.Primitive]:
    """Draws the primitives of one object of a family, at its natural size.

    Args:
        family: One of FAMILIES.
        rng: Numpy generator that decides the sizes.

    Returns:
        The primitives, in the family's own frame.
    """
    if family not in _SAMPLERS:
        raise ValueError(f"Unknown object family {family!r}; valid: {', '.join(FAMILIES)}")
    return _SAMPLERS[family](rng)


def make_object(
    family: str, rng: np.random.Generator, name: str, slot_kinds: Sequence[str]
) -> ObjectSpec:
    """Samples one object of a family at its natural size; the frame is its bounding-box centre.

    Args:
        family: One of FAMILIES.
        rng: Numpy generator that decides the sizes.
        name: The object's name.
        slot_kinds: Geom type of each slot, e.g. object_library.ROBOT_SLOTS.

    Returns:
        The object.
    """
    slots = fill_slots(sample_primitives(family, rng), slot_kinds, family)
    return ObjectSpec(name, family, centre(slots))


def make_object_set(
    families: Sequence[str], num_objects: int, seed: int, slot_kinds: Sequence[str]
) -> list[ObjectSpec]:
    """Samples `num_objects` objects at natural size, cycling through `families`.

    Args:
        families: Family names, used in turn.
        num_objects: Number of objects.
        seed: Seed of the one generator all objects are drawn from, in order.
        slot_kinds: Geom type of each slot.

    Returns:
        The objects, named `<family>_<index>`.
    """
    rng = np.random.default_rng(seed)
    return [
        make_object(
            families[i % len(families)], rng, f"{families[i % len(families)]}_{i}", slot_kinds
        )
        for i in range(num_objects)
    ]
