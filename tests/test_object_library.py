"""The object library: exact mass properties, surface keypoints, splits, cache, YCB sizes, sheet."""

import dataclasses
import glob
import warnings

import mujoco
import numpy as np
import pytest
from PIL import Image

from dex4d_jax import inertia, object_families, object_library, rotations, shapes

from helpers import run_cli, run_headless, skip_without_gl

_TILTED = np.array([0.9, 0.2, 0.3, 0.1]) / np.linalg.norm([0.9, 0.2, 0.3, 0.1])
# Listed YCB dimensions (m) from shared/robot_facts/ycb_objects.json, in each stand-in's frame:
# x, y, z. The cups are the linear interpolation of the recalled (unverified) cup a..j figures.
_YCB_DIMENSIONS = {
    "apple": (0.075, 0.075, 0.07),
    "mug": (0.117, 0.0931, 0.0814),
    "hammer": (0.3353, 0.1266, 0.0331),  # oriented bounding box, lying with its head at -x
    "cup_e": (0.075, 0.075, 0.06 + 0.02 * 4 / 9),
    "cup_g": (0.085, 0.085, 0.06 + 0.02 * 6 / 9),
    "foam_brick": (0.051, 0.052, 0.078),
    "sponge": (0.072, 0.114, 0.014),
    "plate": (0.258, 0.258, 0.024),
    "bowl": (0.1614, 0.1611, 0.055),
}
_YCB_MASSES = {
    "apple": 0.068,
    "mug": 0.118,
    "hammer": 0.665,
    "cup_e": 0.021,
    "cup_g": 0.028,
    "foam_brick": 0.028,
    "sponge": 0.0062,
    "plate": 0.279,
    "bowl": 0.147,
}


def _box(half, pos=(0.0, 0.0, 0.0), quat=(1.0, 0.0, 0.0, 0.0)):
    return shapes.Primitive("box", np.asarray(half), np.asarray(pos), np.asarray(quat))


def _tensor(props: inertia.MassProperties) -> np.ndarray:
    """Full inertia tensor [3, 3] in the object frame from principal moments and iquat."""
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, props.iquat)
    rot = rot.reshape(3, 3)
    return rot @ np.diag(props.inertia) @ rot.T


def _extent(spec: object_families.ObjectSpec) -> np.ndarray:
    low, high = shapes.bounding_box(spec.primitives)
    return high - low


@pytest.fixture(scope="module")
def small_train():
    return object_library.build_library("train", num_objects=14, seed=0)


@pytest.fixture(scope="module")
def small_unseen():
    return object_library.build_library("unseen", num_objects=30, seed=0)


@pytest.fixture(scope="module")
def ycb():
    return object_library.ycb_objects()


def test_tilted_box_mass_properties_match_the_formula():
    half, density = np.array([0.03, 0.02, 0.05]), 500.0
    props = inertia.mass_properties([_box(half, [0.01, -0.02, 0.03], _TILTED)], density)
    # m = rho * 8 abc = 500 * 8 * 0.03 * 0.02 * 0.05 = 0.12 kg; I_x = m (b^2 + c^2) / 3, ...
    mass = density * 8.0 * np.prod(half)
    expected = (
        mass
        / 3.0
        * np.array(
            [half[1] ** 2 + half[2] ** 2, half[0] ** 2 + half[2] ** 2, half[0] ** 2 + half[1] ** 2]
        )
    )
    np.testing.assert_allclose(props.mass, 0.12, rtol=1e-12)
    np.testing.assert_allclose(props.com, [0.01, -0.02, 0.03], atol=1e-12)
    rot = rotations.quat_to_matrix(_TILTED)
    np.testing.assert_allclose(
        _tensor(props), rot @ np.diag(expected) @ rot.T, rtol=1e-9, atol=1e-15
    )


def test_overlapping_boxes_count_the_overlap_once():
    # Two 60 x 40 x 40 mm boxes 30 mm apart along x are one 90 x 40 x 40 mm box at x = 15 mm.
    pair = [_box([0.03, 0.02, 0.02]), _box([0.03, 0.02, 0.02], [0.03, 0.0, 0.0])]
    union = inertia.mass_properties([_box([0.045, 0.02, 0.02], [0.015, 0.0, 0.0])], 700.0)
    props = inertia.mass_properties(pair, 700.0)
    np.testing.assert_allclose(props.mass, union.mass, rtol=1e-9)
    np.testing.assert_allclose(props.com, union.com, atol=1e-12)
    np.testing.assert_allclose(_tensor(props), _tensor(union), rtol=1e-9, atol=1e-15)
    # Two squares of half-width a turned 45 degrees apart make an eight-pointed star: twice the
    # square minus the regular octagon of inradius a, 8 a^2 (sqrt 2 - 1), so 8 a^2 (2 - sqrt 2).
    a, half_height = 0.03, 0.04
    star = inertia.mass_properties(
        [
            _box([a, a, half_height]),
            _box([a, a, half_height], quat=[np.cos(np.pi / 8), 0.0, 0.0, np.sin(np.pi / 8)]),
        ],
        1.0,
    )
    np.testing.assert_allclose(
        star.volume, 8 * a**2 * (2 - np.sqrt(2)) * 2 * half_height, rtol=0.01
    )


@pytest.mark.parametrize("radius,half_length", [(0.02, 0.05), (0.04, 0.04e-3)])
def test_capsule_and_ball_match_mujoco(radius, half_length):
    capsule = shapes.Primitive(
        "capsule", np.array([radius, half_length]), np.array([0.01, 0.0, -0.02]), _TILTED
    )
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body()
    body.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=[radius, half_length, 0.0],
        pos=capsule.pos,
        quat=capsule.quat,
        density=400.0,
    )
    model = spec.compile()
    props = inertia.mass_properties([capsule], 400.0)
    np.testing.assert_allclose(props.mass, model.body_mass[1], rtol=1e-9)
    np.testing.assert_allclose(props.com, model.body_ipos[1], atol=1e-12)
    np.testing.assert_allclose(np.sort(props.inertia), np.sort(model.body_inertia[1]), rtol=1e-6)


def test_same_seed_same_library_other_seed_differs(small_train):
    again = object_library.build_library("train", num_objects=14, seed=0)
    other = object_library.build_library("train", num_objects=14, seed=1)
    for field in dataclasses.fields(small_train):
        np.testing.assert_array_equal(getattr(again, field.name), getattr(small_train, field.name))
    assert not np.array_equal(other.size, small_train.size)
    assert not np.array_equal(other.keypoints, small_train.keypoints)


def test_default_train_library_has_1024_distinct_physical_objects():
    library = object_library.build_library()
    assert len(library) == 1024 >= 1000
    families = {library.family_names[i] for i in library.family_ids}
    assert families == set(object_library.TRAIN_FAMILIES) and "bottle" in families
    geometry_rows = np.concatenate([library.size, library.pos], axis=-1).reshape(len(library), -1)
    assert len(np.unique(geometry_rows.round(9), axis=0)) == len(library)
    # Principal moments: positive and triangle inequality (what MuJoCo requires).
    moments = np.sort(library.inertia, axis=-1)
    assert np.all(moments > 0.0) and np.all(moments[:, 0] + moments[:, 1] >= moments[:, 2])
    assert library.keypoints.shape == (1024, 128, 3) and library.keypoints.dtype == np.float32
    extents = np.array([_extent(library.spec(i)).max() for i in range(len(library))])
    low, high = object_library.TRAIN_EXTENT_RANGE
    assert np.all((extents >= low - 1e-12) & (extents < high + 1e-12))


def test_unseen_split_holds_out_families_and_sizes(small_train, small_unseen):
    train, unseen = set(object_library.TRAIN_FAMILIES), set(object_library.UNSEEN_FAMILIES)
    assert not train & unseen and train | unseen == set(object_families.FAMILIES)
    train_families = {small_train.family_names[i] for i in small_train.family_ids}
    assert not train_families & set(object_library.UNSEEN_FAMILIES)
    low, high = object_library.TRAIN_EXTENT_RANGE
    seen_unseen_families = set()
    for i in range(len(small_unseen)):
        spec = small_unseen.spec(i)
        extent = _extent(spec).max()
        assert object_library.EXTENT_RANGE[0] - 1e-12 <= extent <= object_library.EXTENT_RANGE[1]
        if spec.family in object_library.TRAIN_FAMILIES:
            assert extent < low or extent > high, (spec.name, extent)
        else:
            seen_unseen_families.add(spec.family)
    assert seen_unseen_families == set(object_library.UNSEEN_FAMILIES)
    with pytest.raises(ValueError, match="not in the train split"):
        object_library.build_library("train", num_objects=2, families=("ball",))
    bottles = object_library.build_library("train", num_objects=3, families=("bottle",))
    assert {bottles.spec(i).family for i in range(3)} == {"bottle"}


def test_keypoints_lie_on_the_outer_surface(small_train, small_unseen, ycb):
    for library in (small_train, small_unseen, ycb):
        for i in range(len(library)):
            spec = library.spec(i)
            points = library.keypoints[i].astype(np.float64)
            # On the surface of some primitive (within 10 um), inside none by more than 0.1 mm.
            on_some = np.zeros(len(points), bool)
            for p in spec.primitives:
                assert not shapes.point_inside_primitive(p, points, margin=1e-4).any(), spec.name
                on_some |= shapes.point_inside_primitive(p, points, margin=-1e-5)
            assert on_some.all(), spec.name
            assert len(np.unique(points, axis=0)) == object_library.NUM_KEYPOINTS


def test_object_frame_is_the_bounding_box_centre(small_train, small_unseen, ycb):
    for library in (small_train, small_unseen, ycb):
        for i in range(len(library)):
            low, high = shapes.bounding_box(library.spec(i).primitives)
            np.testing.assert_allclose(low + high, 0.0, atol=1e-12)


def test_mass_properties_are_in_range_and_accepted_by_mujoco(small_train, ycb):
    for library in (small_train, ycb):
        for i in range(len(library)):
            spec = mujoco.MjSpec()
            body = spec.worldbody.add_body(
                mass=library.mass[i],
                ipos=library.com[i],
                inertia=library.inertia[i],
                iquat=library.iquat[i],
                explicitinertial=True,
            )
            body.add_freejoint()
            model = spec.compile()  # Rejects non-positive or triangle-violating inertia.
            np.testing.assert_allclose(model.body_inertia[1], library.inertia[i], rtol=1e-9)
    low, high = object_library.MASS_RANGE
    for i in range(len(small_train)):
        volume = inertia.mass_properties(small_train.spec(i).primitives, 1.0).volume
        density = small_train.mass[i] / volume
        # The density is drawn from DENSITY_RANGE unless that would leave MASS_RANGE.
        assert low - 1e-9 <= small_train.mass[i] <= high + 1e-9
        if low + 1e-9 < small_train.mass[i] < high - 1e-9:
            assert object_library.DENSITY_RANGE[0] <= density <= object_library.DENSITY_RANGE[1]


def test_ycb_stand_ins_match_the_listed_dimensions_and_masses(ycb):
    assert tuple(str(n) for n in ycb.names) == tuple(_YCB_DIMENSIONS)
    assert ycb.slot_kinds == object_library.ROBOT_SLOTS
    for i, name in enumerate(_YCB_DIMENSIONS):
        np.testing.assert_allclose(
            _extent(ycb.spec(i)), _YCB_DIMENSIONS[name], atol=0.003, err_msg=name
        )
        np.testing.assert_allclose(ycb.mass[i], _YCB_MASSES[name], rtol=1e-12)


def test_load_library_caches_and_rebuilds_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DEX4D_OBJECT_CACHE", str(tmp_path))
    built = object_library.load_library("unseen", num_objects=4, seed=2)
    (path,) = glob.glob(str(tmp_path / "*.npz"))
    cached = object_library.load_library("unseen", num_objects=4, seed=2)
    for field in dataclasses.fields(built):
        np.testing.assert_array_equal(getattr(cached, field.name), getattr(built, field.name))
    with open(path, "wb") as f:
        f.write(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        rebuilt = object_library.load_library("unseen", num_objects=4, seed=2)
    np.testing.assert_array_equal(rebuilt.keypoints, built.keypoints)
    with warnings.catch_warnings():  # The rebuilt file is whole again.
        warnings.simplefilter("error")
        object_library.load_library("unseen", num_objects=4, seed=2)


def test_render_sheet_draws_each_family_colour(tmp_path):
    skip_without_gl()
    out = tmp_path / "sheet.png"
    result = run_headless(
        """
        import sys
        from dex4d_jax import object_library, object_sheet
        library = object_library.build_library("train", num_objects=3, seed=0)
        object_sheet.render_sheet(library, range(3), sys.argv[1], width=320, height=200)
    """,
        str(out),
    )
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (200, 320, 3)
    # The legend swatches carry the exact family colours (bottle, box, can come first).
    for rgb in ((0x4E, 0x79, 0xA7), (0xF2, 0x8E, 0x2B), (0xE1, 0x57, 0x59)):
        assert np.all(image == rgb, axis=-1).any(), rgb


def test_cli_objects_renders_a_sheet(tmp_path):
    skip_without_gl()
    out = tmp_path / "ycb.png"
    result = run_headless(
        """
        import sys
        from dex4d_jax.experiments import cli
        sys.exit(cli.main(["objects", "--split", "ycb", "--show", "9", "--out", sys.argv[1]]))
    """,
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "hammer" in result.stdout and "total" in result.stdout
    assert Image.open(out).size == (1600, 1000)


def test_cli_objects_table_and_clear_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DEX4D_OBJECT_CACHE", str(tmp_path))

    def run(*argv):
        return run_cli(capsys, "objects", *argv)

    code, text = run("--split", "unseen", "--num-objects", "10")
    assert code == 0 and "t_shape" in text and "total" in text
    code, text = run("--show", "0")
    assert code == 2 and "between 1 and 1024" in text
    code, text = run("--split", "ycb", "--show", "10")
    assert code == 2 and "between 1 and 9" in text
    code, text = run("--split", "ycb", "--show", "2", "--out", str(tmp_path / "no" / "x.png"))
    assert code == 2 and "cannot write" in text
    code, text = run("--num-objects", "0")
    assert code == 2 and "positive" in text
