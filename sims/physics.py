"""Named access to a robot's simulation state, and the two pure-ish step/reset functions.

Callers ask ``physics.forward_velocity()`` or ``physics.actuator_forces()`` instead of doing
index arithmetic on ``qpos``/``qvel``; the index bookkeeping lives in ``sims.robots.Robot``.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np

from sims.robots import Robot

_BAD = (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL)


#: A step counts as flipped when the torso's up axis points below the horizon (tilted past
#: 90°): from there the legs push into the air and a locomotion controller has lost the robot.
FLIPPED_UPRIGHT = 0.0
#: A step counts as tilted when the torso leans more than 60° from upright (cos 60° = 0.5): a
#: cheetah standing on its nose or sitting on its tail is not running, even if it moves forward.
TILTED_UPRIGHT = 0.5


class Physics:
    """A compiled model and its data for one robot, with named accessors."""

    def __init__(self, robot: Robot, model: mujoco.MjModel, data: mujoco.MjData | None = None):
        self.robot = robot
        self.model = model
        self.data = data if data is not None else mujoco.MjData(model)
        self._qpos_index = robot.obs_qpos_index
        self._torso = model.body(robot.torso).id

    # -------------------------------------------------------------- observation
    def observation(self) -> np.ndarray:
        """The flat observation: kept joint positions, then all joint velocities."""
        return np.concatenate([self.data.qpos[self._qpos_index], self.data.qvel])

    def torso_position(self) -> np.ndarray:
        return self.data.xpos[self._torso].copy()

    def torso_height(self) -> float:
        return float(self.data.xpos[self._torso][2])

    def torso_velocity(self) -> np.ndarray:
        """World-frame linear velocity of the torso's origin."""
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, self._torso,
                                 vel, 0)
        return vel[3:].copy()

    def forward_velocity(self) -> float:
        """The task's forward velocity: the root's x velocity, as in the reward."""
        return float(self.observation()[self.robot.forward_velocity_index])

    def upright(self) -> float:
        """z component of the torso's z axis: 1 upright, 0 on its side, -1 upside down."""
        return float(self.data.xmat[self._torso][8])

    def flipped(self) -> bool:
        """Whether the torso is upside down (``upright() < FLIPPED_UPRIGHT``)."""
        return self.upright() < FLIPPED_UPRIGHT

    def tilted(self) -> bool:
        """Whether the torso leans more than 60° from upright (``upright() < TILTED_UPRIGHT``);
        every flipped step is tilted too."""
        return self.upright() < TILTED_UPRIGHT

    def actuator_forces(self) -> np.ndarray:
        """Force or torque each actuator applies at its joint (gear x actuator force, after
        gain, bias and damage), in N or N·m."""
        return self.data.actuator_force * self.model.actuator_gear[:, 0]

    def total_mass(self) -> float:
        return float(np.sum(self.model.body_mass))

    def contact_normals(self) -> np.ndarray:
        """Unit normals of active contacts, ``[ncon, 3]``, pointing from geom1 to geom2."""
        return np.array([self.data.contact[i].frame[:3] for i in range(self.data.ncon)])

    # -------------------------------------------------------------- state
    def get_state(self) -> np.ndarray:
        n = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        s = np.empty(n)
        mujoco.mj_getState(self.model, self.data, s, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        return s

    def diverged(self) -> bool:
        """True if MuJoCo flagged instability or the state holds NaN/inf."""
        if any(self.data.warning[w].number > 0 for w in _BAD):
            return True
        return not (np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel)))

    def swap_model(self, model: mujoco.MjModel) -> None:
        """Continue from the current state under a different model (a mid-episode switch).

        A flat or tilted ground plane of the new model is moved (not turned) to pass through
        the old ground under the torso: a condition's tilt is given about the world origin,
        and without this a slope switched in 50 m from it would put the ground metres above
        or below the robot. Heightfields stay where they are."""
        model = self._anchored(model)
        new = mujoco.MjData(model)
        new.time = self.data.time
        new.qpos[:] = self.data.qpos
        new.qvel[:] = self.data.qvel
        new.act[:] = self.data.act
        new.ctrl[:] = self.data.ctrl
        new.qacc_warmstart[:] = self.data.qacc_warmstart
        mujoco.mj_forward(model, new)
        self.model, self.data = model, new

    def _anchored(self, model: mujoco.MjModel) -> mujoco.MjModel:
        """``model``, or a copy of it (compiled models are shared) with its ground plane
        through the current ground under the torso."""
        old, new = _plane(self.model, self.robot.floor), _plane(model, self.robot.floor)
        if old is None or new is None:
            return model
        x, y = self.data.xpos[self._torso][:2]
        z = _plane_height(self.model.geom_pos[old], self.model.geom_quat[old], x, y)
        model = copy.copy(model)
        model.geom_pos[new] = (x, y, z)
        # The compiler marks a geom at its body's origin "same frame" and then ignores
        # geom_pos: the world's ground plane at the origin is one.
        model.geom_sameframe[new] = mujoco.mjtSameFrame.mjSAMEFRAME_NONE
        return model


def _plane(model: mujoco.MjModel, name: str | None) -> int | None:
    """The id of the geom ``name`` when it is a plane, else None."""
    if name is None:
        return None
    gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
    if gid < 0 or model.geom_type[gid] != mujoco.mjtGeom.mjGEOM_PLANE:
        return None
    return gid


def _plane_height(pos: np.ndarray, quat: np.ndarray, x: float, y: float) -> float:
    """Height at (x, y) of the plane through ``pos`` whose normal is ``quat``'s z axis."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    n = mat.reshape(3, 3)[:, 2]
    return float(pos[2] - (n[0] * (x - pos[0]) + n[1] * (y - pos[1])) / n[2])


def state_observations(robot: Robot, model: mujoco.MjModel, states: np.ndarray) -> np.ndarray:
    """Observations ``[..., obs_dim]`` of full physics states ``[..., S]`` of ``model``
    (``mjSTATE_FULLPHYSICS``, as ``Physics.get_state`` and ``mujoco.rollout`` lay them out), in
    the layout of :meth:`Physics.observation`."""
    t = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
    qpos = states[..., t:t + model.nq]
    qvel = states[..., t + model.nq:t + model.nq + model.nv]
    return np.concatenate([qpos[..., robot.obs_qpos_index], qvel], axis=-1)


def reset(physics: Physics, rng: np.random.Generator, init_noise: float) -> None:
    """Reset to the model's initial pose, with joint noise drawn from ``rng``."""
    m, d = physics.model, physics.data
    mujoco.mj_resetData(m, d)
    d.qpos[:] = m.qpos0 + init_noise * rng.uniform(-1.0, 1.0, size=m.nq)
    d.qvel[:] = init_noise * rng.standard_normal(m.nv)
    _normalise_free_quats(m, d)
    mujoco.mj_forward(m, d)


def step(physics: Physics, ctrl: np.ndarray, n_substeps: int) -> bool:
    """Apply ``ctrl`` for ``n_substeps`` physics steps; return True if the step diverged."""
    physics.data.ctrl[:] = ctrl
    for _ in range(n_substeps):
        mujoco.mj_step(physics.model, physics.data)
    return physics.diverged()


def _normalise_free_quats(m: mujoco.MjModel, d: mujoco.MjData) -> None:
    for j in range(m.njnt):
        if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            a = m.jnt_qposadr[j] + 3
            d.qpos[a:a + 4] /= np.linalg.norm(d.qpos[a:a + 4])
        elif m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            a = m.jnt_qposadr[j]
            d.qpos[a:a + 4] /= np.linalg.norm(d.qpos[a:a + 4])
