"""The xArm6 + LEAP hand model against facts computed here, independently of our MJCF.

The arm's flange comes from UFACTORY's modified Denavit-Hartenberg table; the fingertips from a
product of exponentials over the LEAP joint axes and anchors in the palm frame (robot_facts'
leap_hand.json, computed from the menagerie hand at q = 0). Neither is read from our MJCF,
whose chain is written with the URDF's parent-to-child transforms instead.
"""

import mujoco
import numpy as np
import pytest
from mujoco.mjx._src import collision_driver

from dex4d_jax import robot

# UFACTORY modified DH (Craig): alpha_{i-1}, a_{i-1}, d_i, theta offset.
_DH = (
    (0.0, 0.0, 0.267, 0.0),
    (-np.pi / 2, 0.0, 0.0, -1.3849179),
    (0.0, 0.28948866, 0.0, 1.3849179),
    (-np.pi / 2, 0.0775, 0.3425, 0.0),
    (np.pi / 2, 0.0, 0.0, 0.0),
    (-np.pi / 2, 0.076, 0.097, 0.0),
)
# Our mounting (docs/robot.md): palm at (0.065, -0.04, 0.022) in the flange frame, rotated by pi
# about the flange x axis (back of the hand on a 10 mm adapter, fingers along flange +x).
_MOUNT_POS = np.array([0.065, -0.04, 0.022])
_MOUNT_ROT = np.diag([1.0, -1.0, -1.0])
# LEAP joints at q = 0 in the palm frame: (anchor, axis), from robot_facts/leap_hand.json.
_LEAP_SCREWS = {
    "if_mcp": ((-0.007, 0.023, -0.0187), (0, 1, 0)),
    "if_rot": ((0.0311, 0.0085, -0.0065), (0, 0, -1)),
    "if_pip": ((0.0461, 0.0228, -0.0195), (0, 1, 0)),
    "if_dip": ((0.0822, 0.0226, -0.0195), (0, 1, 0)),
    "mf_mcp": ((-0.0071, -0.0224, -0.0187), (0, 1, 0)),
    "mf_rot": ((0.031, -0.0369, -0.0065), (0, 0, -1)),
    "mf_pip": ((0.046, -0.0226, -0.0195), (0, 1, 0)),
    "mf_dip": ((0.0821, -0.0228, -0.0195), (0, 1, 0)),
    "rf_mcp": ((-0.0071, -0.0678, -0.0187), (0, 1, 0)),
    "rf_rot": ((0.031, -0.0823, -0.0065), (0, 0, -1)),
    "rf_pip": ((0.046, -0.068, -0.0195), (0, 1, 0)),
    "rf_dip": ((0.0821, -0.0682, -0.0195), (0, 1, 0)),
    "th_cmc": ((-0.0693, -0.0012, -0.0216), (-1, 0, 0)),
    "th_axl": ((-0.0823, 0.0131, -0.0216), (0, 1, 0)),
    "th_mcp": ((-0.0823, 0.0301, -0.0071), (0, 0, -1)),
    "th_ipl": ((-0.0823, 0.0767, -0.0069), (0, 0, -1)),
}
# Fingertip points at q = 0 in the palm frame, and the joints of each finger from the palm out.
_TIPS_Q0 = {
    "fingertip_index": ((0.1322, 0.0076, -0.0195), ("if_mcp", "if_rot", "if_pip", "if_dip")),
    "fingertip_middle": ((0.1321, -0.0378, -0.0195), ("mf_mcp", "mf_rot", "mf_pip", "mf_dip")),
    "fingertip_ring": ((0.1321, -0.0832, -0.0195), ("rf_mcp", "rf_rot", "rf_pip", "rf_dip")),
    "fingertip_thumb": ((-0.0823, 0.1367, -0.0219), ("th_cmc", "th_axl", "th_mcp", "th_ipl")),
}
# Joint ranges (rad): xArm6 URDF "limited" variant; LEAP URDF / LEAP API ranges (for th_axl and
# th_mcp these differ from menagerie's, which look shifted by one joint).
_RANGES = {
    "joint1": (-3.11018, 3.11018), "joint2": (-2.059, 2.0944), "joint3": (-3.11018, 0.19198),
    "joint4": (-3.11018, 3.11018), "joint5": (-1.69297, 3.11018), "joint6": (-3.11018, 3.11018),
    "if_mcp": (-0.314, 2.23), "if_rot": (-1.047, 1.047), "if_pip": (-0.506, 1.885),
    "if_dip": (-0.366, 2.042), "mf_mcp": (-0.314, 2.23), "mf_rot": (-1.047, 1.047),
    "mf_pip": (-0.506, 1.885), "mf_dip": (-0.366, 2.042), "rf_mcp": (-0.314, 2.23),
    "rf_rot": (-1.047, 1.047), "rf_pip": (-0.506, 1.885), "rf_dip": (-0.366, 2.042),
    "th_cmc": (-0.349, 2.094), "th_axl": (-0.47, 2.443), "th_mcp": (-1.2, 1.9),
    "th_ipl": (-1.34, 1.88),
}  # fmt: skip
# Servo force limits (N m): xArm6 URDF efforts per joint; LEAP_Hand_Sim effort for the hand.
_FORCE_LIMITS = (50, 50, 32, 32, 32, 20) + (0.5,) * 16


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_path(str(robot.SCENE_XML))


def _transform(rot, pos):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, pos
    return out


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rot_axis(axis, angle):
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _flange_dh(q_arm):
    """World pose (4x4) of the flange from the DH table; the base stands on the table top."""
    pose = _transform(np.eye(3), [0, 0, robot.TABLE_HEIGHT])
    for (alpha, a, d, offset), theta in zip(_DH, q_arm, strict=True):
        pose = (pose @ _transform(_rot_x(alpha), [a, 0, 0])
                @ _transform(_rot_z(theta + offset), [0, 0, d]))
    return pose


def _fingertips_poe(q):
    """World fingertip positions from the DH flange, the mount and the hand's screw axes."""
    palm = _flange_dh(q[: robot.NUM_ARM]) @ _transform(_MOUNT_ROT, _MOUNT_POS)
    angles = dict(zip(robot.JOINT_NAMES, q, strict=True))
    tips = {}
    for site, (tip_q0, joints) in _TIPS_Q0.items():
        chain = np.eye(4)
        for name in joints:  # e^{xi_1 q_1} ... e^{xi_4 q_4}, palm outwards
            anchor, axis = (np.asarray(v, float) for v in _LEAP_SCREWS[name])
            rot = _rot_axis(axis, angles[name])
            chain = chain @ _transform(rot, anchor - rot @ anchor)
        tips[site] = (palm @ chain @ np.append(tip_q0, 1.0))[:3]
    return tips


def test_model_follows_the_documented_order(model):
    robot.check_model(model)
    robot.check_model(mujoco.MjModel.from_xml_path(str(robot.ROBOT_XML)))
    assert sorted(robot.LEAP_MOTOR_IDS) == list(range(16))
    for name in (robot.FLANGE_SITE, robot.PALM_SITE, *robot.FINGERTIP_SITES):
        assert model.site(name).id >= 0


def test_forward_kinematics_matches_dh_and_screw_axes(model):
    data = mujoco.MjData(model)
    ranges = np.array([_RANGES[n] for n in robot.JOINT_NAMES])
    rng = np.random.default_rng(0)
    for _ in range(25):
        q = rng.uniform(ranges[:, 0], ranges[:, 1])
        data.qpos[: robot.NUM_JOINTS] = q
        mujoco.mj_kinematics(model, data)
        flange = _flange_dh(q[: robot.NUM_ARM])
        np.testing.assert_allclose(data.site(robot.FLANGE_SITE).xpos, flange[:3, 3], atol=1e-3)
        np.testing.assert_allclose(data.site(robot.FLANGE_SITE).xmat.reshape(3, 3),
                                   flange[:3, :3], atol=1e-3)
        for site, expected in _fingertips_poe(q).items():
            np.testing.assert_allclose(data.site(site).xpos, expected, atol=1e-3, err_msg=site)


def test_zero_pose_flange_matches_ufactory_home(model):
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    # UFACTORY's documented zero-pose TCP: (207, 0, 112) mm, pointing down (roll 180 deg).
    np.testing.assert_allclose(data.site(robot.FLANGE_SITE).xpos,
                               [0.207, 0.0, robot.TABLE_HEIGHT + 0.112], atol=1e-5)
    np.testing.assert_allclose(data.site(robot.FLANGE_SITE).xmat.reshape(3, 3),
                               np.diag([1.0, -1.0, -1.0]), atol=1e-5)


def test_joint_and_actuator_ranges_equal_the_facts(model):
    expected = np.array([_RANGES[n] for n in robot.JOINT_NAMES])
    np.testing.assert_allclose(robot.joint_ranges(model), expected, atol=1e-9)
    np.testing.assert_allclose(model.actuator_ctrlrange, expected, atol=1e-9)
    limits = np.array(_FORCE_LIMITS, float)
    np.testing.assert_allclose(model.actuator_forcerange, np.stack([-limits, limits], 1))
    assert model.jnt_limited[: robot.NUM_JOINTS].all()


def test_hand_zero_pose_is_open(model):
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    palm = data.site(robot.PALM_SITE)
    rot = palm.xmat.reshape(3, 3)
    for site in robot.FINGERTIP_SITES:
        local = rot.T @ (data.site(site).xpos - palm.xpos)
        # Straight fingers: every tip reaches well away from the palm centre and lies in the
        # palm's plane (within 2 cm), not curled towards the grasping side.
        assert np.linalg.norm(local[:2]) > 0.08, site
        assert abs(local[2]) < 0.02, site


def test_grasp_ready_key_is_inside_the_ranges_and_above_the_table(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(robot.GRASP_READY_KEY).id)
    mujoco.mj_forward(model, data)
    q = robot.grasp_ready_joints(model)
    ranges = robot.joint_ranges(model)
    assert np.all((q >= ranges[:, 0]) & (q <= ranges[:, 1]))
    heights = [data.site(s).xpos[2] for s in robot.FINGERTIP_SITES]
    assert min(heights) > robot.FINGERTIP_MIN_HEIGHT
    # The robot touches nothing: any contact is between the cube and the table.
    table, cube = model.geom(robot.TABLE_GEOM).id, model.geom("object_box_a").id
    assert all({c.geom1, c.geom2} == {table, cube} for c in data.contact)


def _groups(model):
    """Names each colliding geom's group: object, table, hand, arm or arm_table."""
    names = {robot.OBJECT_COLLISION_BIT: "object", robot.TABLE_COLLISION_BIT: "table",
             robot.HAND_COLLISION_BIT: "hand", robot.ARM_COLLISION_BIT: "arm",
             robot.ARM_TABLE_COLLISION_BIT: "arm_table"}
    return {g: names[int(model.geom_contype[g])] for g in range(model.ngeom)
            if model.geom_contype[g] or model.geom_conaffinity[g]}


def test_only_the_documented_groups_can_collide(model):
    groups = _groups(model)
    pairs = {tuple(sorted((groups[g1], groups[g2])))
             for g1, g2, _ in collision_driver.geom_pairs(model)}
    # No hand self-collision and no arm-hand pairs (docs/robot.md says why).
    assert pairs == {("object", "table"), ("hand", "object"), ("hand", "table"),
                     ("arm", "object"), ("arm", "table"), ("arm_table", "table")}
