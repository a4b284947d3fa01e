"""Simulated robots and a simulated camera on native MuJoCo (the C engine, not MJX).

`dex4d run --robot sim` drives these through the same `Controller` a real robot uses, so an
exported policy is checked on a second implementation of the physics (sim-to-sim). They take
a compiled `mujoco.MjModel` and the object's keypoints from the caller (`sim_setup` builds
them from the training environment's MJCF and object set) and import only mujoco and numpy.

* `WrenchSim`: the `ap2ap_wrench` task: the object's free joint follows the commanded twist
  (linear in the world frame, angular converted to the body frame every physics step, as the
  MJX environment does).
* `ArmHandSim`: the xArm6 + LEAP hand scene: joint targets go to the position servos.
* `CameraPoints`: the object's keypoints as a camera would track them: a point is visible
  when it lies in the camera's field of view and the first surface a ray from the camera
  meets is at that point or beyond it (nothing in front of it); optional noise.
"""

from __future__ import annotations

import mujoco
import numpy as np

from dex4d_jax import robot, rotations
from dex4d_jax.deploy.runtime import PointFrame, RobotState


class _Sim:
    """Common parts: model, data, substeps, the simulation clock, the object's pose."""

    def __init__(self, model: mujoco.MjModel, ctrl_dt: float, object_body: str = robot.OBJECT_BODY):
        self.model = model
        self.data = mujoco.MjData(model)
        self.n_substeps = max(1, int(round(ctrl_dt / model.opt.timestep)))
        if abs(self.n_substeps * model.opt.timestep - ctrl_dt) > 1e-9:
            raise ValueError(f"ctrl_dt {ctrl_dt} is not a whole number of physics steps of "
                             f"{model.opt.timestep}.")
        self.body = model.body(object_body).id
        joint = model.body_jntadr[self.body]
        self.qpos_adr = model.jnt_qposadr[joint]
        self.qvel_adr = model.jnt_dofadr[joint]

    def time(self) -> float:
        """Simulated seconds."""
        return float(self.data.time)

    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position [3], wxyz quaternion [4]) of the object in the world."""
        q = self.data.qpos[self.qpos_adr: self.qpos_adr + 7]
        return q[:3].copy(), q[3:7].copy()

    def set_object_pose(self, pos, quat) -> None:
        """Places the object (and zeroes its velocity)."""
        self.data.qpos[self.qpos_adr: self.qpos_adr + 3] = pos
        self.data.qpos[self.qpos_adr + 3: self.qpos_adr + 7] = quat
        self.data.qvel[self.qvel_adr: self.qvel_adr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)


class WrenchSim(_Sim):
    """`ap2ap_wrench` on native MuJoCo: a Robot whose command is the object's twist.

    Its "joint positions" are empty and its "joint velocities" are the object's measured
    twist (linear, angular; world frame), as in the environment's student inputs.
    """

    def __init__(self, model: mujoco.MjModel, ctrl_dt: float):
        super().__init__(model, ctrl_dt)
        self.twist = np.zeros(6)

    def observe(self) -> RobotState:
        """Empty joint positions; the object's twist as the joint velocities."""
        _, quat = self.object_pose()
        v = self.data.qvel[self.qvel_adr: self.qvel_adr + 6]
        ang_world = rotations.quat_to_matrix(quat) @ v[3:6]
        return RobotState(np.zeros(0, np.float32),
                          np.concatenate([v[:3], ang_world]).astype(np.float32))

    def command(self, command: np.ndarray) -> None:
        """The twist [lin (m/s), ang (rad/s)], world frame, held until the next command."""
        self.twist = np.asarray(command, np.float64).copy()

    def hold(self) -> None:
        """Stops the object."""
        self.twist = np.zeros(6)

    def wait(self) -> None:
        """One control period of physics."""
        for _ in range(self.n_substeps):
            _, quat = self.object_pose()
            qv = self.data.qvel[self.qvel_adr: self.qvel_adr + 6]
            qv[:3] = self.twist[:3]
            # The free joint's angular velocity is in the body frame.
            qv[3:] = rotations.quat_to_matrix(quat).T @ self.twist[3:]
            mujoco.mj_step(self.model, self.data)
            q = self.data.qpos[self.qpos_adr + 3: self.qpos_adr + 7]
            q /= np.linalg.norm(q)


class ArmHandSim(_Sim):
    """The xArm6 + LEAP hand on native MuJoCo: 22 position servos, joints first in qpos."""

    def __init__(self, model: mujoco.MjModel, ctrl_dt: float, num_joints: int = robot.NUM_JOINTS):
        super().__init__(model, ctrl_dt)
        if model.nu != num_joints:
            raise ValueError(f"Expected {num_joints} actuators, the model has {model.nu}.")
        self.num_joints = num_joints

    def set_joints(self, qpos: np.ndarray) -> None:
        """Places the robot's joints (and sets the servo targets there)."""
        self.data.qpos[: self.num_joints] = qpos
        self.data.qvel[: self.num_joints] = 0.0
        self.data.ctrl[:] = qpos
        mujoco.mj_forward(self.model, self.data)

    def observe(self) -> RobotState:
        """Joint positions and velocities."""
        n = self.num_joints
        return RobotState(self.data.qpos[:n].astype(np.float32),
                          self.data.qvel[:n].astype(np.float32))

    def command(self, command: np.ndarray) -> None:
        """22 joint position targets."""
        self.data.ctrl[:] = command

    def hold(self) -> None:
        """Keeps the current targets."""

    def wait(self) -> None:
        """One control period of physics."""
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)


class CameraPoints:
    """A PointSource: the object's keypoints as seen by one of the model's cameras.

    Args:
      sim: the simulation (a WrenchSim or ArmHandSim).
      keypoints: [N, 3] points in the object's frame (the track's points, in order).
      camera: the MJCF camera's name.
      width, height: image size for the field-of-view test.
      noise_std: Gaussian noise on visible points (metres).
      tolerance: a ray may stop this far (metres) before the point and still see it.
      seed: noise seed.
      trackable: optional [N] bool; False points are never visible (a track's points that
        had no position in its first frame).
    """

    def __init__(self, sim: _Sim, keypoints: np.ndarray, camera: str, width: int = 640,
                 height: int = 480, noise_std: float = 0.0, tolerance: float = 0.004,
                 seed: int = 0, trackable: np.ndarray | None = None):
        self.sim, self.keypoints = sim, np.asarray(keypoints, np.float64)
        self.trackable = (np.ones(len(self.keypoints), bool) if trackable is None
                          else np.asarray(trackable, bool))
        self.camera = sim.model.camera(camera).id
        self.width, self.height = width, height
        self.noise_std, self.tolerance = noise_std, tolerance
        self.rng = np.random.default_rng(seed)
        fovy = np.deg2rad(sim.model.cam_fovy[self.camera])
        self.focal = 0.5 * height / np.tan(0.5 * fovy)
        self._geom = np.zeros(1, np.int32)

    def true_points(self) -> np.ndarray:
        """[N, 3] world positions of the keypoints."""
        pos, quat = self.sim.object_pose()
        return self.keypoints @ rotations.quat_to_matrix(quat).T + pos

    def visibility(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: in the field of view and not occluded."""
        m, d = self.sim.model, self.sim.data
        cam_pos = d.cam_xpos[self.camera]
        cam_mat = d.cam_xmat[self.camera].reshape(3, 3)  # columns: x right, y up, -z forward
        rel = (points - cam_pos) @ cam_mat
        depth = -rel[:, 2]
        u = self.focal * rel[:, 0] / np.maximum(depth, 1e-9) + 0.5 * self.width
        v = -self.focal * rel[:, 1] / np.maximum(depth, 1e-9) + 0.5 * self.height
        visible = (depth > 0) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        for i in np.flatnonzero(visible):
            vec = points[i] - cam_pos
            length = np.linalg.norm(vec)
            # The first surface on the ray (in multiples of vec), -1 when there is none.
            frac = mujoco.mj_ray(m, d, cam_pos, vec, None, 1, -1, self._geom)
            visible[i] = frac < 0 or frac * length >= length - self.tolerance
        return visible

    def read(self) -> PointFrame:
        """The tracked points now (simulation clock)."""
        points = self.true_points()
        visible = self.visibility(points) & self.trackable
        if self.noise_std > 0:
            points = points + self.noise_std * self.rng.standard_normal(points.shape)
        return PointFrame(points, visible, self.sim.time())
