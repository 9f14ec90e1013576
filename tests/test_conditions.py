"""Each condition changes the physics as intended, and bad input is refused before simulation."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from sims import terrain
from sims.conditions import (
    HEALTHY,
    ActuatorCalibration,
    Condition,
    ConditionError,
    DisabledActuator,
    Friction,
    Heightfield,
    LockedJoint,
    LostLeg,
    Payload,
    Schedule,
    ShortenedLeg,
    Slope,
    WeakenedActuator,
    parse_condition,
)
from sims.env import AdaptEnv
from sims.physics import Physics
from sims.robots import CHEETAH, QUADRUPED


def _forces(robot, cond, ctrl, qvel_zero=True):
    """Actuator forces at the initial pose for a given control."""
    model = cond.build(robot)
    phys = Physics(robot, model)
    mujoco.mj_resetData(model, phys.data)
    phys.data.ctrl[:] = ctrl
    mujoco.mj_forward(model, phys.data)
    return phys.actuator_forces()


@pytest.mark.parametrize("robot", [CHEETAH, QUADRUPED])
def test_payload_adds_exactly_its_mass_at_its_offset(robot):
    base = HEALTHY.build(robot)
    offset = (0.2, 0.0, 0.05)
    model = Condition((Payload(1.5, offset),)).build(robot)
    assert np.sum(model.body_mass) - np.sum(base.body_mass) == pytest.approx(1.5, abs=1e-9)
    torso = model.body(robot.torso).id
    # the torso's centre of mass moves towards the payload by the lever rule
    m0 = base.body_mass[torso]
    expected = (m0 * base.body_ipos[torso] + 1.5 * np.array(offset)) / (m0 + 1.5)
    np.testing.assert_allclose(model.body_ipos[torso], expected, atol=1e-6)


def test_disabled_actuator_delivers_zero_force():
    ctrl = np.ones(6)
    f = _forces(CHEETAH, Condition((DisabledActuator("bthigh"),)), ctrl)
    healthy = _forces(CHEETAH, HEALTHY, ctrl)
    assert f[0] == 0.0 and healthy[0] == pytest.approx(120.0)
    np.testing.assert_allclose(f[1:], healthy[1:])


def test_disabled_actuator_produces_no_motion_at_its_joint_beyond_passive():
    # Commanding only the disabled actuator must leave the robot as if it were commanded zero.
    cond = Condition((DisabledActuator("bthigh"),))
    a = np.zeros(6)
    b = np.zeros(6)
    b[0] = 1.0
    runs = []
    for act in (a, b):
        env = AdaptEnv(CHEETAH, cond, episode_steps=30, seed=3)
        env.reset()
        for _ in range(30):
            ts = env.step(act)
        runs.append(ts.observation)
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-12)


def test_weakened_actuator_scales_its_force():
    ctrl = np.full(6, 0.5)
    f = _forces(CHEETAH, Condition((WeakenedActuator("fshin", 0.3),)), ctrl)
    healthy = _forces(CHEETAH, HEALTHY, ctrl)
    assert f[4] == pytest.approx(0.3 * healthy[4])
    np.testing.assert_allclose(np.delete(f, 4), np.delete(healthy, 4))


def test_calibration_gain_offset_and_sign():
    ctrl = np.full(6, 0.4)
    healthy = _forces(CHEETAH, HEALTHY, ctrl)
    cal = ActuatorCalibration("bshin", gain=1.5, offset=0.1, flipped=True)
    f = _forces(CHEETAH, Condition((cal,)), ctrl)
    gear = 90.0
    assert healthy[1] == pytest.approx(gear * 0.4)
    assert f[1] == pytest.approx(gear * (-1.5 * 0.4 + 0.1))


def test_friction_sets_the_ground_contact_friction():
    model = Condition((Friction(0.3),)).build(CHEETAH)
    env = AdaptEnv(CHEETAH, Condition((Friction(0.3),)), episode_steps=100, seed=0)
    env.reset()
    for _ in range(60):
        env.step(np.zeros(6))
    d = env.physics.data
    assert d.ncon > 0
    assert all(d.contact[i].friction[0] == pytest.approx(0.3) for i in range(d.ncon))
    assert model.geom("floor").friction[0] == pytest.approx(0.3)


@pytest.mark.parametrize("robot,deg", [(CHEETAH, 12.0), (QUADRUPED, -15.0)])
def test_slope_tilts_the_support_by_the_stated_angle(robot, deg):
    env = AdaptEnv(robot, Condition((Slope(deg),)), episode_steps=200, seed=0)
    env.reset()
    for _ in range(80):
        env.step(np.zeros(robot.act_dim))
    normals = env.physics.contact_normals()
    assert len(normals) > 0, "robot should rest on the slope"
    for n in normals:
        angle = math.degrees(math.acos(abs(n[2])))
        assert angle == pytest.approx(abs(deg), abs=1e-6)
        # uphill in +x: the normal leans back towards -x
        assert np.sign(-n[0] * np.sign(n[2])) == np.sign(deg)


def test_heightfield_matches_its_profile():
    cond = Condition((Heightfield.profile("hill"),))
    model = cond.build(CHEETAH)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    heights = terrain.profile("hill")
    floor = model.geom("floor").id
    geomid = np.zeros(1, dtype=np.int32)
    for col in (0, 70, 85, 90, 95, 100, 120, 400):
        x = terrain.START_X + col * terrain.COLUMN_WIDTH
        dist = mujoco.mj_ray(model, data, np.array([x, 0.0, 5.0]), np.array([0, 0, -1.0]),
                             None, 1, -1, geomid)
        assert geomid[0] == floor
        assert 5.0 - dist == pytest.approx(heights[col], abs=2e-3)
    assert heights.max() == pytest.approx(0.6)


def test_terrain_profiles_follow_the_paper():
    assert terrain.profile("hill").max() == pytest.approx(0.6)
    assert terrain.profile("basin").min() == pytest.approx(-0.55)
    assert terrain.profile("gentle").max() == pytest.approx(1.0)
    assert terrain.profile("steep").max() == pytest.approx(4.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        h = terrain.random_ramps(rng)
        assert h.min() >= 0.0 and h.max() <= 1.0 + 1e-12
        assert h[np.argmax(h != 0)] > 0  # the first ramp goes uphill


def test_locked_joint_stays_at_its_position():
    cond = Condition((LockedJoint("bshin", math.degrees(0.3)),))  # degrees, as documented
    env = AdaptEnv(CHEETAH, cond, episode_steps=200, seed=0)
    env.reset()
    rng = np.random.default_rng(1)
    angles = []
    for _ in range(100):
        env.step(rng.uniform(-1, 1, 6))
        angles.append(env.physics.data.joint("bshin").qpos[0])
    assert np.max(np.abs(np.array(angles) - 0.3)) < 0.05
    healthy = AdaptEnv(CHEETAH, HEALTHY, episode_steps=200, seed=0)
    healthy.reset()
    free = []
    for _ in range(100):
        healthy.step(rng.uniform(-1, 1, 6))
        free.append(healthy.physics.data.joint("bshin").qpos[0])
    assert np.std(free) > 5 * np.std(angles)


def test_lost_leg_disables_its_motors_and_shrinks_it():
    base = HEALTHY.build(QUADRUPED)
    model = Condition((LostLeg("back_right", stump=0.5),)).build(QUADRUPED)
    f = _forces(QUADRUPED, Condition((LostLeg("back_right"),)), np.ones(8))
    assert f[6] == 0.0 and f[7] == 0.0 and np.all(f[:6] != 0.0)
    g0, g1 = base.geom("fourth_ankle_geom"), model.geom("fourth_ankle_geom")
    assert g1.size[1] == pytest.approx(0.5 * g0.size[1])  # capsule half-length halved
    assert model.body("foot_4").pos == pytest.approx(0.5 * base.body("foot_4").pos)
    assert np.sum(model.body_mass) < np.sum(base.body_mass)
    # other legs untouched
    untouched = base.geom("left_ankle_geom").size[1]
    assert model.geom("left_ankle_geom").size[1] == pytest.approx(untouched)


def test_shortened_leg_scales_segments():
    base = HEALTHY.build(CHEETAH)
    model = Condition((ShortenedLeg("front", 0.6),)).build(CHEETAH)
    for g in ("fthigh", "fshin", "ffoot"):
        assert model.geom(g).size[1] == pytest.approx(0.6 * base.geom(g).size[1])
    assert model.body("fshin").pos == pytest.approx(0.6 * base.body("fshin").pos)
    assert model.body("fthigh").pos == pytest.approx(base.body("fthigh").pos)  # hip stays
    assert model.geom("bthigh").size[1] == pytest.approx(base.geom("bthigh").size[1])


def test_conditions_compose_and_round_trip():
    c = parse_condition("disabled:bthigh+payload:2:0.1,0,0+friction:0.5+obs_noise:0.01")
    assert len(c.modifiers) == 4
    assert Condition.from_json(c.to_json()) == c
    c2 = Condition((DisabledActuator("bthigh"),)) + Payload(2.0, (0.1, 0.0, 0.0))
    assert c2.modifiers[1] == c.modifiers[1]
    model = c.build(CHEETAH)
    assert np.sum(model.body_mass) == pytest.approx(16.0, abs=1e-5)
    assert c.obs_noise_std == 0.01


@pytest.mark.parametrize("text,fragment", [
    ("payload:0", "payload.mass=0.0"),
    ("payload:-2", "payload.mass=-2.0"),
    ("payload:1:0.9,0,0", "payload.offset.x=0.9"),
    ("slope:35", "slope.degrees=35.0"),
    ("slope:18+friction:0.2", "can stand on"),
    ("disabled:knee", "disabled.actuator='knee'"),
    ("locked:elbow", "locked.joint='elbow'"),
    ("locked:bshin:60", "locked.position=60.0"),  # degrees: bshin's range is about -45..45
    ("lost_leg:middle", "leg='middle'"),
    ("weak:bthigh:0", "weak.factor=0.0"),
    ("friction:50", "friction.coefficient=50.0"),
    ("calibration:bthigh:gain=9", "calibration.gain=9.0"),
    ("obs_noise:-1", "obs_noise.std=-1.0"),
    ("terrain:moon", "profile='moon'"),
    ("warp:9", "kind='warp'"),
])
def test_bad_conditions_name_field_value_and_range(text, fragment):
    with pytest.raises(ValueError) as e:
        parse_condition(text, CHEETAH)
    assert fragment in str(e.value)


def test_validation_happens_before_any_simulation(monkeypatch):
    calls = []
    monkeypatch.setattr(mujoco, "mj_step", lambda *a: calls.append(1))
    with pytest.raises(ValueError):
        AdaptEnv(CHEETAH, Schedule.switch(HEALTHY, parse_condition("payload:99"), 1.0))
    assert calls == []


def test_two_terrains_are_refused():
    with pytest.raises(ValueError, match="at most one terrain"):
        Condition((Slope(5.0), Heightfield.profile("hill")))


def test_schedule_validation():
    with pytest.raises(ConditionError, match="allowed 0.0"):
        Schedule(((1.0, HEALTHY),))
    with pytest.raises(ConditionError, match="allowed a finite time after"):
        Schedule(((0.0, HEALTHY), (2.0, HEALTHY), (1.0, HEALTHY)))


def test_locked_joint_positions_are_degrees():
    model = parse_condition("locked:bthigh:-20", CHEETAH).build(CHEETAH)
    env = AdaptEnv(CHEETAH, Condition((LockedJoint("bthigh", -20.0),)), episode_steps=10, seed=0)
    env.reset()
    assert env.physics.data.joint("bthigh").qpos[0] == pytest.approx(math.radians(-20.0))
    assert model.eq_data[0, 0] == pytest.approx(math.radians(-20.0))


@pytest.mark.parametrize("text,fragment", [
    # duplicates and contradictions
    ("payload:1+payload:2", "at most one"),
    ("locked:bthigh+locked:bthigh:10", "locked.joint='bthigh' appears twice"),
    ("disabled:bshin+disabled:bshin", "disabled.actuator='bshin' appears twice"),
    ("weak:bshin:0.5+weak:bshin:0.8", "weak.actuator='bshin' appears twice"),
    ("disabled:bthigh+weak:bthigh:0.5", "weak.actuator='bthigh' is also disabled: allowed no"),
    ("calibration:fthigh:gain=2+disabled:fthigh", "calibration.actuator='fthigh' is also disabled"),
    ("shortened:back:0.5+shortened:back:0.6", "shortened.leg='back' appears twice"),
    ("slope:5+terrain:hill", "at most one"),
    ("friction:0.5+friction:0.6", "at most one"),
    # calibrations of one actuator compound, within the documented range
    ("calibration:bthigh:gain=3+calibration:bthigh:gain=3+calibration:bthigh:gain=3",
     "calibration.gain (compounded over 3 calibrations of 'bthigh')=27.0"),
    ("calibration:bthigh:gain=0.3+calibration:bthigh:gain=0.3",
     "calibration.gain (compounded over 2 calibrations of 'bthigh')=0.09"),
    ("calibration:bthigh:offset=0.4+calibration:bthigh:offset=0.4", "allowed [-0.5, 0.5]"),
    # malformed strings: the part and its syntax
    ("weak:bthigh", "condition 'weak:bthigh' has 1 field(s) after 'weak': allowed 2; syntax weak:"),
    ("weak:bthigh:half", "weak.factor='half' is not a number: allowed a number; syntax weak:"),
    ("calibration:bthigh:flipped=true", "calibration.flipped='true' is not allowed: allowed 0"),
    ("calibration:bthigh:bias=1", "'bias=1' names an unknown key: allowed keys gain, offset"),
    ("calibration:bthigh:gain", "'gain' is not key=value"),
    ("calibration:bthigh:gain=1,gain=2", "'gain=2' repeats a key"),
    ("payload:1:0.1,0", "payload.offset='0.1,0': allowed 3 numbers"),
    ("slope:10:3", "has 2 field(s) after 'slope': allowed 1"),
    ("disabled:bthigh+", "condition '': kind='' is unknown"),
])
def test_compositions_and_malformed_strings_are_refused(text, fragment):
    with pytest.raises(ConditionError) as e:
        parse_condition(text, CHEETAH)
    assert fragment in str(e.value)


def test_a_lost_leg_takes_no_other_actuator_modifier():
    with pytest.raises(ConditionError, match="belongs to leg 'back_right'"):
        parse_condition("lost_leg:back_right+weak:ankle_4:0.5", QUADRUPED)
    with pytest.raises(ConditionError, match="one of the two per leg"):
        parse_condition("lost_leg:back_right+shortened:back_right:0.6", QUADRUPED)
    parse_condition("lost_leg:back_right+weak:ankle_3:0.5", QUADRUPED).build(QUADRUPED)


def test_compatible_actuator_modifiers_compose():
    c = parse_condition("weak:bthigh:0.5+calibration:bthigh:gain=1.5,offset=0.1"
                        "+calibration:bthigh:gain=2,flipped=1", CHEETAH)
    c.build(CHEETAH)
    assert Condition.from_json(c.to_json()) == c


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ConditionError, match="weak.strength is unknown"):
        Condition.from_dict({"modifiers": [{"kind": "weak", "actuator": "bthigh",
                                            "strength": 0.5}]})


@pytest.mark.parametrize("before,after", [("healthy", "slope:10"), ("slope:-8", "slope:12"),
                                          ("slope:10", "healthy")])
def test_a_ground_switched_far_from_the_origin_continues_under_the_robot(before, after):
    # A tilt is given about the world origin; switched in 60 m away, the new ground must pass
    # through the old ground under the torso instead of jumping metres above or below it.
    from sims.core import Simulator

    schedule = Schedule.switch(parse_condition(before, CHEETAH), parse_condition(after, CHEETAH),
                               0.05)
    sim = Simulator(CHEETAH, schedule)
    sim.reset(np.random.default_rng(0))
    phys = sim.physics
    floor = phys.model.geom(CHEETAH.floor).id
    # rootx, rootz: the torso 60 m from the origin, at its height above the ground there
    phys.data.qpos[0] = 60.0
    phys.data.qpos[1] += 60.0 * math.tan(math.radians(float(before.split(":")[1])) if ":" in
                                          before else 0.0)
    mujoco.mj_forward(phys.model, phys.data)

    def gap() -> float:  # torso height above the ground plane under it
        p, q = phys.model.geom_pos[floor], phys.model.geom_quat[floor]
        m = np.zeros(9)
        mujoco.mju_quat2Mat(m, q)
        n = m.reshape(3, 3)[:, 2]
        x, y, z = phys.data.xpos[phys.model.body(CHEETAH.torso).id]
        return float(np.dot(n, [x, y, z] - p))

    before_gap = gap()
    for _ in range(5):  # the switch lands at step 5
        sim.step(np.zeros(CHEETAH.act_dim))
    assert sim.segment == 0
    sim.step(np.zeros(CHEETAH.act_dim))
    assert sim.segment == 1
    phys = sim.physics
    # the plane moved, not turned: its tilt is the new condition's
    tilt = math.degrees(math.acos(abs(np.clip(_normal_z(phys, floor), -1, 1))))
    assert tilt == pytest.approx(abs(float(after.split(":")[1])) if ":" in after else 0.0,
                                 abs=1e-6)
    assert abs(gap() - before_gap) < 0.1  # the robot is still standing on it
    for _ in range(50):
        sim.step(np.zeros(CHEETAH.act_dim))
    assert not sim.diverged and 0.0 < gap() < 1.0


def _normal_z(phys: Physics, geom: int) -> float:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, phys.model.geom_quat[geom])
    return float(m[8])
