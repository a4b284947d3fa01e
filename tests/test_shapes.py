"""Object shapes (numpy): primitive areas, surface samples and compound-surface keypoints."""

import numpy as np
import pytest

from dex4d_jax import shapes


def test_box_surface_samples_lie_on_faces_with_area_weights():
    box = shapes.Primitive("box", np.array([0.1, 0.2, 0.3]))
    assert shapes.primitive_area(box) == pytest.approx(8 * (0.02 + 0.03 + 0.06))
    pts = shapes.sample_primitive_surface(box, 20000, np.random.default_rng(0))
    on_face = np.isclose(np.abs(pts), box.size, atol=1e-6)
    assert np.all(on_face.any(axis=1)) and np.all(np.abs(pts) <= box.size + 1e-6)
    # Faces normal to x have area 0.2*0.3*4... the share of samples follows the face areas.
    share_x = on_face[:, 0].mean()
    assert share_x == pytest.approx(0.06 / 0.11, abs=0.02)


def test_compound_keypoints_are_on_the_outer_surface():
    a = shapes.Primitive("box", np.array([0.05, 0.02, 0.02]))
    b = shapes.Primitive("capsule", np.array([0.015, 0.04]), pos=np.array([0.05, 0.0, 0.0]))
    kp = shapes.object_keypoints([a, b], num_points=128, num_samples=3000, seed=1)
    assert kp.shape == (128, 3)
    for p in (a, b):
        # No keypoint is buried inside any primitive (deeper than 0.1 mm).
        assert not np.any(shapes.point_inside_primitive(p, kp, margin=1e-4))
    np.testing.assert_array_equal(kp, shapes.object_keypoints([a, b], 128, 3000, seed=1))
