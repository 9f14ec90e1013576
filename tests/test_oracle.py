"""The oracle (the planner on the true simulator), the flipped share and the normalised score."""

from __future__ import annotations

import copy
import json
import math

import mujoco
import numpy as np
import pytest
import torch

from adapt_cli import main
from adaptive_control.evaluation.episodes import (
    MethodSpec,
    PlannerSizes,
    RandomMethod,
    Scenario,
    flipped_share,
    method_episode,
    tilted_share,
)
from adaptive_control.evaluation.oracle import OracleMethod, OraclePredictor
from adaptive_control.evaluation.report import aggregate
from adaptive_control.planning import rollout_returns
from adaptive_control.training import loop as training
from adaptive_control.training.config import load_config
from sims.conditions import HEALTHY, Schedule
from sims.env import AdaptEnv
from sims.episode import run_episode
from sims.registry import get_family

FAMILY = get_family("cheetah-cripple")
HEALTHY_FIXED = Scenario("fixed:healthy", Schedule.fixed(HEALTHY), None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # at every control step, so the oracle's physics is FAMILY's (10 ms)
    ckpt = training.train(load_config(preset="tiny", overrides=["iterations=1",
                                                                 "decision_steps=1"]),
                          root / "grbal", progress=False)
    return ckpt


def test_oracle_predictions_equal_stepping_the_environment():
    """From the env's state mid-episode (the held-out condition in force), the predicted
    observations and the planner's returns equal stepping copies of the env."""
    robot = FAMILY.robot
    env = AdaptEnv(robot, FAMILY.test_conditions[0], episode_steps=100, seed=1)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(15):
        env.step(rng.uniform(-1, 1, robot.act_dim))
    n, h = 4, 6
    actions = rng.uniform(-1, 1, (n, h, robot.act_dim))
    expected_obs = np.empty((n, h, robot.obs_dim))
    expected_ret = np.zeros(n)
    for i in range(n):
        twin = copy.deepcopy(env)
        for t in range(h):
            expected_ret[i] += twin.step(actions[i, t]).reward
            expected_obs[i, t] = twin.true_observation()

    pred = OraclePredictor.from_physics(env.physics)
    obs = torch.from_numpy(env.true_observation()).expand(n, -1)
    state = pred.initial_state(n)
    for t in range(h):
        obs, state = pred(obs, torch.from_numpy(actions[:, t]), state)
        np.testing.assert_allclose(obs.numpy(), expected_obs[:, t], rtol=0, atol=1e-9)
    returns = rollout_returns(OraclePredictor.from_physics(env.physics), env.reward_fn,
                              torch.from_numpy(env.true_observation()), torch.from_numpy(actions))
    np.testing.assert_allclose(returns.numpy(), expected_ret, rtol=0, atol=1e-9)
    assert env.step_count == 15  # the oracle never touched the env's own state


def test_oracle_beats_random_on_the_healthy_cheetah(tiny_run):
    """Over the same seeds; per seed random shooting with a perfect model can still get stuck
    (64 candidates from rest), so the means are compared, with a margin."""
    oracle = MethodSpec("oracle", OracleMethod(str(tiny_run)))
    random = MethodSpec("random", RandomMethod())
    sizes = PlannerSizes(num_candidates=64, horizon=10)
    returns: dict[str, list[float]] = {"oracle": [], "random": []}
    for seed in (0, 1, 2):
        o = method_episode(oracle, FAMILY.name, HEALTHY_FIXED, seed, 60, planner=sizes)
        r = method_episode(random, FAMILY.name, HEALTHY_FIXED, seed, 60, planner=sizes)
        assert o.steps == r.steps == 60
        assert o.flipped == r.flipped == 0.0  # upright all episode
        assert math.isnan(o.pred_error_k)  # no model, no prediction error
        returns["oracle"].append(o.ret)
        returns["random"].append(r.ret)
    assert np.mean(returns["oracle"]) > np.mean(returns["random"]) + 5.0, returns


def test_oracle_needs_its_environment(tiny_run):
    actor = OracleMethod(str(tiny_run))(FAMILY, 0, PlannerSizes())
    with pytest.raises(RuntimeError, match="bind_env"):
        actor.controller(np.zeros(FAMILY.robot.obs_dim))


def test_flipped_share_of_a_robot_started_upside_down():
    robot = FAMILY.robot
    env = AdaptEnv(robot, HEALTHY, episode_steps=30, seed=0)
    reset = env.sim.reset

    def upside_down(rng):
        reset(rng)
        d = env.physics.data
        d.qpos[env.physics.model.joint("rooty").qposadr[0]] += np.pi  # on its back
        mujoco.mj_forward(env.physics.model, d)

    env.sim.reset = upside_down
    rng = np.random.default_rng(0)
    rec = run_episode(env, lambda obs: rng.uniform(-1, 1, robot.act_dim))
    assert rec.steps == 30 and np.all(rec.upright < -0.5)
    assert flipped_share(rec.upright) == 1.0
    upright = run_episode(AdaptEnv(robot, HEALTHY, episode_steps=30, seed=0),
                          lambda obs: np.zeros(robot.act_dim))
    assert np.all(upright.upright > 0.5) and flipped_share(upright.upright) == 0.0
    assert tilted_share(rec.upright) == 1.0 and tilted_share(upright.upright) == 0.0


def test_a_nose_stand_is_tilted_but_not_flipped():
    """Pitched 70° nose-down the torso counts as tilted beyond 60°, not as flipped; at 50° as
    neither; on its back as both."""
    env = AdaptEnv(FAMILY.robot, HEALTHY, episode_steps=20, seed=0)
    env.reset()
    phys = env.physics
    trace = []
    for pitch, tilted, flipped in ((70, True, False), (50, False, False), (180, True, True)):
        phys.data.qpos[phys.model.joint("rooty").qposadr[0]] = np.radians(pitch)
        mujoco.mj_forward(phys.model, phys.data)
        assert (phys.tilted(), phys.flipped()) == (tilted, flipped), pitch
        trace.append(phys.upright())
    assert tilted_share(trace) == pytest.approx(2 / 3)
    assert flipped_share(trace) == pytest.approx(1 / 3)


def test_report_scores_random_0_and_the_oracle_1(tiny_run, tmp_path):
    out = tmp_path / "report"
    rc = main(["eval", "--family", "cheetah-cripple", "--decision-steps", "1",
               "--method", f"oracle=oracle:{tiny_run}",
               "--method", "random", "--seeds", "2", "--duration", "1.5",
               "--scenarios", "fixed", "--candidates", "16", "--horizon", "4",
               "--workers", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    kinds = {m["name"]: m["kind"] for m in res["meta"]["methods"]}
    assert kinds == {"oracle": "oracle", "random": "random"}
    score = {r["method"]: r["score"] for r in res["summary"]}
    assert score["random"] == 0.0 and score["oracle"] == pytest.approx(1.0)
    assert all("flipped" in e for e in res["episodes"])
    md = (out / "summary.md").read_text()
    assert "| return | score | speed (m/s) | distance (m) | flipped | tilted |" in md
    assert all(0.0 <= e["tilted"] <= 1.0 for e in res["episodes"])
    assert "score = (R − R_random) / (R_oracle − R_random)" in md
    assert "| fixed:disabled(bthigh) | random | " in md and " | 0.00 | " in md

    # Without the oracle there is nothing to normalise by: no score column.
    from adaptive_control.evaluation.report import episodes_from_results, markdown_table

    eps, _ = episodes_from_results(out / "results.json")
    rows = aggregate([e for e in eps if e.method == "random"])
    assert "score" not in rows[0] and "| score |" not in markdown_table(rows)
    assert "flipped" in markdown_table(rows)
