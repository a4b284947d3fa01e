"""The object library: training and held-out splits, YCB stand-ins, stacked arrays and a cache.

The paper trains on 3,200 UniDexGrasp meshes (scales 0.06 to 0.15 m); that set is not
available, so objects here are rigid compounds of boxes and capsules from the shape families
of `object_families` (SPEC section 3), each in the fixed slot layout `ROBOT_SLOTS` so that a
batch of them shares geom types (the wrench task keeps its own three-slot layout).

Split (why these families and sizes are held out):
    * `TRAIN_FAMILIES` (7): bottle, box, can, mug, hammer, l_shape, cross, with the largest
      bounding-box extent in `TRAIN_EXTENT_RANGE` (0.075 to 0.13 m).
    * `UNSEEN_FAMILIES` (3): t_shape, ball, pill. Each is built from the same primitives as
      a training family but in an arrangement training never shows: a bar joined mid-stem
      (l_shape joins at an end, cross at the middle of both bars), a body round in every
      direction, and a lying capsule without the bottle's neck. They appear at any size in
      `EXTENT_RANGE` (the paper's 0.06 to 0.15 m).
    * The unseen split also holds the training families at the sizes training never sees:
      the smallest band [0.06, 0.075) and the largest [0.13, 0.15) m.
    Stages 1 and 2 train on `families=("bottle",)` only (SPEC section 3).

Masses: density is uniform in `DENSITY_RANGE` (300 to 900 kg/m^3, hollow plastic to solid
wood) per object, then changed where needed to bring the mass into `MASS_RANGE` (0.02 to
0.6 kg); volume, centre of mass and inertia are those of the union of the primitives, overlaps
counted once (`inertia.mass_properties`). YCB stand-ins take their listed masses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence

import numpy as np

from dex4d_jax import inertia, object_families, shapes

ROBOT_SLOTS = ("box", "box", "capsule", "capsule")
TRAIN_FAMILIES = ("bottle", "box", "can", "mug", "hammer", "l_shape", "cross")
UNSEEN_FAMILIES = ("t_shape", "ball", "pill")
# Family ids index this tuple in both splits, so ids agree between libraries.
FAMILIES = object_families.FAMILIES
SPLITS = ("train", "unseen")
# Largest bounding-box extent of an object, metres (the paper's object scales).
EXTENT_RANGE = (0.06, 0.15)
TRAIN_EXTENT_RANGE = (0.075, 0.13)
# Uniform density per object, kg/m^3.
DENSITY_RANGE = (300.0, 900.0)
# Mass bounds, kg: a large solid block would outweigh what the LEAP hand's 0.5 N m servos can
# lift (a 13 cm cube at 900 kg/m^3 is 2 kg), so heavier objects take the density that gives
# MAX_MASS; the lightest hollow shapes go up to MIN_MASS. YCB's mustard bottle is 0.6 kg.
MASS_RANGE = (0.02, 0.6)
NUM_KEYPOINTS = 128
# Dense surface samples fed to farthest point sampling, as the authors' code does.
NUM_SURFACE_SAMPLES = 10_000
DEFAULT_NUM_OBJECTS = 1024
# Bump when anything that changes built objects changes; it keys the cache.
LIBRARY_VERSION = 2

_SPLIT_IDS = {"train": 0, "unseen": 1}
_QUAT_ID = np.array([1.0, 0.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------------
# The library: stacked arrays of a fixed slot layout.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObjectLibrary:
    """Objects stacked into arrays over a fixed slot layout (N objects, S slots).

    Attributes:
        names: [N] str object names.
        family_ids: [N] int32 index into `family_names`.
        family_names: The family names.
        slot_kinds: [S] geom type of each slot (ROBOT_SLOTS).
        present: [N, S] bool, whether the object uses the slot.
        size: [N, S, 3] MuJoCo geom size (box half extents; capsule radius, half-length, 0);
            zero in unused slots.
        pos: [N, S, 3] geom position, object frame.
        quat: [N, S, 4] geom orientation (wxyz), object frame; identity in unused slots.
        mass: [N] kg.
        com: [N, 3] centre of mass, object frame.
        inertia: [N, 3] principal moments, kg m^2.
        iquat: [N, 4] wxyz rotation from the object frame to the principal axes.
        keypoints: [N, 128, 3] float32 farthest-point samples of the outer surface, object frame.
    """

    names: np.ndarray
    family_ids: np.ndarray
    family_names: tuple[str, ...]
    slot_kinds: tuple[str, ...]
    present: np.ndarray
    size: np.ndarray
    pos: np.ndarray
    quat: np.ndarray
    mass: np.ndarray
    com: np.ndarray
    inertia: np.ndarray
    iquat: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        """Number of objects."""
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> ObjectLibrary:
        """The library of objects `indices`, in that order."""
        indices = np.asarray(indices, int)
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name)[indices] for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)})

    def find(self, name_or_index: str) -> int:
        """The index of an object given by name, or by its index written as digits.

        Raises KeyError naming the valid choices (all names, or a range for a large library).
        """
        names = [str(n) for n in self.names]
        if name_or_index in names:
            return names.index(name_or_index)
        if name_or_index.isdigit() and int(name_or_index) < len(names):
            return int(name_or_index)
        shown = ", ".join(names) if len(names) <= 12 else f"0-{len(names) - 1} or {names[0]}, ..."
        raise KeyError(f"no object {name_or_index!r}; choose {shown}")

    def spec(self, index: int) -> object_families.ObjectSpec:
        """Object `index` as primitives in its slots (None for unused slots)."""
        slots = []
        for s, kind in enumerate(self.slot_kinds):
            if not self.present[index, s]:
                slots.append(None)
                continue
            size = self.size[index, s, : 3 if kind == "box" else 2]
            slots.append(shapes.Primitive(kind, size, self.pos[index, s], self.quat[index, s]))
        family = self.family_names[self.family_ids[index]]
        return object_families.ObjectSpec(str(self.names[index]), family, tuple(slots))


def _stack(
    objects: Sequence[tuple[object_families.ObjectSpec, inertia.MassProperties, np.ndarray]],
    family_names: Sequence[str],
) -> ObjectLibrary:
    """Stacks (spec, mass properties, keypoints) triples into an ObjectLibrary."""
    num, num_slots = len(objects), len(ROBOT_SLOTS)
    size, pos = np.zeros((num, num_slots, 3)), np.zeros((num, num_slots, 3))
    quat = np.tile(_QUAT_ID, (num, num_slots, 1))
    present = np.zeros((num, num_slots), bool)
    for i, (spec, _, _) in enumerate(objects):
        for s, p in enumerate(spec.slots):
            if p is not None:
                present[i, s] = True
                size[i, s, : len(p.size)] = p.size
                pos[i, s], quat[i, s] = p.pos, p.quat
    return ObjectLibrary(
        names=np.array([spec.name for spec, _, _ in objects]),
        family_ids=np.array([family_names.index(spec.family) for spec, _, _ in objects], np.int32),
        family_names=tuple(family_names),
        slot_kinds=ROBOT_SLOTS,
        present=present,
        size=size,
        pos=pos,
        quat=quat,
        mass=np.array([props.mass for _, props, _ in objects]),
        com=np.stack([props.com for _, props, _ in objects]),
        inertia=np.stack([props.inertia for _, props, _ in objects]),
        iquat=np.stack([props.iquat for _, props, _ in objects]),
        keypoints=np.stack([kp for _, _, kp in objects]).astype(np.float32),
    )


def _sample_extent(split: str, family: str, rng: np.random.Generator) -> float:
    """Largest bounding-box extent of an object: the training band, or the held-out sizes."""
    if split == "train":
        return float(rng.uniform(*TRAIN_EXTENT_RANGE))
    if family in UNSEEN_FAMILIES:
        return float(rng.uniform(*EXTENT_RANGE))
    # Training families only at the held-out sizes: below and above the training band.
    small = TRAIN_EXTENT_RANGE[0] - EXTENT_RANGE[0]
    draw = rng.uniform(0.0, small + EXTENT_RANGE[1] - TRAIN_EXTENT_RANGE[1])
    return float(EXTENT_RANGE[0] + draw if draw < small else TRAIN_EXTENT_RANGE[1] + draw - small)


def _library_object(
    split: str, family: str, seed: int, index: int
) -> tuple[object_families.ObjectSpec, inertia.MassProperties, np.ndarray]:
    """Object `index` of a split, drawn from its own generator so it depends on nothing else."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    primitives = object_families.sample_primitives(family, rng)
    low, high = shapes.bounding_box(primitives)
    primitives = object_families.scaled(
        primitives, _sample_extent(split, family, rng) / np.max(high - low)
    )
    slots = object_families.fill_slots(primitives, ROBOT_SLOTS, family)
    spec = object_families.ObjectSpec(f"{family}_{index}", family, object_families.centre(slots))
    props = inertia.mass_properties(spec.primitives, rng.uniform(*DENSITY_RANGE))
    props = props.with_mass(float(np.clip(props.mass, *MASS_RANGE)))
    keypoints = shapes.object_keypoints(
        spec.primitives, NUM_KEYPOINTS, NUM_SURFACE_SAMPLES, seed=int(rng.integers(2**31))
    )
    return spec, props, keypoints


def _split_families(split: str, families: Sequence[str] | None) -> tuple[str, ...]:
    """Validated families of a split (its default when None)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid: {', '.join(SPLITS)}")
    allowed = TRAIN_FAMILIES if split == "train" else FAMILIES
    if families is None:
        return allowed
    families = tuple(families)
    bad = [f for f in families if f not in allowed]
    if bad or not families:
        raise ValueError(
            f"Families {bad or '()'} are not in the {split} split; valid: {', '.join(allowed)}"
        )
    return families


def build_library(
    split: str = "train",
    num_objects: int = DEFAULT_NUM_OBJECTS,
    seed: int = 0,
    families: Sequence[str] | None = None,
) -> ObjectLibrary:
    """Builds a split of the procedural library, deterministically for a seed.

    Object `i` belongs to family `families[i % len(families)]`, so families are balanced.

    Args:
        split: "train" or "unseen" (see the module docstring).
        num_objects: Number of objects N.
        seed: Seed; each object draws from its own generator keyed by (seed, split, index).
        families: Families to use (default: all of the split's); training accepts only
            TRAIN_FAMILIES.

    Returns:
        The library, with `family_names == FAMILIES`.
    """
    families = _split_families(split, families)
    if num_objects < 1:
        raise ValueError(f"num_objects must be positive, got {num_objects}")
    objects = [
        _library_object(split, families[i % len(families)], seed, i) for i in range(num_objects)
    ]
    return _stack(objects, FAMILIES)


# ----------------------------------------------------------------------------------------------
# Cache.
# ----------------------------------------------------------------------------------------------


def _cache_path(
    split: str, num_objects: int, seed: int, families: tuple[str, ...], cache_dir: str | None
) -> str:
    directory = (
        cache_dir
        or os.environ.get("DEX4D_OBJECT_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "dex4d_jax", "objects")
    )
    tag = hashlib.sha1("+".join(families).encode()).hexdigest()[:10]
    return os.path.join(directory, f"{split}_n{num_objects}_s{seed}_f{tag}_v{LIBRARY_VERSION}.npz")


def _save(library: ObjectLibrary, path: str) -> None:
    """Writes the library as a compressed .npz, atomically (write then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f.name: np.asarray(getattr(library, f.name)) for f in dataclasses.fields(library)}
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(partial, path)


def _load(path: str, num_objects: int) -> ObjectLibrary:
    """Reads a library written by `_save`; raises ValueError if it is incomplete."""
    with np.load(path, allow_pickle=False) as data:
        fields = {f.name: data[f.name] for f in dataclasses.fields(ObjectLibrary)}
    for name in ("family_names", "slot_kinds"):
        fields[name] = tuple(str(v) for v in fields[name])
    library = ObjectLibrary(**fields)
    shapes_ok = (
        len(library) == num_objects
        and library.slot_kinds == ROBOT_SLOTS
        and library.keypoints.shape == (num_objects, NUM_KEYPOINTS, 3)
        and all(
            getattr(library, name).shape[0] == num_objects
            for name in (
                "present",
                "size",
                "pos",
                "quat",
                "mass",
                "com",
                "inertia",
                "iquat",
                "family_ids",
            )
        )
    )
    if not shapes_ok:
        raise ValueError("array shapes do not match the requested library")
    return library


def load_library(
    split: str = "train",
    num_objects: int = DEFAULT_NUM_OBJECTS,
    seed: int = 0,
    families: Sequence[str] | None = None,
    cache_dir: str | None = None,
) -> ObjectLibrary:
    """`build_library`, cached as a compressed .npz.

    The cache lives in `cache_dir`, else $DEX4D_OBJECT_CACHE, else ~/.cache/dex4d_jax/objects,
    keyed by split, size, seed, families and LIBRARY_VERSION. A missing file is built and
    written; an unreadable one is reported with a warning and rebuilt.

    Args:
        split: "train" or "unseen".
        num_objects: Number of objects.
        seed: Seed.
        families: Families (default: the split's).
        cache_dir: Cache directory override.

    Returns:
        The library, identical to `build_library` with the same arguments.
    """
    families = _split_families(split, families)
    path = _cache_path(split, num_objects, seed, families, cache_dir)
    if os.path.exists(path):
        try:
            return _load(path, num_objects)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(
                f"Object library cache {path} is unreadable ({err}); rebuilding it.", stacklevel=2
            )
    library = build_library(split, num_objects, seed, families)
    try:
        _save(library, path)
    except OSError as err:
        warnings.warn(f"Could not write the object library cache {path}: {err}", stacklevel=2)
    return library


# ----------------------------------------------------------------------------------------------
# YCB evaluation objects (SPEC section 7), never seen in training.
# ----------------------------------------------------------------------------------------------

# Dimensions (m) and masses (kg) from shared/robot_facts/ycb_objects.json. Masses are the YCB
# paper's (Calli et al. 2015). UNVERIFIED there: apple (75 mm across, 70 mm tall), sponge
# (72 x 114 x 14 mm) and the stacking cups (top diameter ~55 mm for cup a to ~100 mm for cup j
# in ~5 mm steps, heights ~60 to 80 mm, interpolated linearly here over a..j); they are recalled
# figures that were not checked against the meshes.
_CUP_LETTERS = "abcdefghij"


def _ycb_apple() -> list[shapes.Primitive]:
    """Two crossed lying capsules: 75 mm across in x and y, 70 mm tall."""
    radius, half_length = 0.035, 0.0025
    return [
        object_families.capsule(radius, half_length, quat=object_families.QUAT_Z_TO_X),
        object_families.capsule(radius, half_length, quat=object_families.QUAT_Z_TO_Y),
    ]


def _ycb_mug() -> list[shapes.Primitive]:
    """Solid star-prism body (flare radius 46.6 mm, 81.4 mm tall) and a two-capsule handle.

    The handle spans 41 to 71 mm from the axis and 14.5 to 68.5 mm above the base, as listed;
    the inside of the mug is filled (no cavity fits in four slots).
    """
    height, flare, radius = 0.0814, 0.0466, 0.005
    body = object_families.octagram(flare / np.sqrt(2.0), height / 2.0, z=height / 2.0)
    top, apex, bottom = [0.040, 0.0, 0.0635], [0.066, 0.0, 0.0415], [0.040, 0.0, 0.0195]
    return [
        *body,
        object_families.capsule_between(top, apex, radius),
        object_families.capsule_between(apex, bottom, radius),
    ]


def _ycb_hammer() -> list[shapes.Primitive]:
    """Lying along x, head at -x: head and claw boxes, capsule handle; 335 x 127 x 33 mm."""
    head = object_families.box([0.02, 0.063, 0.0165], pos=[-0.145, 0.0, 0.0])
    claw = object_families.box([0.02, 0.012, 0.0165], pos=[-0.115, 0.05, 0.0])
    start, end = -0.12, 0.3353 - 0.165 - 0.015
    handle = object_families.capsule(
        0.015,
        0.5 * (end - start),
        pos=[0.5 * (start + end), 0.0, 0.0],
        quat=object_families.QUAT_Z_TO_X,
    )
    return [head, claw, handle]


def _ycb_cup(letter: str) -> list[shapes.Primitive]:
    """A solid star prism as wide as the cup's top; the taper and the opening are not modelled."""
    step = _CUP_LETTERS.index(letter)
    top_diameter, height = 0.055 + 0.005 * step, 0.06 + 0.02 * step / 9.0
    return object_families.octagram(top_diameter / (2.0 * np.sqrt(2.0)), height / 2.0)


def _ycb_plate() -> list[shapes.Primitive]:
    """Solid star slab 258 mm across and 24 mm thick; the dish's hollow is not modelled."""
    return object_families.octagram(0.258 / (2.0 * np.sqrt(2.0)), 0.012)


def _ycb_bowl() -> list[shapes.Primitive]:
    """Star slab (161 mm across, top 22 mm) on a foot of two crossed lying capsules.

    Wide at the rim and narrow at the base like the bowl (base ~80 mm across) but solid: an
    object put "into" it rests on its top, 55 mm up.
    """
    height, foot_radius = 0.055, 0.0175
    rim = object_families.octagram(0.1614 / (2.0 * np.sqrt(2.0)), 0.011, z=height - 0.011)
    foot = [0.0, 0.0, foot_radius]
    return [
        *rim,
        object_families.capsule(foot_radius, 0.03, foot, object_families.QUAT_Z_TO_X),
        object_families.capsule(foot_radius, 0.03, foot, object_families.QUAT_Z_TO_Y),
    ]


# name -> (primitives, mass in kg).
_YCB_OBJECTS: dict[str, tuple[Callable[[], list[shapes.Primitive]], float]] = {
    "apple": (_ycb_apple, 0.068),
    "mug": (_ycb_mug, 0.118),
    "hammer": (_ycb_hammer, 0.665),
    "cup_e": (lambda: _ycb_cup("e"), 0.021),
    "cup_g": (lambda: _ycb_cup("g"), 0.028),
    "foam_brick": (lambda: [object_families.box([0.0255, 0.026, 0.039])], 0.028),
    "sponge": (lambda: [object_families.box([0.036, 0.057, 0.007])], 0.0062),
    "plate": (_ycb_plate, 0.279),
    "bowl": (_ycb_bowl, 0.147),
}
YCB_NAMES = tuple(_YCB_OBJECTS)


def ycb_primitives(name: str) -> list[shapes.Primitive]:
    """The primitives of YCB stand-in `name` (one of YCB_NAMES), before slot filling and
    centring; the benchmark's fixed items (plate, bowl, cup) are built from them.

    Raises:
      ValueError: an unknown name.
    """
    if name not in _YCB_OBJECTS:
        raise ValueError(f"Unknown YCB stand-in {name!r}; valid: {', '.join(YCB_NAMES)}")
    return _YCB_OBJECTS[name][0]()


def ycb_objects() -> ObjectLibrary:
    """Primitive stand-ins for the YCB objects of the six evaluation tasks (SPEC section 7).

    Apple2Plate (apple, plate), Pour (mug), Hammer (hammer), StackCup (cup e is picked up and
    stacked on the larger cup g), RotateBox (foam brick), Sponge2Bowl (sponge, bowl). Each
    object is its own family; sizes follow the YCB dimensions, masses the YCB masses, density is
    uniform over the primitives (the real hammer's mass sits nearer its head). Concave objects
    (mug, cups, plate, bowl) are solid: four slots of boxes and capsules cannot hold a cavity.

    Returns:
        The library in ROBOT_SLOTS, so it batches with the procedural objects.
    """
    objects = []
    for index, (name, (make_fn, mass)) in enumerate(_YCB_OBJECTS.items()):
        slots = object_families.fill_slots(make_fn(), ROBOT_SLOTS, name)
        spec = object_families.ObjectSpec(name, name, object_families.centre(slots))
        props = inertia.mass_properties(spec.primitives, 1.0).with_mass(mass)
        keypoints = shapes.object_keypoints(
            spec.primitives, NUM_KEYPOINTS, NUM_SURFACE_SAMPLES, seed=index
        )
        objects.append((spec, props, keypoints))
    return _stack(objects, YCB_NAMES)


def family_table(library: ObjectLibrary) -> str:
    """A text table, one line per family present: object count, range of largest extents (mm,
    of the primitives' bounding box) and of masses (g), then the total count."""
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
