"""Robots: built-ins and a user's own MJCF get the same conditions."""

from __future__ import annotations

import numpy as np
import pytest

from file_errors import DamagedFileError
from sims.conditions import Condition, DisabledActuator, Friction, Payload, Slope, parse_condition
from sims.env import AdaptEnv
from sims.registry import get_robot
from sims.robots import CHEETAH, QUADRUPED, Leg, Robot

USER_MJCF = """
<mujoco model="hopper2">
  <option timestep="0.005"/>
  <worldbody>
    <geom name="ground" type="plane" size="20 20 1"/>
    <body name="base" pos="0 0 0.6">
      <joint name="slide_x" type="slide" axis="1 0 0" limited="false"/>
      <joint name="slide_z" type="slide" axis="0 0 1" limited="false"/>
      <joint name="pitch" type="hinge" axis="0 1 0" limited="false"/>
      <geom type="box" size="0.2 0.1 0.05" mass="3"/>
      <body name="thigh" pos="0 0 -0.05">
        <joint name="hip" type="hinge" axis="0 1 0" range="-1 1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.25" size="0.03"/>
        <body name="shin" pos="0 0 -0.25">
          <joint name="knee" type="hinge" axis="0 1 0" range="-1.5 0"/>
          <geom type="capsule" fromto="0 0 0 0 0 -0.25" size="0.03"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="hip" joint="hip" gear="30" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="knee" joint="knee" gear="30" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


@pytest.fixture
def user_robot(tmp_path):
    path = tmp_path / "hopper2.xml"
    path.write_text(USER_MJCF)
    return Robot.from_mjcf(path, legs=(Leg("leg", ("hip", "knee"), ("thigh", "shin")),),
                           n_substeps=4)


def test_user_mjcf_gets_the_same_conditions(user_robot):
    assert user_robot.floor == "ground"
    assert user_robot.torso == "base"
    assert user_robot.obs_dim == 4 + 5  # qpos without slide_x, plus qvel
    assert user_robot.control_timestep == pytest.approx(0.02)
    base_mass = np.sum(Condition().build(user_robot).body_mass)
    cond = parse_condition("payload:1.2+disabled:knee+friction:0.5+slope:5+shortened:leg:0.5",
                           user_robot)
    model = cond.build(user_robot)
    assert np.sum(model.body_mass) < base_mass + 1.2  # the shortened leg lost mass
    env = AdaptEnv(user_robot, cond, episode_steps=20, seed=0)
    ts = env.reset()
    while not ts.last():
        ts = env.step(np.ones(2))
    assert env.physics.actuator_forces()[1] == 0.0
    assert ts.observation.shape == (9,)


def test_user_mjcf_without_floor_refuses_terrain(tmp_path):
    path = tmp_path / "nofloor.xml"
    path.write_text(USER_MJCF.replace('<geom name="ground" type="plane" size="20 20 1"/>', ""))
    robot = Robot.from_mjcf(path)
    assert robot.floor is None
    Condition((Payload(1.0),)).build(robot)  # non-terrain conditions still apply
    with pytest.raises(ValueError, match="no ground plane"):
        Condition((Slope(3.0),)).build(robot)
    with pytest.raises(ValueError, match="no ground plane"):
        Condition((Friction(0.5),)).build(robot)


def test_malformed_mjcf_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<mujoco><worldbody><body></worldbody></mujoco>")
    with pytest.raises(DamagedFileError, match=r"mjcf='.*broken\.xml' is damaged or not an MJCF "
                                               r"model: .*found 46 bytes starting b'<mujoco>"):
        Robot.from_mjcf(path)
    with pytest.raises(ValueError, match="no such file"):
        Robot.from_mjcf(tmp_path / "missing.xml")
    no_act = tmp_path / "noact.xml"
    no_act.write_text(USER_MJCF.split("<actuator>")[0] + "</mujoco>")
    with pytest.raises(ValueError, match="no actuators"):
        Robot.from_mjcf(no_act)


def test_unknown_robot_leg_and_joint():
    with pytest.raises(ValueError, match="robot='walker'"):
        get_robot("walker")
    with pytest.raises(ValueError, match="leg='middle'"):
        QUADRUPED.leg("middle")
    with pytest.raises(ValueError, match="leg=7"):
        QUADRUPED.leg(7)
    with pytest.raises(ValueError, match="disabled.actuator='hip_9'"):
        Condition((DisabledActuator("hip_9"),)).build(QUADRUPED)


def test_builtin_robots_are_assembled_from_mjcf_via_mjspec():
    for robot in (CHEETAH, QUADRUPED):
        spec = robot.spec()
        assert spec.compile().nu == robot.act_dim
    assert CHEETAH.act_dim == 6 and QUADRUPED.act_dim >= 8
    assert np.sum(CHEETAH.base_model().body_mass) == pytest.approx(14.0, abs=1e-3)
