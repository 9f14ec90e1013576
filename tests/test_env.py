"""The dm_env environment: conformance for every robot x family, rewards, switches, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_env import test_utils

from sims.conditions import HEALTHY, Condition, DisabledActuator, Schedule, parse_condition
from sims.env import AdaptEnv
from sims.registry import FAMILIES
from sims.rewards import task_reward
from sims.robots import CHEETAH, QUADRUPED

_CASES = []
for _fam in FAMILIES.values():
    _rng = np.random.default_rng(0)
    _CASES.append((_fam.name, "train", _fam.sample(_rng, "train")))
    _CASES.append((_fam.name, "test", _fam.test_conditions[0]))


def _make_conformance(family_name: str, split: str, condition: Condition):
    fam = FAMILIES[family_name]

    class Conformance(test_utils.EnvironmentTestMixin):
        def make_object_under_test(self):
            return AdaptEnv(fam.robot, condition, episode_steps=25, seed=0)

        def make_action_sequence(self):
            rng = np.random.default_rng(0)
            spec = self.environment.action_spec()
            for _ in range(60):
                yield rng.uniform(spec.minimum, spec.maximum)

    return Conformance


# One unittest-style class per robot x family x split, collected by pytest.
for _name, _split, _cond in _CASES:
    _cls = _make_conformance(_name, _split, _cond)
    _cls.__name__ = f"TestConformance_{_name.replace('-', '_')}_{_split}"
    import unittest

    globals()[_cls.__name__] = type(_cls.__name__, (_cls, unittest.TestCase), {})


def test_every_robot_and_family_is_covered():
    robots = {FAMILIES[n].robot.name for n, _, _ in _CASES}
    assert robots == {"cheetah", "quadruped"}
    # NAME@K families register on first use (runs plan at their robot's decision step)
    assert {n for n, _, _ in _CASES} == {n for n in FAMILIES if "@" not in n}


@pytest.mark.parametrize("robot", [CHEETAH, QUADRUPED])
def test_env_reward_equals_vectorised_reward_in_numpy_and_torch(robot):
    env = AdaptEnv(robot, HEALTHY, episode_steps=40, seed=1)
    ts = env.reset()
    rng = np.random.default_rng(0)
    obs, acts, nxt, rewards = [], [], [], []
    prev = ts.observation
    for _ in range(40):
        a = rng.uniform(-1, 1, robot.act_dim)
        ts = env.step(a)
        obs.append(prev)
        acts.append(a)
        nxt.append(ts.observation)
        rewards.append(ts.reward)
        prev = ts.observation
    fn = task_reward(robot)
    o, a, n = map(np.array, (obs, acts, nxt))
    r_np = fn(o, a, n)
    r_t = fn(torch.tensor(o), torch.tensor(a), torch.tensor(n)).numpy()
    np.testing.assert_allclose(r_np, rewards, atol=1e-12)
    np.testing.assert_allclose(r_t, rewards, atol=1e-12)


def test_reward_is_forward_velocity_minus_control_cost():
    fn = task_reward(CHEETAH)
    obs = np.zeros((1, 17))
    nxt = np.zeros((1, 17))
    nxt[0, CHEETAH.forward_velocity_index] = 2.0
    act = np.full((1, 6), 0.5)
    assert fn(obs, act, nxt)[0] == pytest.approx(2.0 - 0.05 * 6 * 0.25)


def test_quadruped_reward_rewards_being_upright():
    fn = task_reward(QUADRUPED)
    q = QUADRUPED.orientation_quat_index
    up, flipped = np.zeros((1, 27)), np.zeros((1, 27))
    up[0, q] = 1.0  # identity quaternion
    flipped[0, q + 1] = 1.0  # 180 degrees about x
    a = np.zeros((1, 8))
    gap = 2 * QUADRUPED.alive_bonus + QUADRUPED.tilt_penalty
    assert fn(up, a, up)[0] - fn(up, a, flipped)[0] == pytest.approx(gap)
    plain = task_reward(QUADRUPED.with_paper_reward())
    assert plain(up, a, up)[0] - plain(up, a, flipped)[0] == pytest.approx(
        2 * QUADRUPED.alive_bonus)


def test_tilt_penalty_is_one_function_for_numpy_and_torch():
    """Cheetah: uprightness is cos(pitch); past the threshold a step costs the penalty, with
    the same arithmetic on numpy (the env) and torch (the planners)."""
    import torch

    fn = task_reward(CHEETAH)
    pitch = CHEETAH.obs_part("qpos/rooty").start
    assert fn.pitch_index == pitch
    angles = np.array([0.0, 1.0, np.arccos(0.25), 2.0, np.pi])  # cos: 1, .54, .25, -.42, -1
    nxt = np.zeros((5, 17))
    nxt[:, pitch] = angles
    obs, act = np.zeros((5, 17)), np.zeros((5, 6))
    r = fn(obs, act, nxt)
    p = CHEETAH.tilt_penalty
    np.testing.assert_allclose(r, [0.0, 0.0, -0.5 * p, -p, -p], atol=1e-9)
    rt = fn(torch.tensor(obs), torch.tensor(act), torch.tensor(nxt))
    np.testing.assert_allclose(rt.numpy(), r, atol=1e-12)
    np.testing.assert_allclose(task_reward(CHEETAH.with_paper_reward())(obs, act, nxt), 0.0)


def test_env_reward_penalises_a_cheetah_on_its_back():
    """Real physics: a cheetah turned onto its back scores the penalty below the same step
    under the paper's plain reward."""
    import mujoco

    rewards = []
    for robot in (CHEETAH, CHEETAH.with_paper_reward()):
        env = AdaptEnv(robot, HEALTHY, episode_steps=5, seed=0)
        env.reset()
        data = env.physics.data
        data.qpos[CHEETAH.base_model().joint("rooty").qposadr[0]] = np.pi
        data.qpos[1] += 0.5  # lift it clear of the floor: one quiet step upside down
        mujoco.mj_forward(env.physics.model, data)
        rewards.append(env.step(np.zeros(6)).reward)
        assert env.physics.upright() < -0.99
    assert rewards[1] - rewards[0] == pytest.approx(CHEETAH.tilt_penalty, abs=1e-6)


def test_tilt_settings_are_validated():
    import dataclasses

    with pytest.raises(ValueError, match="tilt_penalty=-1"):
        dataclasses.replace(CHEETAH, tilt_penalty=-1)
    with pytest.raises(ValueError, match=r"tilt_threshold=2.*\[-1, 1\]"):
        dataclasses.replace(CHEETAH, tilt_threshold=2)


def test_observation_layout_is_documented():
    parts = CHEETAH.obs_parts
    assert [p.name for p in parts][:3] == ["qpos/rootz", "qpos/rooty", "qpos/bthigh"]
    assert sum(p.size for p in parts) == CHEETAH.obs_dim == 17
    assert QUADRUPED.obs_dim == 27 and QUADRUPED.act_dim == 8
    assert CHEETAH.control_timestep == pytest.approx(0.01)
    assert QUADRUPED.control_timestep == pytest.approx(0.02)


def test_mid_episode_switch_happens_at_the_stated_step_and_keeps_state():
    at = 0.3  # seconds -> step 30 at 100 Hz
    sched = Schedule.switch(HEALTHY, Condition((DisabledActuator("bthigh"),)), at)
    env = AdaptEnv(CHEETAH, sched, episode_steps=60, seed=4)
    env.reset()
    rng = np.random.default_rng(0)
    swaps = []
    original_swap = env.physics.swap_model

    def spy(model):
        before = (env.physics.data.time, env.physics.data.qpos.copy(),
                  env.physics.data.qvel.copy())
        original_swap(model)
        after = (env.physics.data.time, env.physics.data.qpos.copy(),
                 env.physics.data.qvel.copy())
        swaps.append((env.step_count, before, after))

    env.physics.swap_model = spy
    for step in range(60):
        env.step(rng.uniform(-1, 1, 6))
        if step < 30:
            assert env.condition.label == "healthy"
            assert env.physics.actuator_forces()[0] != 0.0
        else:
            assert env.condition.label == "disabled(bthigh)"
            assert env.physics.actuator_forces()[0] == 0.0
    assert len(swaps) == 1
    step_at_swap, before, after = swaps[0]
    assert step_at_swap == 30
    assert before[0] == after[0] == pytest.approx(0.3)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])
    assert env.step_count == 60


def test_switch_keeps_position_and_velocity_continuous():
    sched = Schedule.switch(HEALTHY, parse_condition("payload:5"), 0.2)
    env = AdaptEnv(CHEETAH, sched, episode_steps=40, seed=2)
    ts = env.reset()
    obs = [ts.observation]
    for _ in range(40):
        obs.append(env.step(np.zeros(6)).observation)
    jumps = np.abs(np.diff(np.array(obs), axis=0)).max(axis=1)
    # the step across the switch moves no more than the largest ordinary step
    assert jumps[20] <= 1.5 * np.max(np.delete(jumps, 20))


def test_seeding_is_reproducible_and_seeds_differ():
    def run(seed):
        env = AdaptEnv(QUADRUPED, HEALTHY, episode_steps=10, seed=seed)
        return env.reset().observation

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_observation_noise_is_applied_to_observations_not_reward():
    cond = parse_condition("obs_noise:0.1")
    env = AdaptEnv(CHEETAH, cond, episode_steps=10, seed=0)
    ts = env.reset()
    assert np.abs(ts.observation - env.true_observation()).max() > 0.01


def test_bad_action_is_refused():
    env = AdaptEnv(CHEETAH, HEALTHY, episode_steps=10, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(6, np.nan))


def test_episode_length_and_truncation():
    env = AdaptEnv(CHEETAH, HEALTHY, episode_steps=5, seed=0)
    ts = env.reset()
    n = 0
    while not ts.last():
        ts = env.step(np.zeros(6))
        n += 1
    assert n == 5 and ts.discount == 1.0
    with pytest.raises(ValueError, match="episode_steps"):
        AdaptEnv(CHEETAH, HEALTHY, episode_steps=0)


def test_adapt_env_and_sim_robot_share_one_simulator():
    """Same robot, schedule and seed, same actions: AdaptEnv and the runtime's SimRobot give
    identical observations (noise included, across the switch) and rewards."""
    from export.runtime.sim_robot import SimRobot

    sched = Schedule.switch(parse_condition("obs_noise:0.05"),
                            parse_condition("disabled:bthigh+obs_noise:0.1"), 0.2)
    env = AdaptEnv(CHEETAH, sched, episode_steps=40, seed=9)
    sim = SimRobot(CHEETAH, sched, seed=9)
    rng = np.random.default_rng(0)
    env_obs, sim_obs = [env.reset().observation], [sim.reset()]
    rewards, returns, labels = [], [], []
    for _ in range(40):
        a = rng.uniform(-1.2, 1.2, CHEETAH.act_dim)  # beyond the bounds: both clip
        ts = env.step(a)
        sim.act(a)
        env_obs.append(ts.observation)
        sim_obs.append(sim.observe())
        rewards.append(ts.reward)
        returns.append(sim.metrics()["return"])
        labels.append((env.condition.label, sim.metrics()["condition"]))
    assert ts.last() and env.switch_steps == (0, 20) and env.segment == 1
    assert labels[19] == ("obs_noise(0.05)",) * 2
    assert labels[20][0] == labels[20][1] != labels[19][0]  # both switched at step 20
    assert np.abs(env_obs[-1] - env.true_observation()).max() > 0.01  # noise was drawn
    np.testing.assert_array_equal(np.array(env_obs), np.array(sim_obs))
    np.testing.assert_array_equal(np.cumsum(rewards), returns)
