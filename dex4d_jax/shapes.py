"""Object shapes in numpy: primitives, their areas, bounds and surface samples, keypoints.

The offline side of the object code (`object_families`, `inertia`, `object_library`, the
scene builders and the deploy runtime) builds objects from `Primitive`s with these functions,
without JAX. Frames: a primitive's `pos` and `quat` (wxyz) place it in the object frame, and
every point these functions return is in that frame, in metres. The jitted pose math (and
`geometry.farthest_point_sampling`, which `farthest_point_sampling_np` matches index for
index) is in `dex4d_jax.geometry`; rotations come from `dex4d_jax.rotations`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from dex4d_jax import rotations


def farthest_point_sampling_np(
    points: np.ndarray, num_samples: int, start_index: int = 0
) -> np.ndarray:
    """Numpy farthest point sampling matching ``geometry.farthest_point_sampling`` index for index.

    Args:
        points: [N, 3] points.
        num_samples: Number of indices to select.
        start_index: Index of the first selected point.

    Returns:
        [num_samples] int32 indices.
    """
    # float32 throughout so distances (and hence argmax ties) match the JAX version. One
    # contiguous array per coordinate and in-place updates make this ~5x faster than strided
    # columns, with the same sum order ((dx^2 + dy^2) + dz^2) and so the same indices.
    x, y, z = np.ascontiguousarray(np.asarray(points, np.float32).T)
    indices = np.zeros((num_samples,), np.int32)
    if num_samples == 0:
        return indices
    indices[0] = start_index
    min_dist = np.full(x.shape, np.inf, np.float32)
    diff, dist = np.empty_like(x), np.empty_like(x)
    for i in range(1, num_samples):
        last = indices[i - 1]
        np.subtract(x, x[last], out=diff)
        np.multiply(diff, diff, out=dist)
        for coord in (y, z):
            np.subtract(coord, coord[last], out=diff)
            diff *= diff
            dist += diff
        np.minimum(min_dist, dist, out=min_dist)
        indices[i] = int(np.argmax(min_dist))
    return indices


# ----------------------------------------------------------------------------------------------
# Primitive surface sampling (numpy, offline).
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Primitive:
    """A MuJoCo-style geometric primitive.

    Attributes:
        kind: One of "box", "sphere", "capsule".
        size: MuJoCo size: box [3] half-extents; sphere [1] radius; capsule [2] radius and
            half-length of the cylinder along local z.
        pos: [3] position of the primitive frame.
        quat: [4] orientation of the primitive frame (wxyz).
    """

    kind: str
    size: np.ndarray
    pos: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    quat: np.ndarray = dataclasses.field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))

    def __post_init__(self) -> None:
        self.size = np.atleast_1d(np.asarray(self.size, np.float64))
        self.pos = np.asarray(self.pos, np.float64).reshape(3)
        self.quat = np.asarray(self.quat, np.float64).reshape(4)
        expected = {"box": 3, "sphere": 1, "capsule": 2}
        if self.kind not in expected:
            raise ValueError(f"Unknown primitive kind {self.kind!r}.")
        if self.size.shape[0] < expected[self.kind]:
            raise ValueError(f"{self.kind} needs {expected[self.kind]} size values.")


def primitive_area(p: Primitive) -> float:
    """Exact surface area of a primitive.

    Args:
        p: The primitive.

    Returns:
        Surface area.
    """
    if p.kind == "box":
        hx, hy, hz = p.size[:3]
        return float(8.0 * (hx * hy + hy * hz + hz * hx))
    if p.kind == "sphere":
        return float(4.0 * np.pi * p.size[0] ** 2)
    radius, half_length = p.size[:2]
    return float(4.0 * np.pi * radius**2 + 4.0 * np.pi * radius * half_length)


def bounding_box(primitives: Sequence[Primitive]) -> tuple[np.ndarray, np.ndarray]:
    """Exact axis-aligned bounding box of a union of primitives.

    Args:
        primitives: The primitives, in one frame.

    Returns:
        Tuple of the lower and upper corners, [3] each.
    """
    lows, highs = [], []
    for p in primitives:
        rot = rotations.quat_to_matrix(p.quat)
        if p.kind == "box":
            reach = np.abs(rot) @ p.size[:3]
        elif p.kind == "capsule":
            reach = np.abs(rot[:, 2]) * p.size[1] + p.size[0]
        else:  # sphere
            reach = np.full(3, p.size[0])
        lows.append(p.pos - reach)
        highs.append(p.pos + reach)
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _unit_sphere(num: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform samples [num, 3] on the unit sphere."""
    v = rng.normal(size=(num, 3))
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    # A zero Gaussian draw has probability 0, but guard anyway to never emit NaN.
    return np.where(norm > 0.0, v / np.maximum(norm, 1e-300), np.array([0.0, 0.0, 1.0]))


def _sample_local(p: Primitive, num: int, rng: np.random.Generator) -> np.ndarray:
    """Area-uniform surface samples [num, 3] in the primitive's local frame."""
    if p.kind == "box":
        half = p.size[:3]
        # Face pairs normal to x, y, z have areas 4*hy*hz, 4*hx*hz, 4*hx*hy.
        pair_area = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
        face_area = np.repeat(pair_area, 2)  # [+x, -x, +y, -y, +z, -z]
        face = rng.choice(6, size=num, p=face_area / face_area.sum())
        pts = rng.uniform(-1.0, 1.0, size=(num, 3)) * half
        axis = face // 2
        sign = np.where(face % 2 == 0, 1.0, -1.0)
        pts[np.arange(num), axis] = sign * half[axis]
        return pts
    if p.kind == "sphere":
        return _unit_sphere(num, rng) * p.size[0]
    radius, half_length = p.size[:2]
    # Cylinder area 4*pi*r*h vs. the two hemispheres 4*pi*r^2 together.
    on_cylinder = rng.uniform(size=num) < half_length / (half_length + radius)
    theta = rng.uniform(0.0, 2.0 * np.pi, size=num)
    cyl = np.stack(
        [
            radius * np.cos(theta),
            radius * np.sin(theta),
            rng.uniform(-half_length, half_length, size=num),
        ],
        axis=-1,
    )
    # A uniform sphere sample splits evenly into the two hemispheres; shifting each half to its
    # cap keeps the caps area-uniform.
    cap = _unit_sphere(num, rng) * radius
    cap[:, 2] += np.where(cap[:, 2] >= 0.0, half_length, -half_length)
    return np.where(on_cylinder[:, None], cyl, cap)


def sample_primitive_surface(p: Primitive, num: int, rng: np.random.Generator) -> np.ndarray:
    """Samples points uniformly (by area) on a primitive's surface.

    Args:
        p: The primitive.
        num: Number of samples.
        rng: Numpy random generator.

    Returns:
        [num, 3] world-frame surface points.
    """
    local = _sample_local(p, num, rng)
    return local @ rotations.quat_to_matrix(p.quat).T + p.pos


def point_inside_primitive(p: Primitive, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Tests whether points lie strictly inside a primitive by more than ``margin``.

    Args:
        p: The primitive.
        points: [M, 3] world-frame points.
        margin: Required penetration depth.

    Returns:
        [M] boolean mask.
    """
    local = (np.asarray(points, np.float64) - p.pos) @ rotations.quat_to_matrix(p.quat)
    if p.kind == "box":
        return np.all(np.abs(local) < p.size[:3] - margin, axis=-1)
    if p.kind == "sphere":
        return np.linalg.norm(local, axis=-1) < p.size[0] - margin
    radius, half_length = p.size[:2]
    closest = np.zeros_like(local)
    closest[:, 2] = np.clip(local[:, 2], -half_length, half_length)
    return np.linalg.norm(local - closest, axis=-1) < radius - margin


def sample_compound_surface(
    primitives: Sequence[Primitive],
    num: int,
    rng: np.random.Generator,
    margin: float = 1e-4,
) -> np.ndarray:
    """Samples the outer surface of a union of primitives uniformly by area.

    Points are drawn area-weighted over all primitive surfaces and those buried inside another
    primitive are rejected; rejection keeps the remaining density uniform over the outer surface.

    Args:
        primitives: The primitives forming the union.
        num: Number of samples to return.
        rng: Numpy random generator.
        margin: Penetration depth beyond which a point counts as inside another primitive.

    Returns:
        [num, 3] world-frame points on the outer surface.
    """
    primitives = list(primitives)
    if not primitives:
        raise ValueError("Need at least one primitive.")
    areas = np.array([primitive_area(p) for p in primitives])
    probs = areas / areas.sum()
    chunks: list[np.ndarray] = []
    have = 0
    batch = max(num, 64)
    for _ in range(1000):
        counts = rng.multinomial(batch, probs)
        for i, (p, count) in enumerate(zip(primitives, counts)):
            if count == 0:
                continue
            pts = sample_primitive_surface(p, int(count), rng)
            buried = np.zeros(len(pts), bool)
            for j, other in enumerate(primitives):
                if j != i:
                    buried |= point_inside_primitive(other, pts, margin)
            chunks.append(pts[~buried])
            have += int((~buried).sum())
        if have >= num:
            break
        # Oversample in proportion to the observed acceptance rate for the next round.
        accept = max(have / (batch * (len(chunks) > 0) or 1), 0.05)
        batch = int(np.ceil(1.2 * (num - have) / accept)) + 64
    else:
        raise RuntimeError("Could not sample the outer surface; is it fully enclosed?")
    return np.concatenate(chunks, axis=0)[:num]


def object_keypoints(
    primitives: Sequence[Primitive], num_points: int = 128, num_samples: int = 10000, seed: int = 0
) -> np.ndarray:
    """Object keypoints: farthest point samples of the union's outer surface.

    Args:
        primitives: The primitives forming the object (in the object frame).
        num_points: Number of keypoints.
        num_samples: Number of dense surface samples fed to FPS.
        seed: Seed for surface sampling and the FPS start index.

    Returns:
        [num_points, 3] float32 keypoints.
    """
    rng = np.random.default_rng(seed)
    dense = sample_compound_surface(primitives, num_samples, rng).astype(np.float32)
    start = int(rng.integers(num_samples))
    return dense[farthest_point_sampling_np(dense, num_points, start)]


def shape_descriptors(keypoints: np.ndarray) -> np.ndarray:
    """Six numbers per object that describe its shape, in its own frame.

    Args:
      keypoints: [K, P, 3] surface points of K objects (metres, object frame).

    Returns:
      [K, 6] float32: the keypoints' bounding-box extents (x, y, z) and the square roots of
      their covariance's eigenvalues, largest first (the principal spreads, metres).
    """
    extents = keypoints.max(axis=1) - keypoints.min(axis=1)
    centred = keypoints - keypoints.mean(axis=1, keepdims=True)
    cov = np.einsum("kpi,kpj->kij", centred, centred) / keypoints.shape[1]
    spreads = np.sqrt(np.maximum(np.linalg.eigvalsh(cov)[:, ::-1], 0.0))
    return np.concatenate([extents, spreads], axis=1).astype(np.float32)
