"""The xArm6 + LEAP hand: joint and actuator order, named sites, and the scene's constants.

This module is the one place that states the robot's order. `mjcf/xarm6_leap_right.xml`
declares its joints and actuators in this order, `check_model` verifies a compiled model
against it, and environments, policies and the deploy runtime index qpos/ctrl through it.

Order of the 22 joints (qpos[0:22], qvel[0:22]) and of the 22 position actuators (ctrl[0:22]):

  0-5    xArm6 joint1 ... joint6 (base to flange)
  6-9    index  mcp, rot, pip, dip
  10-13  middle mcp, rot, pip, dip
  14-17  ring   mcp, rot, pip, dip
  18-21  thumb  cmc, axl, mcp, ipl

The hand follows its kinematic tree (mcp is the finger's first hinge, rot the second), which
is not the LEAP motor numbering: `LEAP_MOTOR_IDS` maps one to the other.
"""

from __future__ import annotations

import pathlib

import mujoco
import numpy as np

import dex4d_jax.mjcf

ARM_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")
HAND_JOINTS = (
    "if_mcp", "if_rot", "if_pip", "if_dip",
    "mf_mcp", "mf_rot", "mf_pip", "mf_dip",
    "rf_mcp", "rf_rot", "rf_pip", "rf_dip",
    "th_cmc", "th_axl", "th_mcp", "th_ipl",
)  # fmt: skip
JOINT_NAMES = ARM_JOINTS + HAND_JOINTS
# Each actuator is named after the joint it drives.
ACTUATOR_NAMES = JOINT_NAMES
NUM_ARM = len(ARM_JOINTS)
NUM_HAND = len(HAND_JOINTS)
NUM_JOINTS = len(JOINT_NAMES)

# LEAP hand motor id (the LEAP API's joint index) of each entry of HAND_JOINTS. The hardware
# angle is the simulated angle + pi (the LEAP API's convention for the open hand at pi).
LEAP_MOTOR_IDS = (1, 0, 2, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15)

# Root bodies: every robot body hangs below BASE_BODY (body_rootid), the hand's below HAND_BODY.
BASE_BODY = "link_base"
HAND_BODY = "palm"
FLANGE_SITE = "ee_flange"
PALM_SITE = "palm"
FINGERTIP_SITES = ("fingertip_index", "fingertip_middle", "fingertip_ring", "fingertip_thumb")

# Scene constants (mjcf/dex4d_scene.xml). The reward's r_table keeps fingertips above
# FINGERTIP_MIN_HEIGHT, 2 cm over the table top.
TABLE_HEIGHT = 0.6
FINGERTIP_MIN_HEIGHT = 0.62
# The robot base frame in the world, metres: the xArm's base stands on the table top.
BASE_POS = np.array([0.0, 0.0, TABLE_HEIGHT])
# Where objects are reset (base frame xy, metres): 45 cm in front of the base (envs/ap2ap.py).
WORKSPACE_CENTER = np.array([0.45, 0.0])
TABLE_GEOM = "table"
OBJECT_BODY = "object"
CAMERA = "d435"
GRASP_READY_KEY = "grasp_ready"
# Collision groups: the contype bit of each kind of collider (docs/robot.md has the table of
# which pairs collide and why).
OBJECT_COLLISION_BIT = 1
TABLE_COLLISION_BIT = 2
HAND_COLLISION_BIT = 4
ARM_COLLISION_BIT = 8
ARM_TABLE_COLLISION_BIT = 16

_MJCF_DIR = pathlib.Path(dex4d_jax.mjcf.__file__).parent
ROBOT_XML = _MJCF_DIR / "xarm6_leap_right.xml"
SCENE_XML = _MJCF_DIR / "dex4d_scene.xml"


def check_model(model: mujoco.MjModel) -> None:
    """Raises ValueError unless `model`'s first 22 joints and its actuators follow JOINT_NAMES.

    Args:
      model: a compiled model that contains the robot (the robot alone or a scene).
    """
    joints = tuple(model.joint(i).name for i in range(min(model.njnt, NUM_JOINTS)))
    actuators = tuple(model.actuator(i).name for i in range(model.nu))
    if joints != JOINT_NAMES:
        raise ValueError(f"Model joints {joints} do not follow dex4d_jax.robot.JOINT_NAMES")
    if actuators != ACTUATOR_NAMES:
        raise ValueError(f"Model actuators {actuators} do not follow dex4d_jax.robot.ACTUATOR_NAMES")
    for i, name in enumerate(JOINT_NAMES):
        if model.actuator_trnid[i, 0] != model.joint(name).id:
            raise ValueError(f"Actuator {i} ({name}) does not drive joint {name}")
        if model.jnt_qposadr[model.joint(name).id] != i:
            raise ValueError(f"Joint {name} is not at qpos[{i}]")


def joint_ranges(model: mujoco.MjModel) -> np.ndarray:
    """Returns the [22, 2] (low, high) ranges of the robot's joints, in JOINT_NAMES order."""
    check_model(model)
    return np.asarray(model.jnt_range[:NUM_JOINTS]).copy()


def grasp_ready_joints(model: mujoco.MjModel) -> np.ndarray:
    """Returns the robot's 22 joint angles (JOINT_NAMES order) of the grasp-ready keyframe.

    Only the robot's joints: for the whole scene's qpos, with an object resting on the table,
    see `dex4d_jax.envs.robot_scene.grasp_ready_qpos`.
    """
    return np.asarray(model.key(GRASP_READY_KEY).qpos[:NUM_JOINTS]).copy()


def robot_geoms(model) -> np.ndarray:
    """[ngeom] bool: the geoms of bodies that hang from BASE_BODY (the arm and hand), not the
    world's (the table, the benchmark's fixed items) nor the object's."""
    root = model.body_rootid[model.geom_bodyid]
    return root == model.body(BASE_BODY).id
