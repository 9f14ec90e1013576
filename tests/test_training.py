"""Meta-training loop, configs, checkpoints, resume, the controller and eval-model."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from adapt_cli import main
from adaptive_control.builders import build_controller, build_learner, learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint, save_checkpoint
from adaptive_control.config_loader import ConfigError
from adaptive_control.control import AdaptiveController
from adaptive_control.evaluation.model_eval import heldout_data, prediction_errors
from adaptive_control.learners import make_learner
from adaptive_control.planning import (
    PLANNER_NAMES,
    CEMConfig,
    MPPIConfig,
    RandomShootingConfig,
    make_planner,
    planner_config,
)
from adaptive_control.training import loop as training
from adaptive_control.training.config import TrainConfig, config_from_json, load_config
from adaptive_control.training.data import (
    WindowSampler,
    check_window,
    split_by_part,
    split_trajectories,
)
from file_errors import DamagedFileError
from sims.collect import collect_closed_loop, collect_open_loop
from sims.dataset import Dataset
from sims.registry import get_family
from sims.rewards import task_reward


def tiny(**over) -> TrainConfig:
    return load_config(preset="tiny", overrides=[f"{k}={v!r}" if isinstance(v, str) else
                                                 f"{k}={v}" for k, v in over.items()])


# ------------------------------------------------------------------ config
def test_presets_and_overrides():
    paper = load_config(preset="paper")
    assert (paper.iterations, paper.m, paper.k, paper.optim.meta_batch) == (50, 16, 16, 10)
    assert paper.grbal.hidden_sizes == (512, 512, 512) and paper.grbal.inner_lr == 0.01
    # the paper's 250 k environment steps, at the cheetah's decision step of 50 ms
    assert (paper.family, paper.decision_steps) == ("cheetah-cripple@5", 5)
    env_steps = (paper.iterations * paper.collect.rollouts_per_iter
                 * paper.episode_steps * paper.decision_steps)
    assert env_steps == 250_000
    assert paper.planner.num_candidates == 500 and paper.planner.horizon == 15
    assert paper.mb.hidden_sizes == (512, 512)
    small = load_config(preset="small")
    assert (small.family, small.planner.name, small.planner.horizon) == (
        "cheetah-cripple@5", "mppi", 15)  # a 0.75 s lookahead
    cfg = load_config(preset="small", overrides=["learner='rebal'", "optim.max_epochs=3",
                                                 "grbal.hidden_sizes=[64, 64]"])
    assert cfg.learner == "rebal" and cfg.optim.max_epochs == 3
    assert cfg.grbal.hidden_sizes == (64, 64)


def test_runs_plan_at_the_robots_decision_step():
    """The family a run plans in: its robot's decision step by default (the cheetah's 5, the
    quadruped's 2), ``decision_steps=1`` every control step, a name with @K keeps K; configs
    written before the field existed reload at every control step."""
    def family(*over):
        return load_config(preset="tiny", overrides=list(over)).family

    assert family() == "cheetah-cripple@5"
    assert family("decision_steps=1") == "cheetah-cripple"
    assert family("decision_steps=3") == "cheetah-cripple@3"
    assert family("family='quadruped-leg-failure'") == "quadruped-leg-failure@2"
    assert family("family='cheetah-cripple@2'") == "cheetah-cripple@2"
    assert family("family='cheetah-cripple@2'", "decision_steps=2") == "cheetah-cripple@2"
    with pytest.raises(ConfigError, match="decision_steps=3 contradicts family='cheetah-"):
        family("family='cheetah-cripple@2'", "decision_steps=3")
    with pytest.raises(ConfigError, match=r"decision_steps=-1: allowed an integer >= 0"):
        family("decision_steps=-1")
    cfg = load_config(preset="tiny")
    assert config_from_json(cfg.to_json()) == cfg  # stored as resolved: reloads the same
    old = json.loads(cfg.to_json())
    old.pop("decision_steps")
    old["family"] = "cheetah-cripple"
    assert config_from_json(json.dumps(old)).family == "cheetah-cripple"
    old["family"] = "cheetah-cripple@2"  # frame skip by name, before decision_steps existed
    assert config_from_json(json.dumps(old)).family == "cheetah-cripple@2"


def test_config_files_toml_and_yaml(tmp_path):
    (tmp_path / "a.toml").write_text('preset = "tiny"\nlearner = "mb"\n[optim]\nmax_epochs = 1\n')
    (tmp_path / "b.yaml").write_text("preset: tiny\nlearner: mbde\nplanner:\n  name: mppi\n")
    a = load_config(tmp_path / "a.toml")
    b = load_config(tmp_path / "b.yaml")
    assert (a.learner, a.optim.max_epochs, a.m) == ("mb", 1, 8)
    assert (b.learner, b.planner.name) == ("mbde", "mppi")


def test_a_run_folders_config_json_loads_back_and_takes_overrides(tmp_path):
    cfg = load_config(preset="small", overrides=["learner='rebal'", "optim.max_epochs=3"])
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "config.json") == cfg
    again = load_config(tmp_path / "config.json", overrides=["seed=7"])
    assert again == dataclasses.replace(cfg, seed=7)
    (tmp_path / "c.ini").write_text("")
    with pytest.raises(ValueError, match=r"allowed suffixes .toml, .yaml, .yml, .json"):
        load_config(tmp_path / "c.ini")


@pytest.mark.parametrize("overrides,fragment", [
    (["optim.max_epoch=3"], "unknown config key 'optim.max_epoch'"),
    (["colour=1"], "unknown config key 'colour'"),
    (["learner='maml'"], "learner='maml' is unknown"),
    (["family='cheetah-flying'"], "family='cheetah-flying'"),
    (["planner.name='lqr'"], "planner.name='lqr'"),
    (["m=600"], "m + k"),
    (["optim.val_fraction=1.5"], "optim.val_fraction=1.5"),
    (["optim.steps_per_epoch=-1"], "optim.steps_per_epoch=-1"),
    (["optim.epoch_passes=0.0"], "optim.epoch_passes=0.0"),
    (["collect.healthy_share=1.5"], "collect.healthy_share=1.5"),
    (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1"),
    # a decision step too long for the preset's episodes: the error names the step as well
    (["decision_steps=201"], "(at decision_steps=201)"),
    (["iterations='many'"], "iterations='many' must be an integer"),
    (["grbal.inner_lr=-1.0"], "inner_lr"),
    (["rebal.cell='tcn'"], "rebal.cell='tcn'"),
])
def test_bad_config_names_key_and_allowed(overrides, fragment):
    with pytest.raises(ValueError) as e:
        load_config(preset="tiny", overrides=overrides)
    assert fragment in str(e.value)


# ------------------------------------------------------------------ the planner table
# Before each planner's own config was the planner table: one flat table for all planners, of
# which the chosen planner took its fields (these defaults, ``_old_planner_kwargs``).
_OLD_FLAT_PLANNER = {"name": "random_shooting", "num_candidates": 500, "horizon": 10,
                     "num_iterations": 5, "elite_frac": 0.1, "alpha": 0.1, "noise_sigma": 0.5,
                     "lambda_": 1.0, "beta": 0.5}


def _old_planner_kwargs(flat: dict) -> dict:
    common = {"num_candidates": flat["num_candidates"], "horizon": flat["horizon"]}
    if flat["name"] == "cem":
        return {**common, "num_iterations": flat["num_iterations"],
                "elite_frac": flat["elite_frac"], "alpha": flat["alpha"]}
    if flat["name"] == "mppi":
        return {**common, "noise_sigma": flat["noise_sigma"], "lambda_": flat["lambda_"],
                "beta": flat["beta"]}
    return common


@pytest.mark.parametrize("preset", ["paper", "small", "tiny"])
@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_each_preset_builds_the_planner_it_built_with_the_flat_table(preset, name):
    from adaptive_control.training.config import PRESETS

    flat = {**_OLD_FLAT_PLANNER, **PRESETS[preset].get("planner", {}), "name": name}
    old = planner_config(name, **_old_planner_kwargs(flat))
    cfg = load_config(preset=preset, overrides=[f"planner.name={name}"])
    built = build_controller(build_learner(cfg, get_family(cfg.family)), cfg,
                             get_family(cfg.family)).planner
    assert built.config == old
    if PRESETS[preset].get("planner", {}).get("name", "random_shooting") == name:
        assert load_config(preset=preset).planner == old  # the preset's own planner


def test_a_config_json_with_the_flat_planner_table_loads_the_same_planner(tmp_path):
    for name in PLANNER_NAMES:
        flat = {**_OLD_FLAT_PLANNER, "name": name, "num_candidates": 64, "horizon": 7,
                "num_iterations": 3, "lambda_": 0.3}
        values = {**load_config(preset="small").to_dict(), "planner": flat}
        cfg = config_from_json(json.dumps(values))
        then = {"warm_start": False} if name == "cem" else {}  # CEM had no warm start then
        assert cfg.planner == planner_config(name, **_old_planner_kwargs(flat), **then)
        (tmp_path / "config.json").write_text(json.dumps(values))
        assert load_config(tmp_path / "config.json") == cfg
        assert load_config(tmp_path / "config.json",
                           overrides=["planner.horizon=5"]).planner.horizon == 5


def test_every_planner_field_is_reachable_and_the_name_switches_planner(tmp_path):
    cfg = load_config(preset="small", overrides=["planner.warm_start=false",
                                                 "planner.lambda_=0.5"])
    assert cfg.planner == MPPIConfig(num_candidates=256, horizon=15, warm_start=False,
                                     lambda_=0.5)
    # Switching by name keeps what the new planner takes from the layers below (the preset's
    # candidates and horizon, the file's beta) and drops the rest (the file's lambda_).
    (tmp_path / "m.toml").write_text('preset = "small"\n[planner]\nlambda_ = 0.5\nbeta = 0.2\n')
    cem = load_config(tmp_path / "m.toml", overrides=["planner.name=cem",
                                                      "planner.init_std=0.5"])
    assert cem.planner == CEMConfig(num_candidates=256, horizon=15, init_std=0.5, beta=0.2)
    assert load_config(tmp_path / "m.toml", overrides=["planner.init_std=0.5",
                                                       "planner.name=cem"]
                       ) == cem  # whatever the order of the overrides
    (tmp_path / "p.toml").write_text('preset = "small"\n[planner]\nname = "random_shooting"\n'
                                     "discount = 0.99\n")
    assert load_config(tmp_path / "p.toml").planner == RandomShootingConfig(
        num_candidates=256, horizon=15, discount=0.99)
    assert load_config(preset="tiny", overrides=["planner='cem'"]).planner == CEMConfig()
    # Round trip: what a run folder's config.json holds loads back to the same config.
    assert config_from_json(cem.to_json()) == cem


@pytest.mark.parametrize("overrides,fragment", [
    (["planner.name=mppi", "planner.num_iterations=3"],
     "unknown config key 'planner.num_iterations' for planner.name='mppi': allowed keys at "
     "this level are beta, discount, hold, horizon"),
    (["planner.num_iterations=3", "planner.name=mppi"], "'planner.num_iterations'"),
    (["planner.name=random_shooting", "planner.elite_frac=0.2"],
     "unknown config key 'planner.elite_frac' for planner.name='random_shooting'"),
    (["planner.name=lqr"], "planner.name='lqr' is unknown: allowed random_shooting, cem, mppi"),
    (["planner=lqr"], "planner='lqr' is unknown: allowed random_shooting, cem, mppi"),
    (["planner.horizon=0"], "planner.horizon=0 must be an integer >= 1"),
    (["planner.name=cem", "planner.warm_start=3"], "planner.warm_start=3 must be true or false"),
    (["planner.name=mppi", "planner.warm_start_fill=first"],
     "planner.warm_start_fill='first' is not allowed: allowed 'last', 'mid'"),
])
def test_bad_planner_settings_name_the_field_and_the_allowed(overrides, fragment):
    with pytest.raises(ValueError) as e:
        load_config(preset="small", overrides=overrides)
    assert fragment in str(e.value)


def test_one_key_value_parser_for_every_set():
    """`adapt export --set` reads its items as configs read --set (TOML values)."""
    from adaptive_control.config_loader import parse_override

    assert parse_override("warm_start=true") == (["warm_start"], True)
    assert parse_override("num_iterations=3") == (["num_iterations"], 3)
    assert parse_override("warm_start_fill=mid") == (["warm_start_fill"], "mid")
    with pytest.raises(ValueError, match="'warm_start'"):
        parse_override("warm_start")


# ------------------------------------------------------------------ data windows
def _dataset(n=6, steps=40, seed=0) -> Dataset:
    fam = get_family("cheetah-cripple")
    rng = np.random.default_rng(seed)
    return collect_open_loop(fam.robot, [fam.sample(rng) for _ in range(n)], steps, rng,
                             progress=False)


def test_windows_are_consecutive_and_of_one_trajectory():
    data = _dataset()
    sampler = WindowSampler(data, 5, 7, np.arange(data.n_trajectories))
    batch = sampler.sample(32, np.random.default_rng(0))
    assert batch.past.obs.shape == (32, 5, 17) and batch.future.obs.shape == (32, 7, 17)
    torch.testing.assert_close(batch.past.next_obs[:, :-1], batch.past.obs[:, 1:])
    torch.testing.assert_close(batch.future.obs[:, 0], batch.past.next_obs[:, -1])
    # every window is a contiguous slice of some trajectory
    obs = torch.from_numpy(data.obs)
    for b in range(4):
        w = torch.cat([batch.past.obs[b], batch.future.obs[b]])
        found = any(torch.equal(w, obs[i, s:s + 12]) for i in range(data.n_trajectories)
                    for s in range(data.horizon - 11))
        assert found


def test_train_and_validation_trajectories_are_disjoint():
    data = _dataset(n=10)
    tr, va = split_trajectories(data, 0.2, np.random.default_rng(0))
    assert len(va) == 2 and not set(tr) & set(va) and len(tr) + len(va) == 10


def test_held_back_trajectories_stay_held_back_as_iterations_add_data():
    parts = [10, 6, 3]

    def rngs(k):
        return [np.random.default_rng(i) for i in range(k)]

    tr1, va1 = split_by_part(parts[:1], 0.2, rngs(1))
    tr3, va3 = split_by_part(parts, 0.2, rngs(3))
    # each part split exactly as split_trajectories splits a dataset of its size
    tr0, va0 = split_trajectories(_dataset(n=10), 0.2, np.random.default_rng(0))
    assert np.array_equal(tr1, tr0) and np.array_equal(va1, va0)
    # iteration 0's split is unchanged by later data, and nothing trained on is validated on
    assert set(va1) <= set(va3) and set(tr1) <= set(tr3)
    assert not set(tr3) & set(va3) and len(tr3) + len(va3) == 19
    # every iteration holds back its own share, offset into the concatenation
    assert any(10 <= i < 16 for i in va3) and any(i >= 16 for i in va3)
    with pytest.raises(ValueError, match="one each"):
        split_by_part(parts, 0.2, rngs(2))


def test_window_longer_than_episode_is_refused():
    with pytest.raises(ValueError, match="longer than an episode"):
        check_window(30, 20, 40)
    with pytest.raises(ValueError, match="m \\+ k"):
        load_config(preset="tiny", overrides=["m=50", "k=20"])


def test_dataset_with_nan_is_rejected_with_count(tmp_path):
    data = _dataset(n=2, steps=10)
    obs = data.obs.copy()
    obs[0, 3, :2] = np.nan
    obs[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="3 NaN/inf"):
        Dataset(obs, data.act, data.condition_id, data.conditions, data.robot)


# ------------------------------------------------------------------ controller
def test_controller_adapts_on_the_last_m_transitions():
    fam = get_family("cheetah-cripple")
    learner = make_learner("grbal", 17, 6, load_config(preset="tiny").grbal)
    lo, hi = fam.robot.action_bounds
    planner = make_planner(planner_config("random_shooting", num_candidates=8, horizon=2),
                           torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    seen = []
    original = learner.adapt

    def spy(recent):
        seen.append(recent)
        return original(recent)

    learner.adapt = spy
    ctrl = AdaptiveController(learner, planner, task_reward(fam.robot), m=4)
    data = collect_closed_loop(fam.robot, [fam.test_conditions[0]], ctrl, 10,
                               np.random.default_rng(0), progress=False)
    # adapt runs from step 4 on (once 4 transitions exist), on exactly the last 4 transitions
    assert len(seen) == 10 - 4
    last = seen[-1]
    obs = torch.from_numpy(data.obs[0])
    act = torch.from_numpy(data.act[0])
    torch.testing.assert_close(last.obs, obs[5:9])
    torch.testing.assert_close(last.act, act[5:9])
    torch.testing.assert_close(last.next_obs, obs[6:10])
    assert len(ctrl.latencies) == 10


def test_controller_cadence_and_reset():
    learner = make_learner("mbde", 17, 6, load_config(preset="tiny").mbde)
    planner = make_planner(planner_config("mppi", num_candidates=8, horizon=2), -torch.ones(6),
                           torch.ones(6))
    ctrl = AdaptiveController(learner, planner, task_reward(get_family("cheetah-cripple").robot),
                              m=3, adapt_every=2)
    calls = []
    original = learner.adapt
    learner.adapt = lambda r: (calls.append(1), original(r))[1]
    rng = np.random.default_rng(0)
    for _ in range(9):
        ctrl(rng.standard_normal(17))
    assert len(calls) == 3  # steps 3, 5, 7
    ctrl.reset()
    assert ctrl.n_transitions == 0 and learner._online is None


# ------------------------------------------------------------------ training and resume
def test_train_writes_checkpoint_metrics_and_data(tmp_path):
    cfg = tiny()
    path = training.train(cfg, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(path, robot="cheetah@5")
    assert ckpt["iteration"] == cfg.iterations
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows] == list(range(cfg.iterations))
    assert (tmp_path / "run" / "data" / "iter_001.npz").exists()
    assert any((tmp_path / "run" / "tb").iterdir())  # TensorBoard scalars
    # each fit's curve, epoch by epoch, and whether patience or the epoch budget ended it
    curve = list(csv.DictReader(open(tmp_path / "run" / "fit_curve.csv")))
    for r in rows:
        mine = [c for c in curve if c["iteration"] == r["iteration"]]
        assert [int(c["epoch"]) for c in mine] == list(range(int(r["epochs"]) + 1))
        val = [float(c["val_loss"]) for c in mine]
        assert float(r["val_loss"]) == pytest.approx(min(val))
        assert int(r["best_epoch"]) == int(np.argmin(val))
        assert r["early_stopped"] == str(int(r["epochs"]) < cfg.optim.max_epochs)
    d1 = Dataset.load(tmp_path / "run" / "data" / "iter_001.npz")
    assert d1.source == "on_policy:grbal" and d1.n_trajectories == cfg.collect.rollouts_per_iter
    learner, cfg2 = learner_from_checkpoint(ckpt)
    assert cfg2 == cfg
    assert torch.equal(learner.normalizer.obs_std, ckpt["learner"]["model.normalizer.obs_std"])
    with pytest.raises(FileExistsError, match="--resume"):
        training.train(cfg, tmp_path / "run", progress=False)


def test_epochs_scaled_to_the_data_grow_with_each_iterations_data(tmp_path):
    # steps_per_epoch=0: each epoch draws epoch_passes times the fit's training windows, so an
    # iteration with more data fits longer epochs (the fixed count stays fixed).
    cfg = tiny(iterations=3, **{"optim.steps_per_epoch": 0, "optim.epoch_passes": 0.5})
    training.train(cfg, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    per_epoch = [int(r["fit_steps"]) / int(r["epochs"]) for r in rows]
    assert per_epoch == sorted(per_epoch) and per_epoch[-1] > per_epoch[0]
    windows = sum(int(Dataset.load(tmp_path / "run" / "data" / f"iter_{i:03d}.npz").lengths.sum())
                  for i in range(3))  # an upper bound on the last fit's training windows
    assert per_epoch[-1] <= np.ceil(0.5 * windows / cfg.optim.meta_batch)
    assert training.epoch_steps(cfg.optim, 1000) == np.ceil(0.5 * 1000 / cfg.optim.meta_batch)
    assert training.epoch_steps(dataclasses.replace(cfg.optim, steps_per_epoch=7), 1000) == 7


def test_a_healthy_share_runs_that_many_rollouts_healthy_and_draws_the_rest_as_before():
    from adaptive_control.builders import run_rng
    from adaptive_control.training.collection import iteration_conditions
    from sims.conditions import HEALTHY

    family = get_family("cheetah-terrain@5")
    base = tiny(family="cheetah-terrain", **{"collect.random_rollouts": 5})
    mixed = tiny(family="cheetah-terrain", **{"collect.random_rollouts": 5,
                                              "collect.healthy_share": 0.5})
    drawn = iteration_conditions(0, base, family, run_rng(0, 0, 0))
    conds = iteration_conditions(0, mixed, family, run_rng(0, 0, 0))
    assert conds[:3] == [HEALTHY] * 3 and HEALTHY not in drawn  # 2.5 rounds up
    assert conds[3:] == drawn[:2]  # the family's draws go on as without the share
    data = training.collect_iteration(0, mixed, family, None, progress=False)
    assert [data.condition(i) for i in range(5)] == conds


def test_a_family_that_holds_out_the_healthy_robot_refuses_a_healthy_share(tmp_path):
    spec = tmp_path / "r.toml"
    spec.write_text('[[family]]\nname = "lame"\nrobot = "cheetah"\n'
                    'train = ["disabled:bshin"]\ntest = ["healthy"]\n')
    tiny(family=f"{spec}#lame")  # the family itself is fine
    with pytest.raises(ConfigError, match="collect.healthy_share=0.2.*holds out the healthy"):
        tiny(family=f"{spec}#lame", **{"collect.healthy_share": 0.2})


def test_weight_decay_shrinks_every_weight_by_lr_times_decay_per_step():
    cfg = tiny(**{"optim.weight_decay": 5.0})
    learner = build_learner(cfg, get_family(cfg.family))
    before = {k: v.detach().clone() for k, v in learner.named_parameters()}
    optimizer = training.outer_optimizer(learner, cfg)
    for p in learner.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    optimizer.step()
    shrink = 1 - cfg.learner_config.lr * 5.0
    for k, v in learner.named_parameters():
        torch.testing.assert_close(v.detach(), before[k] * shrink)
    plain = training.outer_optimizer(learner, tiny())
    plain.step()  # zero gradient, no decay: nothing moves
    for k, v in learner.named_parameters():
        torch.testing.assert_close(v.detach(), before[k] * shrink)


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = tiny(iterations=3)
    training.train(cfg, tmp_path / "full", progress=False)

    # Kill the second run in the middle of iteration 1's fit: its data is already on disk.
    real_fit = training.fit

    def killing_fit(learner, optimizer, data, part_trajectories, cfg_, it, progress):
        if it == 1:
            raise KeyboardInterrupt("simulated kill")
        return real_fit(learner, optimizer, data, part_trajectories, cfg_, it, progress)

    monkeypatch.setattr(training, "fit", killing_fit)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, tmp_path / "killed", progress=False)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 1
    assert (tmp_path / "killed" / "data" / "iter_001.npz").exists()
    monkeypatch.setattr(training, "fit", real_fit)
    training.train(cfg, tmp_path / "killed", resume=True, progress=False)

    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 3
    for it in range(3):
        da = Dataset.load(tmp_path / "full" / "data" / f"iter_{it:03d}.npz")
        db = Dataset.load(tmp_path / "killed" / "data" / f"iter_{it:03d}.npz")
        np.testing.assert_array_equal(da.obs, db.obs)
        np.testing.assert_array_equal(da.act, db.act)
        assert da.conditions == db.conditions
    for k in a["learner"]:
        torch.testing.assert_close(a["learner"][k], b["learner"][k])
    rows = list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    # the resumed run's fit curves are the uninterrupted run's, each iteration once
    assert (tmp_path / "killed" / "fit_curve.csv").read_text() == (
        tmp_path / "full" / "fit_curve.csv").read_text()


def test_resume_with_a_different_config_is_refused(tmp_path):
    training.train(tiny(iterations=1), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="config differs"):
        training.train(tiny(iterations=2, seed=5), tmp_path / "r", resume=True, progress=False)


@pytest.mark.parametrize("learner", ["mb", "mbde", "rebal"])
def test_every_learner_trains(tmp_path, learner):
    path = training.train(tiny(learner=learner, iterations=2), tmp_path / learner,
                          progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["learner_name"] == learner


# ------------------------------------------------------------------ checkpoints
def test_checkpoints_load_weights_only_and_refuse_mismatches(tmp_path):
    path = training.train(tiny(iterations=1), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="trained for robot 'cheetah@5', not 'quadruped'"):
        load_checkpoint(path, robot="quadruped")
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format_version=99"):
        load_checkpoint(tmp_path / "future.pt")

    class Evil:  # eval: a callable no other test replaces (Ray swaps print for its own)
        def __reduce__(self):
            return (eval, ("1",))

    torch.save({"kind": "adaptive-control-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"is refused as unsafe: .*pickled Python object "
                                         r"\(eval\)") as refused:
        load_checkpoint(tmp_path / "evil.pt")
    # readable, only not allowed: not called damaged
    assert not isinstance(refused.value, DamagedFileError) and "damaged" not in str(refused.value)
    torch.save({"some": "thing"}, tmp_path / "other.pt")
    with pytest.raises(DamagedFileError, match=r"is damaged or not a checkpoint: .*found no key "
                                               r"'kind' \(it holds \['some'\]\)"):
        load_checkpoint(tmp_path / "other.pt")


def test_atomic_checkpoint_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "c.pt", {"robot": "cheetah", "v": 1})
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        save_checkpoint(p, {"robot": "cheetah", "v": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["v"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


# ------------------------------------------------------------------ eval-model
def test_prediction_errors_adapted_vs_prior(tmp_path):
    path = training.train(tiny(iterations=1), tmp_path / "r", progress=False)
    learner, cfg = learner_from_checkpoint(load_checkpoint(path))
    data = heldout_data(get_family(cfg.family), "test", 1, 40, seed=0)
    prior = prediction_errors(learner, data, cfg.m, (1, 5), stride=4, adapted=False)
    adapted = prediction_errors(learner, data, cfg.m, (1, 5), stride=4, adapted=True)
    assert prior[1].n == adapted[1].n > 3
    assert prior[5].mean > prior[1].mean  # errors compound over the horizon
    assert adapted[1].mean != prior[1].mean


def test_eval_model_cli(tmp_path, capsys, monkeypatch):
    training.train(tiny(iterations=1), tmp_path / "g", progress=False)
    training.train(tiny(iterations=1, learner="mb"), tmp_path / "m", progress=False)
    out = tmp_path / "res.json"
    rc = main(["eval-model", str(tmp_path / "g"), str(tmp_path / "m"), "--trajectories", "1",
               "--duration", "2", "--stride", "8", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"grbal", "mb", "mbde"}  # MB+DE comes with an MB checkpoint
    assert res["methods"]["grbal"]["adapted"]["10"]["n"] > 0
    printed = capsys.readouterr().out
    # 2 s of the run's 50 ms decisions (cheetah-cripple@5)
    assert "cheetah-cripple@5 (test): " in printed and " trajectories x 40 steps;" in printed
    assert "grbal" in printed
    # A length under two decisions is refused naming --duration, before any simulation.
    from adaptive_control.evaluation import model_eval

    def no_work(*a, **k):
        raise AssertionError("simulation started despite invalid input")

    monkeypatch.setattr(model_eval, "heldout_data", no_work)
    for duration in ("0", "-1", "0.07"):
        assert main(["eval-model", str(tmp_path / "g"), "--duration", duration]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"adapt: error: --duration={duration}:")
        assert "allowed seconds >= 0.1" in lines[0]
    with pytest.raises(SystemExit) as exit_:
        main(["eval-model", str(tmp_path / "g"), "--steps", "40"])
    assert exit_.value.code == 2 and "unrecognized arguments: --steps" in capsys.readouterr().err


def test_train_cli_reports_bad_config_before_work(tmp_path, capsys):
    rc = main(["train", "tiny", "--out", str(tmp_path / "x"), "--set", "optim.epochz=1"])
    assert rc == 2
    assert "unknown config key 'optim.epochz'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_one_writer_per_run_folder(tmp_path):

    out = tmp_path / "r"
    out.mkdir()
    (out / ".lock").write_text(str(os.getppid()))  # a live process holds the folder
    with pytest.raises(FileExistsError, match="in use by another adapt train"):
        training.train(tiny(iterations=1), out, progress=False)
    (out / ".lock").write_text("999999999")  # a dead one: the lock is stale and taken over
    training.train(tiny(iterations=1), out, progress=False)
    assert not (out / ".lock").exists()


def test_fresh_start_into_a_folder_with_data_is_refused(tmp_path):
    out = tmp_path / "r"
    (out / "data").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="--resume"):
        training.train(tiny(iterations=1), out, progress=False)


def test_controller_records_the_executed_action():
    learner = make_learner("mb", 17, 6, load_config(preset="tiny").mb)
    planner = make_planner(planner_config("random_shooting", num_candidates=4, horizon=2),
                           -torch.ones(6), torch.ones(6))
    ctrl = AdaptiveController(learner, planner, task_reward(get_family("cheetah-cripple").robot),
                              m=2)
    with pytest.raises(RuntimeError, match="before any step"):
        ctrl.observe_action(np.zeros(6))
    ctrl(np.zeros(17))
    ctrl.observe_action(np.full(6, 0.25))
    ctrl(np.ones(17))
    ctrl.observe_action(np.full(6, -0.5))
    ctrl(np.ones(17) * 2)
    recent = ctrl.recent()
    torch.testing.assert_close(recent.act, torch.tensor([[0.25] * 6, [-0.5] * 6]))
