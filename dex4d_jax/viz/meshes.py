"""Triangle meshes of MuJoCo geoms and object primitives, their colours, body poses, layout.

numpy and mujoco only (no JAX, no viser): the 3D viewer (`dex4d_jax.viz.viewer`) draws what
these functions return (and frames its camera with `camera_framing`), and tests check them
against MuJoCo's own sizes and poses.

Conventions (MuJoCo's):
- Lengths in metres. A mesh's vertices are in its geom's (or primitive's) own frame: the frame
  MuJoCo places with `geom_pos` / `geom_quat` in the parent body's frame.
- Sizes: box [3] half extents; sphere [1] radius; capsule and cylinder [2] radius and
  half-length along local z (the capsule's hemispherical caps extend past it by the radius);
  ellipsoid [3] radii; plane [2] half extents in local x and y, the surface at z = 0 facing +z
  (a size of 0 means an infinite plane, drawn here `infinite_plane_half_size` wide).
- Quaternions wxyz. Triangles wind counter-clockwise seen from outside (outward normals), so a
  closed mesh has a positive signed volume (`signed_volume`).
"""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

# MuJoCo's default geom rgba; a geom with a material and this rgba takes the material's colour.
DEFAULT_GEOM_RGBA = np.array([0.5, 0.5, 0.5, 1.0], np.float32)
# Geom groups MuJoCo's viewers show by default (0, 1, 2); this project's colliders are group 3.
VISIBLE_GROUPS = (0, 1, 2)
# Geom types with a mesh here (MuJoCo's mjtGeom names, lower case).
GEOM_KINDS = {
    int(mujoco.mjtGeom.mjGEOM_PLANE): "plane",
    int(mujoco.mjtGeom.mjGEOM_SPHERE): "sphere",
    int(mujoco.mjtGeom.mjGEOM_CAPSULE): "capsule",
    int(mujoco.mjtGeom.mjGEOM_ELLIPSOID): "ellipsoid",
    int(mujoco.mjtGeom.mjGEOM_CYLINDER): "cylinder",
    int(mujoco.mjtGeom.mjGEOM_BOX): "box",
    int(mujoco.mjtGeom.mjGEOM_MESH): "mesh",
}
# Segments around a round surface, and rings per hemisphere: fine enough for a 10 cm object.
DEFAULT_SEGMENTS = 24
DEFAULT_RINGS = 8


class Mesh(NamedTuple):
    """A triangle mesh.

    Attributes:
      vertices: [V, 3] float32, metres, in the geom's (primitive's) frame.
      faces: [F, 3] int32 vertex indices, counter-clockwise seen from outside.
    """

    vertices: np.ndarray
    faces: np.ndarray


# ----------------------------------------------------------------------------------------------
# Primitive meshes.
# ----------------------------------------------------------------------------------------------


def box(half_sizes) -> Mesh:
    """A box of half extents [3] centred at the origin.

    24 vertices (4 per side, so each side shades flat) and 12 triangles.
    """
    h = np.asarray(half_sizes, np.float64).reshape(3)
    vertices, faces = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            # Two tangent axes (u, v) with u x v = sign * e_axis: counter-clockwise from outside.
            u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
            if sign < 0:
                u, v = v, u
            normal = sign * np.eye(3)[axis]
            base = len(vertices)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                vertices.append((normal + a * u + b * v) * h)
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return Mesh(np.array(vertices, np.float32), np.array(faces, np.int32))


def lathe(radii, heights, segments: int = DEFAULT_SEGMENTS) -> Mesh:
    """A surface of revolution about z through the profile points (radii[k], heights[k]).

    The profile runs from bottom to top; a point of radius 0 becomes one vertex (a pole), and
    consecutive points at the same place start a new ring of vertices (a sharp edge, as at a
    cylinder's rim).

    Args:
      radii: [K] non-negative distances from the z axis, metres.
      heights: [K] z of each profile point, metres.
      segments: Vertices around each ring (>= 3).

    Returns:
      The mesh, closed when the profile starts and ends on the axis.
    """
    if segments < 3:
        raise ValueError(f"a lathe needs at least 3 segments, got {segments}")
    angle = 2 * np.pi * np.arange(segments) / segments
    ring_xy = np.stack([np.cos(angle), np.sin(angle)], -1)
    vertices, rings = [], []  # rings: list of vertex index arrays (length 1 for a pole)
    for r, z in zip(np.asarray(radii, float), np.asarray(heights, float), strict=True):
        start = len(vertices)
        if r <= 0:
            vertices.append((0.0, 0.0, z))
            rings.append(np.array([start]))
        else:
            vertices += [(r * c, r * s, z) for c, s in ring_xy]
            rings.append(start + np.arange(segments))
    faces = []
    nxt = np.roll(np.arange(segments), -1)
    for lower, upper in zip(rings[:-1], rings[1:], strict=True):
        if len(lower) == 1 and len(upper) == 1:
            continue
        if len(lower) == 1:  # a fan up from the bottom pole
            faces += [(lower[0], upper[nxt[j]], upper[j]) for j in range(segments)]
        elif len(upper) == 1:  # a fan into the top pole
            faces += [(lower[j], lower[nxt[j]], upper[0]) for j in range(segments)]
        else:
            for j in range(segments):
                faces += [(lower[j], lower[nxt[j]], upper[nxt[j]]),
                          (lower[j], upper[nxt[j]], upper[j])]
    return Mesh(np.array(vertices, np.float32), np.array(faces, np.int32).reshape(-1, 3))


def _arc(radius: float, start: float, stop: float, rings: int, z0: float):
    """(radii, heights) of a circular arc of the profile, polar angle `start` to `stop`."""
    theta = np.linspace(start, stop, rings + 1)
    return radius * np.cos(theta), z0 + radius * np.sin(theta)


def sphere(radius: float, segments: int = DEFAULT_SEGMENTS, rings: int = DEFAULT_RINGS) -> Mesh:
    """A UV sphere of `radius` about the origin (`rings` latitude bands per hemisphere)."""
    r, z = _arc(radius, -np.pi / 2, np.pi / 2, 2 * rings, 0.0)
    r[0] = r[-1] = 0.0  # poles
    return lathe(r, z, segments)


def ellipsoid(radii, segments: int = DEFAULT_SEGMENTS, rings: int = DEFAULT_RINGS) -> Mesh:
    """An ellipsoid with semi-axes `radii` [3] along local x, y, z."""
    unit = sphere(1.0, segments, rings)
    return Mesh((unit.vertices * np.asarray(radii, np.float32).reshape(3)).astype(np.float32),
                unit.faces)


def capsule(radius: float, half_length: float, segments: int = DEFAULT_SEGMENTS,
            rings: int = DEFAULT_RINGS) -> Mesh:
    """A capsule along local z, total length 2 * (half_length + radius).

    A cylinder of `radius` from -half_length to +half_length, and a hemisphere on each end.
    """
    r0, z0 = _arc(radius, -np.pi / 2, 0.0, rings, -half_length)
    r1, z1 = _arc(radius, 0.0, np.pi / 2, rings, half_length)
    r, z = np.concatenate([r0, r1]), np.concatenate([z0, z1])
    r[0] = r[-1] = 0.0  # poles
    return lathe(r, z, segments)


def cylinder(radius: float, half_length: float, segments: int = DEFAULT_SEGMENTS) -> Mesh:
    """A closed cylinder along local z from -half_length to +half_length (sharp rims)."""
    h = half_length
    return lathe([0.0, radius, radius, radius, radius, 0.0], [-h, -h, -h, h, h, h], segments)


def plane(half_x: float, half_y: float) -> Mesh:
    """A rectangle in local z = 0 facing +z, half extents `half_x` x `half_y`."""
    vertices = np.array([(-half_x, -half_y, 0), (half_x, -half_y, 0), (half_x, half_y, 0),
                         (-half_x, half_y, 0)], np.float32)
    return Mesh(vertices, np.array([(0, 1, 2), (0, 2, 3)], np.int32))


def primitive(kind: str, size, infinite_plane_half_size: float = 5.0) -> Mesh:
    """The mesh of a primitive given by its MuJoCo kind and size (see the module docstring).

    Args:
      kind: "box", "sphere", "capsule", "cylinder", "ellipsoid" or "plane".
      size: The MuJoCo size vector (extra trailing entries are ignored).
      infinite_plane_half_size: Half extent drawn for a plane of size 0 (infinite), metres.

    Raises:
      ValueError: an unknown kind, or a size with too few entries.
    """
    size = np.atleast_1d(np.asarray(size, np.float64))
    need = {"box": 3, "sphere": 1, "capsule": 2, "cylinder": 2, "ellipsoid": 3, "plane": 2}
    if kind not in need:
        raise ValueError(f"no mesh for primitive kind {kind!r}; valid: {', '.join(need)}")
    if size.shape[0] < need[kind]:
        raise ValueError(f"a {kind} needs {need[kind]} size values, got {size.shape[0]}")
    if kind == "box":
        return box(size[:3])
    if kind == "sphere":
        return sphere(size[0])
    if kind == "capsule":
        return capsule(size[0], size[1])
    if kind == "cylinder":
        return cylinder(size[0], size[1])
    if kind == "ellipsoid":
        return ellipsoid(size[:3])
    half = [s if s > 0 else infinite_plane_half_size for s in size[:2]]
    return plane(*half)


def signed_volume(mesh: Mesh) -> float:
    """The volume a closed mesh encloses (divergence theorem), positive for outward winding."""
    v = mesh.vertices.astype(np.float64)[mesh.faces]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


# ----------------------------------------------------------------------------------------------
# MuJoCo geoms.
# ----------------------------------------------------------------------------------------------


def geom_kind(model: mujoco.MjModel, geom: int) -> str | None:
    """The geom's type as a `GEOM_KINDS` name, or None for a type drawn nowhere (hfield, sdf)."""
    return GEOM_KINDS.get(int(model.geom_type[geom]))


def geom_mesh(model: mujoco.MjModel, geom: int, infinite_plane_half_size: float = 5.0
              ) -> Mesh | None:
    """The geom's surface in its own frame, or None for a type without a mesh here.

    Primitives come from `primitive` with `model.geom_size`; a mesh geom returns its compiled
    vertices and faces (`mesh_vert`, `mesh_face`, already in the geom's frame).
    """
    kind = geom_kind(model, geom)
    if kind is None:
        return None
    if kind == "mesh":
        mesh_id = int(model.geom_dataid[geom])
        v0, nv = int(model.mesh_vertadr[mesh_id]), int(model.mesh_vertnum[mesh_id])
        f0, nf = int(model.mesh_faceadr[mesh_id]), int(model.mesh_facenum[mesh_id])
        return Mesh(np.array(model.mesh_vert[v0:v0 + nv], np.float32),
                    np.array(model.mesh_face[f0:f0 + nf], np.int32))
    return primitive(kind, model.geom_size[geom], infinite_plane_half_size)


def _texture_mean_rgb(model: mujoco.MjModel, texture: int) -> np.ndarray:
    """[3] mean colour in [0, 1] of a texture (how a texture looks from afar)."""
    adr = int(model.tex_adr[texture])
    channels = int(model.tex_nchannel[texture])
    count = int(model.tex_height[texture]) * int(model.tex_width[texture]) * channels
    data = np.asarray(model.tex_data[adr:adr + count], np.float64).reshape(-1, channels)
    mean = data.mean(0) / 255.0
    return mean[:3] if channels >= 3 else np.repeat(mean[:1], 3)


def geom_rgba(model: mujoco.MjModel, geom: int) -> np.ndarray:
    """[4] float32 colour in [0, 1] that MuJoCo draws the geom in.

    The geom's own `rgba`, unless it has a material and its rgba is MuJoCo's default
    (0.5, 0.5, 0.5, 1): then the material's rgba, times the mean colour of the material's RGB
    texture if it has one (a checker floor becomes its average shade).
    """
    rgba = np.array(model.geom_rgba[geom], np.float32)
    material = int(model.geom_matid[geom])
    if material < 0 or not np.allclose(rgba, DEFAULT_GEOM_RGBA):
        return rgba
    rgba = np.array(model.mat_rgba[material], np.float32)
    texture = int(model.mat_texid[material, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)])
    if texture >= 0:
        rgba[:3] *= _texture_mean_rgb(model, texture).astype(np.float32)
    return rgba


def compile_model(xml: str) -> mujoco.MjModel:
    """Compiles MJCF text.

    Raises:
      ValueError: MuJoCo cannot compile it; the one-line message starts "does not compile:"
        and carries MuJoCo's first line.
    """
    try:
        return mujoco.MjModel.from_xml_string(xml)
    except ValueError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "no reason given"
        raise ValueError(f"does not compile: {first}") from err


def body_poses(model: mujoco.MjModel, qpos: np.ndarray, data: mujoco.MjData | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """World poses of every body at generalized positions `qpos` (`mujoco.mj_kinematics`).

    Args:
      model: The model.
      qpos: [nq] generalized positions.
      data: Scratch data to reuse (its qpos is overwritten); a new one when None.

    Returns:
      (xpos [nbody, 3] metres, xquat [nbody, 4] wxyz), world frame; body 0 is the world.

    Raises:
      ValueError: `qpos` does not have the model's nq entries.
    """
    qpos = np.asarray(qpos, np.float64)
    if qpos.shape != (model.nq,):
        raise ValueError(f"qpos must have shape [{model.nq}] (the model's nq), got "
                         f"{list(qpos.shape)}")
    data = mujoco.MjData(model) if data is None else data
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    return data.xpos.copy(), data.xquat.copy()


def body_trajectories(model: mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World poses of every body at each row of `qpos` [T, nq] (`body_poses` per row).

    Returns:
      (xpos [T, nbody, 3] metres, xquat [T, nbody, 4] wxyz), world frame.

    Raises:
      ValueError: `qpos` is not [T, nq].
    """
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim != 2:
        raise ValueError(f"qpos must have shape [T, {model.nq}], got {list(qpos.shape)}")
    data = mujoco.MjData(model)
    poses = [body_poses(model, q, data) for q in qpos]
    return (np.stack([p for p, _ in poses]).reshape(-1, model.nbody, 3),
            np.stack([q for _, q in poses]).reshape(-1, model.nbody, 4))


class GeomVisual(NamedTuple):
    """How one geom of a model is drawn.

    Attributes:
      geom: Its id.
      body: The body it moves with.
      kind: Its `GEOM_KINDS` name.
      mesh: Its surface, geom frame.
      rgba: [4] colour in [0, 1] (`geom_rgba`).
      pos: [3] its frame's position in the body frame, metres (`geom_pos`).
      quat: [4] its frame's orientation in the body frame, wxyz (`geom_quat`).
      is_collider: Its group is not one MuJoCo's viewers show by default (`VISIBLE_GROUPS`).
    """

    geom: int
    body: int
    kind: str
    mesh: Mesh
    rgba: np.ndarray
    pos: np.ndarray
    quat: np.ndarray
    is_collider: bool


def model_visuals(model: mujoco.MjModel, infinite_plane_half_size: float = 5.0
                  ) -> list[GeomVisual]:
    """Every geom of `model` that can be drawn, in geom order.

    Drawable: a type with a mesh here, and a colour that is not fully transparent (MuJoCo does
    not draw alpha 0).
    """
    visuals = []
    for geom in range(model.ngeom):
        rgba = geom_rgba(model, geom)
        mesh = geom_mesh(model, geom, infinite_plane_half_size)
        if mesh is None or rgba[3] <= 0:
            continue
        visuals.append(GeomVisual(geom, int(model.geom_bodyid[geom]), geom_kind(model, geom),
                                  mesh, rgba, np.array(model.geom_pos[geom]),
                                  np.array(model.geom_quat[geom]),
                                  int(model.geom_group[geom]) not in VISIBLE_GROUPS))
    return visuals


# ----------------------------------------------------------------------------------------------
# Layout: point sizes, camera framing, grids.
# ----------------------------------------------------------------------------------------------


def point_size(points: np.ndarray) -> float:
    """A point size (metres) for a cloud [..., 3]: 1.2 % of its diagonal, 2 mm to 2 cm."""
    points = np.asarray(points).reshape(-1, 3)
    diagonal = float(np.linalg.norm(points.max(0) - points.min(0))) if points.size else 0.1
    return float(np.clip(0.012 * diagonal, 0.002, 0.02))


def camera_framing(points: np.ndarray, min_distance: float = 0.3,
                   direction=(0.75, -0.6, 0.55)) -> tuple[np.ndarray, np.ndarray]:
    """A camera (position [3], look-at point [3]) that sees all of `points` [..., 3].

    It looks at the centre of their bounding box from `direction` (world frame; the default is
    from the front right, +x and -y, and above), 0.9 bounding-box diagonals away (a 75 degree
    field of view then holds them) and at least `min_distance` metres.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    low, high = points.min(0), points.max(0)
    centre = (low + high) / 2
    distance = max(min_distance, 0.9 * float(np.linalg.norm(high - low)))
    direction = np.asarray(direction, np.float64)
    return centre + distance * direction / np.linalg.norm(direction), centre


def grid_positions(count: int, spacing: float) -> np.ndarray:
    """[count, 3] places on a square grid in z = 0, row by row along +x, rows along -y."""
    row, column = np.divmod(np.arange(count), max(1, int(np.ceil(np.sqrt(count)))))
    return np.stack([column, -row, np.zeros(count)], -1) * spacing
