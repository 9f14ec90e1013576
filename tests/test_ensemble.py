"""Ensembles of learners: rows routed member-major, candidates scored under every member,
trained side by side, reloaded, evaluated, and refused where one model is required."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from adaptive_control.builders import build_learner, learner_from_checkpoint, mbde_from_mb
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.config_loader import ConfigError
from adaptive_control.evaluation.episodes import (
    LearnerMethod,
    MethodSpec,
    method_episode,
    scenarios_for,
)
from adaptive_control.evaluation.model_eval import heldout_data, prediction_errors
from adaptive_control.learners import Ensemble, EnsemblePredictor, MLPPredictor
from adaptive_control.planning.objective import TrajectoryObjective, rollout_returns
from adaptive_control.planning.planners import make_objective, planner_config
from adaptive_control.training import loop as training
from adaptive_control.training.config import load_config
from sims.registry import get_family
from sims.rewards import task_reward
from tests.support import tiny_config, tiny_learner


def _members(n: int = 3) -> list:
    cfg = tiny_config("grbal")
    out = []
    for i in range(n):
        learner = tiny_learner(cfg, seed=0)
        gen = torch.Generator().manual_seed(i)
        with torch.no_grad():  # as after training: members with weights of their own
            for p in learner.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
        out.append(learner)
    return out


def test_each_candidate_is_scored_under_every_member_and_averaged():
    members = _members(3)
    robot = get_family("cheetah-cripple").robot
    reward = task_reward(robot)
    obs = torch.randn(robot.obs_dim)
    actions = torch.rand(5, 4, robot.act_dim) * 2 - 1
    ens = EnsemblePredictor([m.prior() for m in members])
    objective = make_objective(planner_config("mppi", horizon=4), ens, reward, obs)
    assert objective.members == 3
    alone = torch.stack([rollout_returns(MLPPredictor(m.model), reward, obs, actions)
                         for m in members])
    assert not torch.allclose(alone[0], alone[1])  # the members differ
    torch.testing.assert_close(objective(actions), alone.mean(0))
    # one member is the single model, bit for bit
    one = TrajectoryObjective(EnsemblePredictor([members[0].prior()]), reward, obs, members=1)
    torch.testing.assert_close(one(actions), alone[0], rtol=0, atol=0)


def test_an_ensemble_predictor_refuses_a_batch_it_cannot_split():
    ens = EnsemblePredictor([m.prior() for m in _members(2)])
    with pytest.raises(ValueError, match="multiple of 2"):
        ens.initial_state(3)


def test_an_ensemble_trains_reloads_and_evaluates(tmp_path):
    cfg = load_config(preset="tiny", overrides=["ensemble=2", "iterations=1"])
    path = training.train(cfg, tmp_path / "run", progress=False)
    learner, back = learner_from_checkpoint(load_checkpoint(path))
    assert back.ensemble == 2 and isinstance(learner, Ensemble) and len(learner.members) == 2
    a, b = (dict(m.model.named_parameters()) for m in learner.members)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # own initial weights, own fits
    # one normaliser, fitted on the run's data, shared by the members
    assert learner.members[0].normalizer is learner.members[1].normalizer
    std = learner.normalizer.obs_std
    assert not torch.allclose(std, torch.ones_like(std))
    family = get_family(back.family)
    errs = prediction_errors(learner, heldout_data(family, "test", 1, 40, seed=0), m=back.m,
                             horizons=(1, 3))
    assert errs[3].n > 0 and errs[3].mean > 0
    ep = method_episode(MethodSpec("ens", LearnerMethod(str(path))), family.name,
                        scenarios_for(family, ["healthy"])[0], seed=0, episode_steps=20)
    assert ep.steps == 20 and len(ep.pred_error) > 0


def test_mbde_of_an_mb_ensemble_converts_each_member():
    cfg = tiny_config("mb")
    import dataclasses

    cfg = dataclasses.replace(cfg, ensemble=2)
    torch.manual_seed(0)
    learner = build_learner(cfg, get_family(cfg.family))
    mbde = mbde_from_mb(learner, cfg)
    assert isinstance(mbde, Ensemble) and mbde.adaptation().kind == "online_sgd"
    for src, dst in zip(learner.members, mbde.members, strict=True):
        torch.testing.assert_close(dict(src.state_dict()), dict(dst.state_dict()))


def test_bad_ensemble_size_is_refused():
    with pytest.raises(ConfigError, match="ensemble=0"):
        load_config(preset="tiny", overrides=["ensemble=0"])


def test_runs_trained_apart_join_into_one_ensemble_in_adapt_eval(tmp_path, capsys):
    from adapt_cli import main
    from adapt_cli.evaluate import parse_method
    from adaptive_control.evaluation.episodes import PlannerSizes

    runs = []
    for seed in (0, 1):
        cfg = load_config(preset="tiny", overrides=["iterations=1", f"seed={seed}"])
        runs.append(training.train(cfg, tmp_path / f"s{seed}", progress=False).parent)
    family = get_family(load_config(preset="tiny").family)
    spec = parse_method(f"grbal={runs[0]}+{runs[1]}", family)
    assert spec.factory.members == (str(runs[1] / "checkpoint.pt"),)
    actor = spec.factory(family, 0, PlannerSizes())
    assert isinstance(actor.model, Ensemble) and len(actor.model.members) == 2
    # each member keeps the normaliser of its own run
    a, b = actor.model.members
    assert a.normalizer is not b.normalizer
    assert not torch.equal(a.normalizer.obs_mean, b.normalizer.obs_mean)
    # refusals at the boundary, naming the run and the rule; nothing written
    mb = training.train(load_config(preset="tiny", overrides=["iterations=1", "learner='mb'"]),
                        tmp_path / "mb", progress=False).parent
    assert main(["eval", "--family", family.name, "--method", f"grbal={runs[0]}+{mb}",
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must share learner: 'grbal' in the first, 'mb'" in err[0]
    assert main(["eval", "--family", family.name, "--method",
                 f"grbal={runs[0]}+{tmp_path / 'nope'}", "--out", str(tmp_path / "ev")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()
    # the same runs, joined, export as one ensemble of two
    assert main(["export", f"{runs[0]}+{runs[1]}", "--out", str(tmp_path / "exp"),
                 "--verify-steps", "20"]) == 0
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["ensemble"] == 2 and manifest["learner"] == "grbal"


def test_the_ensemble_preset_is_the_small_recipe_with_three_members_a_second_ahead():
    small, ens = load_config(preset="small"), load_config(preset="ensemble")
    assert (ens.ensemble, ens.planner.horizon) == (3, 20)
    assert dataclasses.replace(ens, ensemble=1, planner=small.planner) == small
