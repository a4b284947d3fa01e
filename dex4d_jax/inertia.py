"""Mass, centre of mass and principal inertia of a rigid union of box and capsule primitives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import mujoco
import numpy as np

from dex4d_jax import rotations, shapes

# Grid cells along the longest side of the region where primitives overlap.
OVERLAP_GRID_CELLS = 48


class MassProperties(NamedTuple):
    """Mass properties of a rigid body of uniform density.

    Attributes:
        volume: Volume of the union of the primitives, m^3.
        mass: kg.
        com: [3] centre of mass, object frame.
        inertia: [3] principal moments about the centre of mass, ascending, kg m^2.
        iquat: [4] wxyz rotation from the object frame to the principal axes (MuJoCo's
            `body_iquat`).
    """

    volume: float
    mass: float
    com: np.ndarray
    inertia: np.ndarray
    iquat: np.ndarray

    def with_mass(self, mass: float) -> MassProperties:
        """The same body at the density that gives it `mass`."""
        scale = mass / self.mass
        return self._replace(mass=mass, inertia=self.inertia * scale)


def _primitive_moments(p: shapes.Primitive) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact volume, first moment [3] and second moment [3, 3] (integral of r r^T) of a primitive.

    All at unit density about the object-frame origin. A primitive's centroid is its centre.
    """
    if p.kind == "box":
        half = p.size[:3]
        volume = 8.0 * float(np.prod(half))
        local = volume / 3.0 * np.diag(half * half)
    else:
        radius = p.size[0]
        half_length = p.size[1] if p.kind == "capsule" else 0.0
        cylinder = 2.0 * np.pi * radius**2 * half_length
        hemisphere = 2.0 / 3.0 * np.pi * radius**3
        volume = cylinder + 2.0 * hemisphere
        # Per unit volume, a ball gives r^2/5 along every axis (so does each half of it) and
        # a disk r^2/4 across. A hemisphere's centroid sits 3r/8 beyond the cylinder's end;
        # about it, along the axis: r^2/5 - (3r/8)^2 = 19/320 r^2.
        across = cylinder * radius**2 / 4.0 + 2.0 * hemisphere * radius**2 / 5.0
        along = cylinder * half_length**2 / 3.0 + 2.0 * hemisphere * (
            19.0 / 320.0 * radius**2 + (half_length + 3.0 * radius / 8.0) ** 2
        )
        local = np.diag([across, across, along])
    rot = rotations.quat_to_matrix(p.quat)
    return volume, volume * p.pos, rot @ local @ rot.T + volume * np.outer(p.pos, p.pos)


def _overlap_moments(
    primitives: Sequence[shapes.Primitive], cells: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Volume and moments counted more than once by summing the primitives, on a grid.

    The grid tiles the box around all pairwise bounding-box intersections (`cells` along its
    longest side); a cell centre inside k > 1 primitives is a small solid box counted k - 1
    times too often.
    """
    boxes = [shapes.bounding_box([p]) for p in primitives]
    lows, highs = [], []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            low, high = np.maximum(boxes[i][0], boxes[j][0]), np.minimum(boxes[i][1], boxes[j][1])
            if np.all(high > low):
                lows.append(low)
                highs.append(high)
    if not lows:
        return 0.0, np.zeros(3), np.zeros((3, 3))
    low, high = np.min(lows, axis=0), np.max(highs, axis=0)
    counts = np.maximum(np.ceil((high - low) / np.max(high - low) * cells), 1).astype(int)
    step = (high - low) / counts
    axes = [low[k] + step[k] * (np.arange(counts[k]) + 0.5) for k in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    extra = sum(shapes.point_inside_primitive(p, points).astype(float) for p in primitives)
    extra = np.maximum(extra - 1.0, 0.0) * float(np.prod(step))
    # Each cell is a box of sides `step`: its own second moment is step^2 / 12 per axis.
    second = (points * extra[:, None]).T @ points + np.sum(extra) * np.diag(step * step) / 12.0
    return float(np.sum(extra)), extra @ points, second


def mass_properties(
    primitives: Sequence[shapes.Primitive], density: float, cells: int = OVERLAP_GRID_CELLS
) -> MassProperties:
    """Mass, centre of mass and inertia of a union of primitives, overlaps counted once.

    Each primitive contributes its exact moments; what overlapping primitives count twice is
    integrated on a grid and taken off (inclusion-exclusion). A single primitive, or boxes
    overlapping in a grid-aligned box, come out exact; other overlaps carry the grid's error,
    under 1% of the mass and principal moments for the library's families (measured against
    dense Monte Carlo sampling of the union).

    Args:
        primitives: The primitives, object frame.
        density: kg/m^3.
        cells: Overlap grid resolution along the longest side of the overlap region.

    Returns:
        The mass properties.
    """
    moments = [_primitive_moments(p) for p in primitives]
    overlap = _overlap_moments(primitives, cells)
    volume = sum(m[0] for m in moments) - overlap[0]
    first = sum(m[1] for m in moments) - overlap[1]
    second = sum(m[2] for m in moments) - overlap[2]
    com = first / volume
    # Second moment about the centre of mass, then I = tr(S) 1 - S.
    central = second - volume * np.outer(com, com)
    inertia = density * (np.trace(central) * np.eye(3) - central)
    principal, axes = np.linalg.eigh(inertia)
    if np.linalg.det(axes) < 0.0:
        axes[:, 2] *= -1.0
    iquat = np.zeros(4)
    mujoco.mju_mat2Quat(iquat, axes.flatten())
    iquat = iquat if iquat[0] >= 0.0 else -iquat
    return MassProperties(volume, density * volume, com, principal, iquat)
