"""Collection (batched open loop and closed loop) and the ``.npz`` dataset format."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from file_errors import DamagedFileError
from sims.collect import (
    FallReset,
    collect_closed_loop,
    collect_open_loop,
    flipped_share_of,
    initial_states,
    random_actions,
    rollout_states,
)
from sims.conditions import (
    HEALTHY,
    ActuatorCalibration,
    Condition,
    DisabledActuator,
    Friction,
    LockedJoint,
    LostLeg,
    ObservationNoise,
    Payload,
    Schedule,
    Slope,
    WeakenedActuator,
)
from sims.dataset import FORMAT_VERSION, Dataset
from sims.env import AdaptEnv
from sims.episode import run_episode
from sims.registry import get_family
from sims.rewards import task_reward
from sims.robots import CHEETAH, QUADRUPED, Robot

# Conditions whose compiled models have identical sizes (same bodies, geoms, equalities), so
# they may share one batched rollout.
SAME_SIZE = {
    "cheetah": [
        HEALTHY,
        Condition((DisabledActuator("bthigh"),)),
        Condition((WeakenedActuator("fshin", 0.5),)),
        Condition((ActuatorCalibration("ffoot", gain=0.8, offset=0.1),)),
        Condition((Friction(0.5),)),
    ],
    "quadruped": [
        HEALTHY,
        Condition((LostLeg("front_left"),)),
        Condition((LostLeg("back_right", 0.2),)),
        Condition((Slope(8.0),)),
    ],
}
ROBOTS = {"cheetah": CHEETAH, "quadruped": QUADRUPED}


def env_rollouts(robot: Robot, conds, actions: np.ndarray, seed: int) -> np.ndarray:
    """True observations ``[B, T+1, obs_dim]`` from stepping ``AdaptEnv`` one env at a time,
    the envs sharing one generator in order (as the batched collector consumes it)."""
    rng = np.random.default_rng(seed)
    out = []
    for cond, acts in zip(conds, actions, strict=True):
        env = AdaptEnv(robot, cond, episode_steps=len(acts), seed=rng)
        env.reset()
        obs = [env.true_observation()]
        for a in acts:
            env.step(a)
            assert not env.diverged
            obs.append(env.true_observation())
        out.append(np.stack(obs))
    return np.stack(out)


# ------------------------------------------------------------------ batched == stepping
@pytest.mark.parametrize("name", ["cheetah", "quadruped"])
def test_batched_open_loop_equals_stepping_the_env(name):
    robot, conds = ROBOTS[name], SAME_SIZE[name]
    steps, seed = 30, 7
    actions = random_actions(robot, len(conds), steps, np.random.default_rng(1))
    expected = env_rollouts(robot, conds, actions, seed)

    ds = collect_open_loop(robot, conds, steps, np.random.default_rng(seed), actions=actions,
                           nthread=2, progress=False)
    assert ds.stats["dropped_diverged"] == 0 and ds.n_trajectories == len(conds)
    assert ds.obs.shape == (len(conds), steps + 1, robot.obs_dim)
    # the dataset stores float32: bitwise equal to the env's observations rounded to float32
    np.testing.assert_array_equal(ds.obs, expected.astype(np.float32))
    np.testing.assert_array_equal(ds.act, actions.astype(np.float32))

    # and the float64 rollout itself matches the env to 1e-9 (in practice bitwise)
    models = [c.build(robot) for c in conds]
    init = initial_states(robot, models, conds, np.random.default_rng(seed))
    obs, diverged = rollout_states(robot, models, init, actions, nthread=2)
    assert not diverged.any()
    assert np.max(np.abs(obs - expected)) <= 1e-9


def test_thread_count_does_not_change_results():
    robot, conds = CHEETAH, SAME_SIZE["cheetah"] * 2
    actions = random_actions(robot, len(conds), 25, np.random.default_rng(3))
    a = collect_open_loop(robot, conds, 25, np.random.default_rng(4), actions=actions,
                          nthread=1, progress=False)
    b = collect_open_loop(robot, conds, 25, np.random.default_rng(4), actions=actions,
                          nthread=2, chunk=3, progress=False)
    np.testing.assert_array_equal(a.obs, b.obs)


def test_batched_open_loop_with_models_of_different_sizes():
    robot = CHEETAH
    conds = [HEALTHY, Condition((Payload(5.0),)), Condition((LockedJoint("bthigh"),))]
    actions = random_actions(robot, len(conds), 50, np.random.default_rng(1))
    expected = env_rollouts(robot, conds, actions, seed=2)
    ds = collect_open_loop(robot, conds, 50, np.random.default_rng(2), actions=actions,
                           nthread=1, progress=False)
    np.testing.assert_array_equal(ds.obs, expected.astype(np.float32))


# ------------------------------------------------------------------ labels
def test_every_trajectory_carries_its_condition_label(tmp_path):
    family = get_family("cheetah-cripple")
    rng = np.random.default_rng(5)
    conds = family.conditions("train", rng, n=12)
    ds = collect_open_loop(family.robot, conds, 10, rng, progress=False, family=family.name)
    assert ds.n_trajectories == 12 and ds.condition_id.shape == (12,)
    assert len(ds.conditions) == len({c.to_json() for c in conds})  # one table entry each
    for i, c in enumerate(conds):
        assert ds.condition(i) == c
        assert not family.is_held_out(ds.condition(i))
    loaded = Dataset.load(ds.save(tmp_path / "labels.npz"))
    assert [loaded.condition(i) for i in range(12)] == conds
    assert loaded.family == "cheetah-cripple" and loaded.source == "random"


@pytest.mark.parametrize("family_name", ["cheetah-mixed", "cheetah-terrain", "quadruped-slope"])
def test_condition_json_round_trips_for_family_samples(family_name):
    family = get_family(family_name)
    rng = np.random.default_rng(0)
    for c in family.conditions("train", rng, n=10) + family.conditions("test"):
        assert Condition.from_json(c.to_json()) == c


# ------------------------------------------------------------------ divergence
UNSTABLE_MJCF = """
<mujoco>
  <option timestep="0.01"/>
  <worldbody>
    <geom name="floor" type="plane" size="10 10 .1"/>
    <body name="torso" pos="0 0 0.3">
      <joint name="rootx" type="slide" axis="1 0 0"/>
      <joint name="rootz" type="slide" axis="0 0 1"/>
      <geom type="capsule" size=".05 .2" mass="1"/>
      <body name="arm">
        <joint name="hinge" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 .3 0 0" size=".02" mass="0.01"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="motor" joint="hinge" gear="1e12" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


@pytest.fixture
def unstable_robot(tmp_path) -> Robot:
    """A tiny planar robot whose only motor has a gear of 1e12 on a 10 g arm: any command
    gives an acceleration MuJoCo rejects as unstable. Disabling the motor makes it benign."""
    path = tmp_path / "unstable.xml"
    path.write_text(UNSTABLE_MJCF)
    return Robot.from_mjcf(path)


DEAD_MOTOR = Condition((DisabledActuator("motor"),))


def test_the_unstable_robot_really_diverges(unstable_robot):
    env = AdaptEnv(unstable_robot, HEALTHY, episode_steps=10, seed=0)
    env.reset()
    ts = env.step(np.array([0.5]))
    assert env.diverged and ts.last() and ts.discount == 0.0
    env = AdaptEnv(unstable_robot, DEAD_MOTOR, episode_steps=10, seed=0)
    env.reset()
    for _ in range(10):
        env.step(np.array([0.5]))
    assert not env.diverged


def test_diverged_open_loop_rollouts_are_dropped_and_counted(unstable_robot, tmp_path):
    conds = [HEALTHY, DEAD_MOTOR, HEALTHY, DEAD_MOTOR, DEAD_MOTOR]
    rng = np.random.default_rng(0)
    models = [c.build(unstable_robot) for c in conds]
    init = initial_states(unstable_robot, models, conds, np.random.default_rng(0))
    actions = random_actions(unstable_robot, len(conds), 40, rng)
    _, diverged = rollout_states(unstable_robot, models, init, actions, nthread=2)
    assert diverged.tolist() == [True, False, True, False, False]

    ds = collect_open_loop(unstable_robot, conds, 40, np.random.default_rng(0), actions=actions,
                           progress=False)
    assert ds.stats["requested"] == 5
    assert ds.stats["dropped_diverged"] == 2
    assert ds.stats["kept"] == ds.n_trajectories == 3
    assert all(ds.condition(i) == DEAD_MOTOR for i in range(ds.n_trajectories))
    np.testing.assert_array_equal(ds.act, actions[[1, 3, 4]].astype(np.float32))
    assert np.all(np.isfinite(ds.obs)) and np.abs(ds.obs).max() < 1e3
    # the survivors save and load cleanly
    assert Dataset.load(ds.save(tmp_path / "kept.npz")).n_trajectories == 3


def test_diverged_closed_loop_episodes_are_dropped_and_counted(unstable_robot):
    conds = [DEAD_MOTOR, HEALTHY, DEAD_MOTOR]
    ds = collect_closed_loop(unstable_robot, conds, lambda obs: np.array([0.7]), 20,
                             np.random.default_rng(0), progress=False)
    assert ds.stats["dropped_diverged"] == 1 and ds.stats["kept"] == 2
    assert ds.n_trajectories == 2
    assert all(ds.condition(i) == DEAD_MOTOR for i in range(2))
    assert np.all(np.isfinite(ds.obs))


def test_closed_loop_refuses_when_everything_diverges(unstable_robot):
    with pytest.raises(RuntimeError, match="all 2 rollouts diverged"):
        collect_closed_loop(unstable_robot, [HEALTHY, HEALTHY], lambda obs: np.array([1.0]),
                            10, np.random.default_rng(0), progress=False)


# ------------------------------------------------------------------ observation noise
def test_observation_noise_conditions_produce_noisy_observations():
    robot, std, steps = CHEETAH, 0.05, 200
    noisy = Condition((ObservationNoise(std),))
    actions = random_actions(robot, 2, steps, np.random.default_rng(0))
    clean = collect_open_loop(robot, [HEALTHY, HEALTHY], steps, np.random.default_rng(1),
                              actions=actions, progress=False)
    mixed = collect_open_loop(robot, [noisy, HEALTHY], steps, np.random.default_rng(1),
                              actions=actions, progress=False)
    # the noise-free trajectory is untouched, the noisy one differs by ~N(0, std^2)
    np.testing.assert_array_equal(mixed.obs[1], clean.obs[1])
    diff = (mixed.obs[0] - clean.obs[0]).astype(np.float64)
    assert abs(diff.std() - std) < 0.1 * std
    assert abs(diff.mean()) < 0.1 * std
    assert mixed.condition(0).obs_noise_std == std

    env = AdaptEnv(robot, noisy, episode_steps=steps, seed=0)
    ts = env.reset()
    d = [ts.observation - env.true_observation()]
    for a in actions[0]:
        ts = env.step(a)
        d.append(ts.observation - env.true_observation())
    d = np.stack(d)
    assert abs(d.std() - std) < 0.1 * std


# ------------------------------------------------------------------ closed loop + schedule
class WobbleController:
    """A deterministic feedback controller: a gait-like sine minus velocity damping."""

    def __init__(self, act_dim: int):
        self.act_dim = act_dim
        self.k = 0
        self.resets = 0

    def reset(self) -> None:
        self.k = 0
        self.resets += 1

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.k += 1
        phase = 0.3 * self.k + np.arange(self.act_dim)
        return np.clip(0.8 * np.sin(phase) - 0.05 * obs[-self.act_dim:], -1.0, 1.0)


def test_closed_loop_with_a_schedule_records_switch_steps():
    robot, steps, at = CHEETAH, 40, 0.2
    switch_step = int(round(at / robot.control_timestep))
    failure = Condition((DisabledActuator("bthigh"),))
    ctrl = WobbleController(robot.act_dim)
    ds = collect_closed_loop(
        robot, [Schedule.switch(HEALTHY, failure, at), HEALTHY], ctrl, steps,
        np.random.default_rng(3), progress=False, source="closed_loop:wobble")
    assert ctrl.resets == 2
    assert ds.stats["switch_steps"] == [[0, switch_step], [0]]
    assert ds.obs.shape == (2, steps + 1, robot.obs_dim) and ds.act.shape == (2, steps, 6)
    assert ds.condition(0) == failure  # a schedule is labelled with what it switched to
    assert ds.condition(1) == HEALTHY
    assert ds.source == "closed_loop:wobble"

    # same seed and controller under the healthy robot throughout: identical up to the
    # switch, different right after it
    ref = collect_closed_loop(robot, [HEALTHY], WobbleController(robot.act_dim), steps,
                              np.random.default_rng(3), progress=False)
    np.testing.assert_array_equal(ds.obs[0, :switch_step + 1], ref.obs[0, :switch_step + 1])
    assert np.abs(ds.obs[0, switch_step + 1] - ref.obs[0, switch_step + 1]).max() > 1e-6


class OvershootController(WobbleController):
    """The wobble at 1.5x: its actions leave the bounds, so clipping shows."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return 1.5 * super().__call__(obs)


def test_episode_loop_records_what_the_environment_did():
    robot, steps, at = CHEETAH, 30, 0.1
    noisy_failure = Condition((DisabledActuator("bthigh"), ObservationNoise(0.02)))
    schedule = Schedule.switch(HEALTHY, noisy_failure, at)
    ctrl = OvershootController(robot.act_dim)
    calls = []
    rec = run_episode(AdaptEnv(robot, schedule, episode_steps=steps, seed=4), ctrl,
                      record_qpos=True, on_step=calls.append)
    assert ctrl.resets == 1 and len(calls) == steps and calls[-1].last()

    # the same episode written out by hand
    env, twin = AdaptEnv(robot, schedule, episode_steps=steps, seed=4), OvershootController(6)
    ts = env.reset()
    x0 = env.physics.torso_position()[0]
    obs, acts, rewards, segments, speeds, qpos = [ts.observation], [], [], [], [], []
    for _ in range(steps):
        a = twin(ts.observation)
        ts = env.step(a)
        obs.append(ts.observation)
        acts.append(np.clip(a, *robot.action_bounds))
        rewards.append(ts.reward)
        segments.append(env.segment)
        speeds.append(env.physics.forward_velocity())
        qpos.append(env.physics.data.qpos.copy())
    assert ts.last() and rec.steps == steps and not rec.diverged
    np.testing.assert_array_equal(rec.observations, np.stack(obs))
    np.testing.assert_array_equal(rec.actions, np.stack(acts))
    assert np.abs(rec.actions).max() <= 1.0 < np.abs(1.5 * np.stack(acts)).max()
    np.testing.assert_array_equal(rec.rewards, rewards)
    ret = 0.0
    for r in rewards:
        ret += r
    assert rec.ret == ret
    np.testing.assert_array_equal(rec.speeds, speeds)
    np.testing.assert_array_equal(rec.qpos, np.stack(qpos))
    switch = int(round(at / robot.control_timestep))
    np.testing.assert_array_equal(rec.segments, (np.arange(steps) >= switch).astype(int))
    assert rec.distance == env.physics.torso_position()[0] - x0
    assert rec.seconds.shape == (steps,) and (rec.seconds >= 0).all()
    # collection is this loop too: the same trajectory, step for step
    ds = collect_closed_loop(robot, [schedule], OvershootController(6), steps,
                             np.random.default_rng(4), progress=False)
    np.testing.assert_array_equal(ds.obs[0], rec.observations.astype(np.float32))
    np.testing.assert_array_equal(ds.act[0], rec.actions.astype(np.float32))


def test_episode_loop_ends_at_divergence(unstable_robot):
    rec = run_episode(AdaptEnv(unstable_robot, HEALTHY, episode_steps=10, seed=0),
                      lambda obs: np.array([0.7]))
    assert rec.diverged and rec.steps == 1 and rec.ret == 0.0
    assert rec.observations.shape == (2, unstable_robot.obs_dim) and rec.qpos is None


# ------------------------------------------------------------------ dataset files
CONDS = [c.to_json() for c in (HEALTHY, Condition((DisabledActuator("bthigh"),)),
                               Condition((Payload(2.0, (0.1, 0.0, 0.0)),)))]


def make_dataset(n: int = 3, t: int = 5, conditions=None, ids=None, seed: int = 0,
                 robot: str = "cheetah") -> Dataset:
    g = np.random.default_rng(seed)
    conditions = CONDS if conditions is None else conditions
    ids = np.arange(n) % len(conditions) if ids is None else ids
    return Dataset(g.standard_normal((n, t + 1, 17)), g.uniform(-1, 1, (n, t, 6)), ids,
                   list(conditions), robot, "cheetah-cripple", "random",
                   {"requested": n, "dropped_diverged": 0})


def test_dataset_save_load_round_trip_without_pickle(tmp_path):
    ds = make_dataset()
    path = ds.save(tmp_path / "d.npz")
    with np.load(path, allow_pickle=False) as z:  # every array loads without pickle
        arrays = {k: z[k] for k in z.files}
    assert all(a.dtype != object for a in arrays.values())
    assert int(arrays["format_version"]) == FORMAT_VERSION
    back = Dataset.load(path)
    np.testing.assert_array_equal(back.obs, ds.obs)
    np.testing.assert_array_equal(back.act, ds.act)
    np.testing.assert_array_equal(back.condition_id, ds.condition_id)
    assert back.obs.dtype == np.float32 and back.condition_id.dtype == np.int64
    assert back.conditions == ds.conditions
    assert (back.robot, back.family, back.source) == ("cheetah", "cheetah-cripple", "random")
    assert back.stats == ds.stats
    assert [back.condition(i) for i in range(3)] == [ds.condition(i) for i in range(3)]


def test_dataset_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    make_dataset(seed=0).save(path)
    assert os.listdir(tmp_path) == ["d.npz"]  # no temporary file left behind
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half-written")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        make_dataset(seed=1).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["d.npz"]
    assert path.read_bytes() == before
    np.testing.assert_array_equal(Dataset.load(path).obs, make_dataset(seed=0).obs)


def test_dataset_load_rejects_nan_and_inf_with_the_count(tmp_path):
    ds = make_dataset()
    obs, act = ds.obs.copy(), ds.act.copy()
    obs[0, 1, 2] = np.nan
    obs[2, 0, 0] = np.inf
    act[1, 3, 4] = -np.inf
    path = tmp_path / "bad.npz"
    np.savez(path, obs=obs, act=act, condition_id=ds.condition_id,
             conditions=np.array(ds.conditions), robot=np.array("cheetah"),
             format_version=np.array(FORMAT_VERSION))
    with pytest.raises(ValueError, match="3 NaN/inf"):
        Dataset.load(path)
    with pytest.raises(ValueError, match="1 NaN/inf"):
        Dataset(obs[:1], act[:1], ds.condition_id[:1], ds.conditions, "cheetah")


def test_dataset_save_rejects_a_wrong_suffix(tmp_path):
    for name in ("d.npy", "d.npz.tmp", "d"):
        with pytest.raises(ValueError, match=r"must end in \.npz"):
            make_dataset().save(tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_dataset_load_rejects_a_wrong_suffix(tmp_path):
    good = make_dataset().save(tmp_path / "d.npz")
    renamed = tmp_path / "d.txt"
    renamed.write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match=r"\.npz"):
        Dataset.load(renamed)
    np.save(tmp_path / "e.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"\.npz"):
        Dataset.load(tmp_path / "e.npy")


def test_dataset_load_rejects_missing_files_and_arrays(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        Dataset.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "partial.npz", obs=np.zeros((1, 2, 3)))
    with pytest.raises(DamagedFileError, match=r"is damaged or not a dataset: .*no array 'act'"):
        Dataset.load(tmp_path / "partial.npz")


def test_concatenate_merges_condition_tables():
    c0, c1, c2 = CONDS
    a = make_dataset(n=3, conditions=[c0, c1], ids=np.array([0, 1, 1]), seed=1)
    b = make_dataset(n=2, conditions=[c1, c2], ids=np.array([1, 0]), seed=2)
    b.source = "closed_loop"
    m = Dataset.concatenate([a, b])
    assert m.conditions == [c0, c1, c2]
    assert m.n_trajectories == 5
    labels = [json.loads(m.conditions[int(i)]) for i in m.condition_id]
    assert labels == [json.loads(c) for c in (c0, c1, c1, c2, c1)]
    assert [m.condition(i) for i in range(5)] == (
        [a.condition(i) for i in range(3)] + [b.condition(i) for i in range(2)])
    np.testing.assert_array_equal(m.obs, np.concatenate([a.obs, b.obs]))
    np.testing.assert_array_equal(m.act, np.concatenate([a.act, b.act]))
    assert m.source == "closed_loop+random"
    with pytest.raises(ValueError, match="different robots"):
        Dataset.concatenate([a, make_dataset(robot="quadruped")])
    with pytest.raises(ValueError, match="at least one"):
        Dataset.concatenate([])


# ------------------------------------------------------------------ correlated random actions
def test_random_actions_beta_zero_draws_what_it_always_drew():
    lo, hi = QUADRUPED.action_bounds
    expected = np.random.default_rng(3).uniform(lo, hi, size=(4, 30, QUADRUPED.act_dim))
    got = random_actions(QUADRUPED, 4, 30, np.random.default_rng(3))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        random_actions(QUADRUPED, 4, 30, np.random.default_rng(3), beta=0.0), expected)


def test_correlated_random_actions_stay_uniform_in_bounds_and_correlate():
    robot = CHEETAH
    lo, hi = robot.action_bounds
    iid = random_actions(robot, 50, 400, np.random.default_rng(0))
    slow = random_actions(robot, 50, 400, np.random.default_rng(0), beta=0.9)
    again = random_actions(robot, 50, 400, np.random.default_rng(0), beta=0.9)
    np.testing.assert_array_equal(slow, again)  # seeded
    assert (slow >= lo).all() and (slow <= hi).all()
    # the marginal still covers the range uniformly: deciles within 2 % of the uniform's
    u = ((slow - lo) / (hi - lo)).ravel()
    np.testing.assert_allclose(np.quantile(u, np.linspace(0.1, 0.9, 9)),
                               np.linspace(0.1, 0.9, 9), atol=0.02)

    def lag1(a):
        x = a - a.mean()
        return float((x[:, 1:] * x[:, :-1]).mean() / x.var())

    assert abs(lag1(iid)) < 0.02
    assert 0.85 < lag1(slow) < 0.92  # (6 / pi) asin(beta / 2) = 0.89 for uniform marginals
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"beta=.*allowed a number in \[0, 1\)"):
            random_actions(robot, 1, 5, np.random.default_rng(0), beta=bad)


# ------------------------------------------------------------------ fall resets
def _quadruped_obs(upright_steps: list[bool]) -> np.ndarray:
    """Observations ``[1, T+1, obs_dim]`` of the quadruped, upright (identity quaternion) or
    upside down (rotated 180° about x) after each step as listed."""
    q = QUADRUPED.orientation_quat_index
    obs = np.zeros((1, len(upright_steps) + 1, QUADRUPED.obs_dim))
    obs[0, :, q] = 1.0
    for t, up in enumerate(upright_steps):
        if not up:
            obs[0, t + 1, q:q + 4] = (0.0, 1.0, 0.0, 0.0)
    return obs


def test_a_trajectory_ends_after_the_step_that_completes_the_fall():
    rule = FallReset(seconds=0.06)  # 3 control steps of 20 ms
    assert rule.steps(QUADRUPED) == 3 and rule.steps(QUADRUPED.with_frame_skip(2)) == 2
    assert FallReset(seconds=0).steps(QUADRUPED) == 1
    up, down = True, False
    cases = [
        ([up] * 8, 8),  # never falls: the whole trajectory
        ([up, down, down, up, down, down, down, up], 7),  # a 2-step tumble is not a fall
        ([down, down, down, down, up], 3),
        ([up, up, up, up, up, down, down], 7),  # still falling at the end
    ]
    for steps, end in cases:
        assert rule.trajectory_ends(QUADRUPED, _quadruped_obs(steps)).tolist() == [end]
    # leaning 80° (uprightness 0.17) is not upside down; a tilt threshold counts it
    q = QUADRUPED.orientation_quat_index
    side = _quadruped_obs([up] * 5)
    side[0, 1:, q:q + 4] = (np.cos(np.radians(40)), np.sin(np.radians(40)), 0.0, 0.0)
    assert rule.trajectory_ends(QUADRUPED, side).tolist() == [5]
    assert FallReset(upright=0.5, seconds=0.06).trajectory_ends(QUADRUPED, side).tolist() == [3]


def test_fall_reset_settings_are_checked():
    for kwargs, fragment in (({"upright": 1.5}, "upright=1.5"), ({"seconds": -1}, "seconds=-1"),
                             ({"min_steps": 0}, "min_steps=0")):
        with pytest.raises(ValueError, match=fragment):
            FallReset(**kwargs)


def test_fall_reset_is_refused_for_a_robot_without_orientation(unstable_robot):
    for collect in (
        lambda fr: collect_open_loop(unstable_robot, [DEAD_MOTOR], 5, np.random.default_rng(0),
                                     progress=False, fall_reset=fr),
        lambda fr: collect_closed_loop(unstable_robot, [DEAD_MOTOR], lambda o: np.zeros(1), 5,
                                       np.random.default_rng(0), progress=False, fall_reset=fr),
    ):
        with pytest.raises(ValueError, match="no torso orientation"):
            collect(FallReset())


def test_the_built_in_robots_reset_falls_by_default_and_a_custom_one_does_not():
    assert QUADRUPED.fall_reset and QUADRUPED.with_frame_skip(2).fall_reset
    assert CHEETAH.fall_reset and CHEETAH.with_frame_skip(5).fall_reset
    assert not Robot(name="custom", xml=CHEETAH.xml, torso="torso").fall_reset


class ReplayController:
    """Plays one row of actions in order, across resets (as the open loop continues a row)."""

    def __init__(self, actions: np.ndarray):
        self.actions, self.t, self.resets = actions, 0, 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.t += 1
        return self.actions[self.t - 1]


# A touchy rule: leaning 18° (0.95) for 2 steps (of 20 ms) is a fall, so random actions fall
# often.
TOUCHY = FallReset(upright=0.95, seconds=0.04, min_steps=1)


def test_fallen_trajectories_end_and_the_budget_goes_to_fresh_resets():
    robot, steps = QUADRUPED, 150
    actions = random_actions(robot, 1, steps, np.random.default_rng(0))
    ds = collect_open_loop(robot, [HEALTHY], steps, np.random.default_rng(1), actions=actions,
                           progress=False, fall_reset=TOUCHY)
    assert ds.stats["fall_resets"] >= 2 and ds.stats["dropped_short"] == 0
    assert ds.n_trajectories == ds.stats["kept"] == ds.stats["fall_resets"] + 1
    assert ds.n_transitions == steps  # every step of the budget collected
    starts = np.concatenate([[0], np.cumsum(ds.lengths)[:-1]])
    u = task_reward(robot).uprightness(ds.obs.astype(np.float64))
    for i, (start, length) in enumerate(zip(starts, ds.lengths, strict=True)):
        # the rollout's actions continue from trajectory to trajectory
        np.testing.assert_array_equal(ds.act[i, :length],
                                      actions[0, start:start + length].astype(np.float32))
        leaning = u[i, 1:length + 1] < 0.95  # after each step
        runs = leaning[1:] & leaning[:-1]  # 2 leaning steps in a row: a fall
        assert not runs[:-1].any()  # no fall before the last step
        if i < ds.n_trajectories - 1:  # ended by that fall (the last may end on one: the
            assert runs[-1]            # budget is spent then, and it is no reset)
        assert u[i, 0] > 0.9  # each starts from a fresh reset
    assert len({ds.obs[i, 0].tobytes() for i in range(ds.n_trajectories)}) == ds.n_trajectories
    # the closed loop, replaying the same actions, collects the same trajectories bit for bit
    ctrl = ReplayController(actions[0])
    closed = collect_closed_loop(robot, [HEALTHY], ctrl, steps, np.random.default_rng(1),
                                 progress=False, fall_reset=TOUCHY)
    assert ctrl.resets == ds.n_trajectories
    np.testing.assert_array_equal(closed.lengths, ds.lengths)
    np.testing.assert_array_equal(closed.obs, ds.obs)
    np.testing.assert_array_equal(closed.act, ds.act)
    assert closed.stats["fall_resets"] == ds.stats["fall_resets"]
    assert closed.stats["switch_steps"] == [[0]] * ds.n_trajectories


def test_short_trajectories_are_dropped_and_counted():
    robot, steps = QUADRUPED, 150
    rule = FallReset(upright=0.95, seconds=0.04, min_steps=20)
    conds = SAME_SIZE["quadruped"][:3]
    actions = random_actions(robot, len(conds), steps, np.random.default_rng(0))
    ds = collect_open_loop(robot, conds, steps, np.random.default_rng(1), actions=actions,
                           progress=False, fall_reset=rule)
    loose = collect_open_loop(robot, conds, steps, np.random.default_rng(1), actions=actions,
                              progress=False, fall_reset=TOUCHY)
    assert ds.stats["dropped_short"] >= 1
    assert ds.n_trajectories >= 2 * len(conds) and (ds.lengths >= 20).all()
    assert ds.n_transitions < steps * len(conds)
    assert ds.stats["kept"] + ds.stats["dropped_short"] <= ds.stats["fall_resets"] + len(conds)
    # trajectories of one rollout are consecutive, each labelled with its rollout's condition
    rollout = [conds.index(ds.condition(i)) for i in range(ds.n_trajectories)]
    assert rollout == sorted(rollout)
    # the first trajectory of each rollout ends where the loose rule ends it
    for i in range(len(conds)):
        first = loose.lengths[[conds.index(loose.condition(j)) for j in
                               range(loose.n_trajectories)].index(i)]
        assert first < 20 or ds.lengths[rollout.index(i)] == first
    # seeded: the same again
    again = collect_open_loop(robot, conds, steps, np.random.default_rng(1), actions=actions,
                              progress=False, fall_reset=rule)
    np.testing.assert_array_equal(again.obs, ds.obs)


def test_flipped_share_of_a_dataset():
    up, down = True, False
    obs = np.concatenate([_quadruped_obs([up, down, down, up]),
                          _quadruped_obs([down, up, up, up])])
    ds = Dataset(obs, np.zeros((2, 4, QUADRUPED.act_dim)), [0, 0], [HEALTHY.to_json()],
                 "quadruped", lengths=np.array([4, 2]))
    assert flipped_share_of(ds, QUADRUPED) == pytest.approx(3 / 6)
