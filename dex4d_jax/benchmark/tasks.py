"""The six benchmark tasks as data (tasks.json), their objects and scene, and their trials.

A task (SPEC section 7, paper Table I) is an object, a distribution of initial poses on the
table and a sequence of waypoint goal poses; the fixed items the tasks put objects on or in
(plate, bowl, cup) stand together on one table, so that every task of a suite runs in the same
scene and the same compiled rollout. Everything is read from `tasks.json` (or a file of the same
shape): which object, where it starts, where it goes, and why each choice was made.

Frames: the file's positions are in the *workspace frame* (the table top, origin at the
environment's `workspace_center`, x away from the robot, z up). `Trials` are in the
environment's own frame (ap2ap: the robot base frame; ap2ap_wrench: the table frame), metres,
quaternions wxyz.

Waypoint positions (`pos`):
  {"over": "start" | ITEM, "lift": h, "offset": [dx, dy, dz]}: above the start position or an
  item's centre (plus `offset`), with the object's lowest point `h` above the table (start) or
  the item's top, at the waypoint's orientation.
Waypoint rotations (`rotate`, optional): {"axis": [3], "deg": a, "frame": "object" | "world"},
  applied to the start orientation (about the object's own axes or the world's).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from dex4d_jax import object_families, object_library, rotations, scene_models, shapes

DEFAULT_SUITE = os.path.join(os.path.dirname(__file__), "tasks.json")
ENVS = ("ap2ap", "ap2ap_wrench")


class SuiteError(ValueError):
    """A task file that cannot be used (missing, malformed, or inconsistent)."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One benchmark task (an entry of tasks.json's `tasks`)."""

    name: str
    object: str
    init: dict
    waypoints: tuple
    why: str

    @property
    def num_waypoints(self) -> int:
        """Waypoints of the task."""
        return len(self.waypoints)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A task file: the shared scene (camera, items), the noise, episode lengths and tasks."""

    path: str
    camera: np.ndarray  # [3] workspace frame
    point_noise: float
    episode_length: dict
    items: tuple
    tasks: tuple

    def task_names(self) -> list[str]:
        """Names of the tasks, in file order."""
        return [t.name for t in self.tasks]

    def select(self, names: str | Sequence[str]) -> list[Task]:
        """Tasks by name ("all" or a comma-separated string or a list).

        Raises:
          SuiteError: an unknown task name.
        """
        if isinstance(names, str):
            names = self.task_names() if names == "all" else [n for n in names.split(",") if n]
        by_name = {t.name.lower(): t for t in self.tasks}
        unknown = [n for n in names if n.lower() not in by_name]
        if unknown or not names:
            raise SuiteError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; the "
                             f"tasks are: all, {', '.join(self.task_names())}")
        return [by_name[n.lower()] for n in names]


def _need(entry: dict, key: str, where: str):
    if key not in entry:
        raise SuiteError(f"{where}: missing '{key}'")
    return entry[key]


def load_suite(path: str | None = None) -> Suite:
    """Reads and checks a task file (the packaged tasks.json by default).

    Raises:
      SuiteError: a missing or malformed file, an unknown object or item, a waypoint over an
        item that does not exist, a task without waypoints.
    """
    path = path or DEFAULT_SUITE
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as err:
        raise SuiteError(f"cannot read the task file {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise SuiteError(f"{path} is not valid JSON: {err}") from err
    items = []
    for i, item in enumerate(_need(raw, "items", path)):
        where = f"{path}: items[{i}]"
        if _need(item, "object", where) not in object_library.YCB_NAMES:
            raise SuiteError(f"{where}: unknown object {item['object']!r}")
        items.append({"name": _need(item, "name", where), "object": item["object"],
                      "xy": np.asarray(_need(item, "xy", where), float).reshape(2)})
    item_names = {it["name"] for it in items}
    tasks = []
    for i, task in enumerate(_need(raw, "tasks", path)):
        where = f"{path}: tasks[{i}]"
        name = _need(task, "name", where)
        if _need(task, "object", where) not in object_library.YCB_NAMES:
            raise SuiteError(f"{where} ({name}): unknown object {task['object']!r}")
        waypoints = tuple(_need(task, "waypoints", where))
        if not waypoints:
            raise SuiteError(f"{where} ({name}): no waypoints")
        for k, wp in enumerate(waypoints):
            over = _need(_need(wp, "pos", f"{where} waypoint {k}"), "over", f"{where} waypoint {k}")
            if over != "start" and over not in item_names:
                raise SuiteError(f"{where} ({name}) waypoint {k}: no item {over!r}")
            rot = wp.get("rotate")
            if rot is not None and rot.get("frame", "world") not in ("object", "world"):
                raise SuiteError(f"{where} ({name}) waypoint {k}: frame must be object or world")
        init = _need(task, "init", where)
        tasks.append(Task(name, task["object"], init, waypoints, task.get("why", "")))
    names = [t.name.lower() for t in tasks]
    if len(set(names)) != len(names) or not tasks:
        raise SuiteError(f"{path}: task names must be unique and there must be at least one")
    lengths = _need(raw, "episode_length", path)
    return Suite(path, np.asarray(_need(raw, "camera", path)["pos"], float).reshape(3),
                 float(_need(raw, "point_noise", path)), dict(lengths), tuple(items),
                 tuple(tasks))


# ----------------------------------------------------------------------------------------------
# Objects and scene.
# ----------------------------------------------------------------------------------------------


def _wrench_primitives(name: str) -> list[shapes.Primitive]:
    """A YCB stand-in in the wrench scene's slots (box, box, capsule).

    The apple's two crossed capsules become one (a 70 mm near-ball) and the mug's two-capsule
    handle one straight capsule between the handle's ends; the other stand-ins fit unchanged.
    """
    prims = object_library.ycb_primitives(name)
    if name == "apple":
        return prims[:1]
    if name == "mug":
        body = [p for p in prims if p.kind == "box"]
        return [*body, object_families.capsule_between([0.066, 0.0, 0.0195],
                                                       [0.066, 0.0, 0.0635], 0.006)]
    return prims


def task_objects(suite: Suite, env_name: str):
    """The suite's task objects for an environment, one per task in file order.

    Returns:
      ap2ap_wrench: a list of ObjectSpec in the wrench slots (object id = task index).
      ap2ap: (the YCB library in ROBOT_SLOTS, [num tasks] object ids into it).
    """
    if env_name == "ap2ap_wrench":
        return [object_families.ObjectSpec(
            t.object, t.object, object_families.centre(object_families.fill_slots(
                _wrench_primitives(t.object), scene_models.WRENCH_SLOT_KINDS, t.object)))
            for t in suite.tasks]
    return object_library.ycb_objects(), object_ids(suite, env_name)


def object_ids(suite: Suite, env_name: str) -> np.ndarray:
    """[num tasks] each suite task's object id in the environment `task_objects` builds."""
    if env_name == "ap2ap_wrench":
        return np.arange(len(suite.tasks))
    return np.array([object_library.YCB_NAMES.index(t.object) for t in suite.tasks])


def item_geometry(suite: Suite) -> dict[str, tuple[np.ndarray, float, list]]:
    """{item name: (xy in the workspace frame, height of its top above the table, primitives
    with their lowest point on the table)}."""
    out = {}
    for item in suite.items:
        prims = object_library.ycb_primitives(item["object"])
        low, high = shapes.bounding_box(prims)
        lifted = [dataclasses.replace(p, pos=p.pos - np.array([0.0, 0.0, low[2]])) for p in prims]
        out[item["name"]] = (item["xy"], float(high[2] - low[2]), lifted)
    return out


def static_items(suite: Suite, center: np.ndarray, origin: np.ndarray
                 ) -> tuple[scene_models.StaticItem, ...]:
    """The suite's items placed in the world: `center` [2] is the environment's workspace centre
    (its frame), `origin` [3] where its frame's origin is in the world."""
    out = []
    for name, (xy, _, prims) in item_geometry(suite).items():
        pos = np.asarray(origin, float) + np.array([center[0] + xy[0], center[1] + xy[1], 0.0])
        out.append(scene_models.StaticItem(name, tuple(prims), pos, np.array([1.0, 0, 0, 0])))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# Trials.
# ----------------------------------------------------------------------------------------------


class Trials(NamedTuple):
    """B trials (tasks x trials per task), environment frame, as numpy arrays.

    task: [B] index into the suite's tasks; object_id: [B] into the environment's objects;
    pos [B, 3], quat [B, 4]: initial object pose; goal_pos [B, W, 3], goal_quat [B, W, 4]:
    waypoints, padded to the longest task by repeating the last; num_waypoints [B].
    """

    task: np.ndarray
    object_id: np.ndarray
    pos: np.ndarray
    quat: np.ndarray
    goal_pos: np.ndarray
    goal_quat: np.ndarray
    num_waypoints: np.ndarray


def rest_height(support: np.ndarray, quat: np.ndarray) -> float:
    """Height of the object frame above its lowest point at orientation `quat` (support points
    [P, 4] of envs/objects.support_points)."""
    z = (np.asarray(support)[:, :3] @ rotations.quat_to_matrix(quat).T)[:, 2]
    return float(-np.min(z - np.asarray(support)[:, 3]))


def _rotation(spec: dict | None) -> tuple[np.ndarray, str]:
    if spec is None:
        return np.array([1.0, 0.0, 0.0, 0.0]), "world"
    axis = np.asarray(spec["axis"], float)
    quat = rotations.axis_angle_to_quat(axis / np.linalg.norm(axis), np.deg2rad(spec["deg"]))
    return np.asarray(quat, float), spec.get("frame", "world")


def waypoint_poses(task: Task, start_pos: np.ndarray, start_quat: np.ndarray,
                   support: np.ndarray, items: dict, center: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The task's waypoints ([W, 3] positions, [W, 4] quaternions, environment frame) for one
    start pose."""
    positions, quats = [], []
    for wp in task.waypoints:
        rot, frame = _rotation(wp.get("rotate"))
        quat = (rotations.quat_multiply(start_quat, rot) if frame == "object"
                else rotations.quat_multiply(rot, start_quat))
        spec = wp["pos"]
        if spec["over"] == "start":
            xy, top = start_pos[:2], 0.0
        else:
            item_xy, top, _ = items[spec["over"]]
            xy = np.asarray(center, float) + item_xy
        offset = np.asarray(spec.get("offset", (0.0, 0.0, 0.0)), float)
        z = top + float(spec.get("lift", 0.0)) + rest_height(support, quat)
        positions.append(np.array([xy[0], xy[1], z]) + offset)
        quats.append(quat)
    return np.stack(positions), np.stack(quats)


def sample_trials(suite: Suite, tasks: Sequence[Task], object_ids: Sequence[int],
                  supports: np.ndarray, center: np.ndarray, trials_per_task: int, seed: int
                  ) -> Trials:
    """Initial poses and waypoints of `trials_per_task` trials of each task, seeded.

    A task's trials depend only on (seed, the task's index in the suite), not on which other
    tasks run with it.

    Args:
      suite: the suite.
      tasks: the tasks to run (from `suite.select`).
      object_ids: [num suite tasks] object id of each suite task in the environment.
      supports: [num objects, P, 4] the environment's support points.
      center: [2] the environment's workspace centre.
      trials_per_task: trials of each task.
      seed: the seed.
    """
    if trials_per_task < 1:
        raise ValueError(f"trials per task must be positive, got {trials_per_task}")
    items = item_geometry(suite)
    width = max(t.num_waypoints for t in tasks)
    rows = []
    for task in tasks:
        index = list(suite.tasks).index(task)
        rng = np.random.default_rng([seed, index])
        oid = int(object_ids[index])
        support = np.asarray(supports[oid])
        init = task.init
        for _ in range(trials_per_task):
            yaw = np.deg2rad(rng.uniform(*init.get("yaw_deg", (-180, 180))))
            quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
            xy = (np.asarray(center, float) + np.asarray(init.get("xy", (0.0, 0.0)), float)
                  + rng.uniform(-1, 1, 2) * float(init.get("xy_range", 0.0)))
            pos = np.array([xy[0], xy[1], rest_height(support, quat) + 0.001])
            goal_pos, goal_quat = waypoint_poses(task, pos, quat, support, items, center)
            pad = width - len(goal_pos)
            goal_pos = np.concatenate([goal_pos, np.repeat(goal_pos[-1:], pad, 0)])
            goal_quat = np.concatenate([goal_quat, np.repeat(goal_quat[-1:], pad, 0)])
            rows.append((index, oid, pos, quat, goal_pos, goal_quat, task.num_waypoints))
    cols = list(zip(*rows, strict=True))
    return Trials(np.array(cols[0], np.int32), np.array(cols[1], np.int32),
                  np.stack(cols[2]).astype(np.float32), np.stack(cols[3]).astype(np.float32),
                  np.stack(cols[4]).astype(np.float32), np.stack(cols[5]).astype(np.float32),
                  np.array(cols[6], np.int32))
