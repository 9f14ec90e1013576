"""Actuator conditions are right for every actuator type: motor, position, velocity, general.

A calibration error is an error of the command the actuator receives (sign * gain * ctrl +
offset), the actuator's own feedback left intact; weak and disabled scale or zero its whole
output force. Checked on a servo-driven leg written here and on the motor-driven cheetah.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from sims.conditions import (
    HEALTHY,
    ActuatorCalibration,
    Condition,
    DisabledActuator,
    WeakenedActuator,
)
from sims.robots import CHEETAH, Leg, Robot

# A leg on a rail, no gravity, one joint per actuator type (tests/assets/servo_leg.xml).
SERVO_LEG = Path(__file__).parent / "assets" / "servo_leg.xml"
TYPES = ("hip", "knee", "ankle", "toe")  # position, velocity, general (affine gain), motor


@pytest.fixture(scope="module")
def servo_leg() -> Robot:
    return Robot.from_mjcf(SERVO_LEG, legs=(Leg("leg", TYPES, ("thigh", "shin", "foot", "toe")),))


def _states(robot: Robot, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random joint positions (within range) and velocities of the healthy model."""
    model = robot.base_model()
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-0.5, 0.5, model.nq), rng.uniform(-2.0, 2.0, model.nv))
            for _ in range(n)]


def _forces(model: mujoco.MjModel, state: tuple[np.ndarray, np.ndarray],
            ctrl: np.ndarray) -> np.ndarray:
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = state
    data.ctrl[:] = ctrl
    mujoco.mj_forward(model, data)
    return data.actuator_force.copy()


def _settle(robot: Robot, condition: Condition, ctrl: np.ndarray, seconds: float = 4.0):
    model = condition.build(robot)
    data = mujoco.MjData(model)
    data.ctrl[:] = ctrl
    for _ in range(int(seconds / model.opt.timestep)):
        mujoco.mj_step(model, data)
    return data, model


def test_position_offset_moves_the_target_and_keeps_the_servo(servo_leg):
    # 0.3 rad commanded with a 0.05 offset: the servo holds 0.35, not its joint limit
    cal = Condition((ActuatorCalibration("hip", offset=0.05),))
    data, _ = _settle(servo_leg, cal, np.array([0.3, 0.0, 0.0, 0.0]))
    assert data.joint("hip").qpos[0] == pytest.approx(0.35, abs=0.01)
    assert abs(data.joint("hip").qvel[0]) < 1e-3


@pytest.mark.parametrize("gain,flipped,expected", [(2.0, False, 0.4), (1.0, True, -0.2),
                                                   (0.5, True, -0.1)])
def test_position_gain_and_sign_scale_the_target(servo_leg, gain, flipped, expected):
    # a gain edit must keep the dampratio's damping (a stable servo), not turn it positive
    cal = Condition((ActuatorCalibration("hip", gain=gain, flipped=flipped),))
    data, model = _settle(servo_leg, cal, np.array([0.2, 0.0, 0.0, 0.0]))
    assert data.joint("hip").qpos[0] == pytest.approx(expected, abs=0.01)
    assert model.actuator("hip").biasprm[2] < 0  # damping, as in the healthy model
    assert model.actuator("hip").biasprm[2] == pytest.approx(
        servo_leg.base_model().actuator("hip").biasprm[2])


def test_velocity_offset_shifts_the_target_speed(servo_leg):
    cal = Condition((ActuatorCalibration("knee", offset=0.1),))
    data, _ = _settle(servo_leg, cal, np.array([0.0, 0.0, 0.0, 0.0]), seconds=0.3)
    assert data.joint("knee").qvel[0] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("actuator", TYPES)
def test_calibration_is_an_error_of_the_command_for_every_type(servo_leg, actuator):
    i = TYPES.index(actuator)
    cal = ActuatorCalibration(actuator, gain=1.5, offset=0.1, flipped=True)
    model = Condition((cal,)).build(servo_leg)
    healthy = servo_leg.base_model()
    ctrl = np.array([0.3, -0.2, 0.25, 0.4])
    received = ctrl.copy()
    received[i] = -1.5 * ctrl[i] + 0.1  # what the miscalibrated actuator acts on
    for state in _states(servo_leg, 20, seed=i):
        np.testing.assert_allclose(_forces(model, state, ctrl),
                                   _forces(healthy, state, received), atol=1e-9)


@pytest.mark.parametrize("actuator", TYPES)
def test_weak_scales_the_whole_output_for_every_type(servo_leg, actuator):
    i = TYPES.index(actuator)
    model = Condition((WeakenedActuator(actuator, 0.5),)).build(servo_leg)
    healthy = servo_leg.base_model()
    rng = np.random.default_rng(i)
    saturated = 0
    for state in _states(servo_leg, 30, seed=10 + i):
        ctrl = rng.uniform(-1, 1, 4)
        f, f0 = _forces(model, state, ctrl), _forces(healthy, state, ctrl)
        assert f[i] == pytest.approx(0.5 * f0[i], abs=1e-9)
        np.testing.assert_allclose(np.delete(f, i), np.delete(f0, i), atol=1e-12)
        saturated += abs(f0[i]) == 3.0
    if actuator == "ankle":  # its force limit is halved too
        assert saturated > 0


@pytest.mark.parametrize("actuator", TYPES)
def test_disabled_gives_zero_force_for_every_type(servo_leg, actuator):
    i = TYPES.index(actuator)
    model = Condition((DisabledActuator(actuator),)).build(servo_leg)
    healthy = servo_leg.base_model()
    for state in _states(servo_leg, 10, seed=20 + i):
        ctrl = np.full(4, 0.7)
        assert _forces(model, state, ctrl)[i] == 0.0
        assert _forces(healthy, state, ctrl)[i] != 0.0


def test_weak_and_calibration_compose_on_a_servo(servo_leg):
    # the output scale and the command error commute: 0.5 * servo force at target 0.9 * u - 0.1
    cond = Condition((WeakenedActuator("hip", 0.5),
                      ActuatorCalibration("hip", gain=0.9, offset=-0.1)))
    model, healthy = cond.build(servo_leg), servo_leg.base_model()
    for state in _states(servo_leg, 10, seed=30):
        f = _forces(model, state, np.array([0.4, 0, 0, 0]))
        f0 = _forces(healthy, state, np.array([0.9 * 0.4 - 0.1, 0, 0, 0]))
        assert f[0] == pytest.approx(0.5 * f0[0], abs=1e-9)


def test_calibrations_of_one_actuator_compound_in_order(servo_leg):
    # u -> 2u + 0.1 -> -(0.5 * (2u + 0.1)) - 0.05 = -u - 0.1
    cond = Condition((ActuatorCalibration("hip", gain=2.0, offset=0.1),
                      ActuatorCalibration("hip", gain=0.5, offset=-0.05, flipped=True)))
    model, healthy = cond.build(servo_leg), servo_leg.base_model()
    for state in _states(servo_leg, 10, seed=40):
        f = _forces(model, state, np.array([0.3, 0, 0, 0]))
        f0 = _forces(healthy, state, np.array([-0.3 - 0.1, 0, 0, 0]))
        assert f[0] == pytest.approx(f0[0], abs=1e-9)


@pytest.mark.parametrize("condition,expected", [
    (DisabledActuator("bshin"), lambda u: 0.0),
    (WeakenedActuator("bshin", 0.5), lambda u: 0.5 * 90 * u),
    (ActuatorCalibration("bshin", gain=1.5, offset=0.1, flipped=True),
     lambda u: 90 * (-1.5 * u + 0.1)),
    (ActuatorCalibration("bshin", offset=-0.2), lambda u: 90 * (u - 0.2)),
])
def test_motor_conditions_on_the_cheetah(condition, expected):
    model = Condition((condition,)).build(CHEETAH)
    for u in (-0.6, 0.0, 0.4):
        ctrl = np.full(6, u)
        data = mujoco.MjData(model)
        data.ctrl[:] = ctrl
        mujoco.mj_forward(model, data)
        torque = data.actuator_force * model.actuator_gear[:, 0]
        assert torque[1] == pytest.approx(expected(u), abs=1e-9)
        healthy = mujoco.MjData(HEALTHY.build(CHEETAH))
        healthy.ctrl[:] = ctrl
        mujoco.mj_forward(HEALTHY.build(CHEETAH), healthy)
        np.testing.assert_allclose(np.delete(data.actuator_force, 1),
                                   np.delete(healthy.actuator_force, 1))
