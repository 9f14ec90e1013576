"""What the training loop collects: fall resets and correlated exploration from the config, and
an iteration's on-policy rollouts on worker processes (the same data as in this process)."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from adaptive_control.builders import build_learner, run_rng, torch_seed
from adaptive_control.config_loader import ConfigError
from adaptive_control.training import loop as training
from adaptive_control.training.collection import (
    collect_chunk,
    collect_on_policy,
    fall_rule,
    make_chunks,
)
from adaptive_control.training.config import load_config
from sims.collect import FallReset, collect_open_loop, flipped_share_of
from sims.dataset import Dataset
from sims.registry import get_family


def tiny(*overrides: str):
    return load_config(preset="tiny", overrides=list(overrides))


def _same(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.act, b.act)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.condition_id, b.condition_id)
    assert a.conditions == b.conditions and a.source == b.source
    assert {k: v for k, v in a.stats.items() if k != "seconds"} == \
        {k: v for k, v in b.stats.items() if k != "seconds"}


def _learner(cfg):
    family = get_family(cfg.family)
    torch.manual_seed(torch_seed(cfg.seed, 0, 99))
    return build_learner(cfg, family), family


# ------------------------------------------------------------------ config
def test_collect_settings_are_checked_naming_field_value_and_range():
    for override, fragment in (
        ("collect.workers=-1", "collect.workers=-1: allowed >= 0"),
        ("collect.action_beta=1.0", r"collect.action_beta=1.0: allowed \[0, 1\)"),
        ("collect.fall_reset='maybe'", "collect.fall_reset='maybe' is not allowed: allowed "
                                       "'auto', 'on', 'off'"),
        ("collect.fall_upright=2.0", r"collect.fall_upright=2.0: allowed \[-1, 1\]"),
        ("collect.fall_seconds=-0.1", "collect.fall_seconds=-0.1: allowed a number >= 0"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            tiny(override)
    with pytest.raises(ConfigError, match="collect.workers=-2"):
        dataclasses.replace(tiny(), collect=dataclasses.replace(tiny().collect, workers=-2))
    cfg = tiny("collect.workers=2", "collect.action_beta=0.9", "collect.fall_reset='on'",
               "collect.fall_upright=0.5", "collect.fall_seconds=0.5")
    c = cfg.collect
    assert (c.workers, c.action_beta, c.fall_reset, c.fall_upright, c.fall_seconds) == \
        (2, 0.9, "on", 0.5, 0.5)
    assert load_config(preset="paper").collect.fall_reset == "auto"


def test_fall_resets_default_to_the_robot_and_keep_whole_windows():
    quad = tiny("family='quadruped-leg-failure'")
    assert fall_rule(quad, get_family(quad.family)) == FallReset(0.0, 0.2, min_steps=16)
    # auto: on for both built-in robots
    assert fall_rule(tiny(), get_family("cheetah-cripple")) == FallReset(0.0, 0.2, min_steps=16)
    on = tiny("collect.fall_reset='on'", "collect.fall_upright=0.5", "collect.fall_seconds=1.0")
    assert fall_rule(on, get_family(on.family)) == FallReset(0.5, 1.0, min_steps=16)
    off = tiny("family='quadruped-leg-failure'", "collect.fall_reset='off'")
    assert fall_rule(off, get_family(off.family)) is None


# ------------------------------------------------------------------ iteration 0
def test_cheetah_random_rollouts_without_fall_resets_are_what_they_were():
    cfg = tiny("collect.fall_reset='off'")
    family = get_family(cfg.family)
    data = training.collect_iteration(0, cfg, family, None, progress=False)
    rng = run_rng(cfg.seed, 0, 0)  # the code before fall resets and correlated actions
    conds = [family.sample(rng, "train") for _ in range(cfg.collect.random_rollouts)]
    before = collect_open_loop(family.robot, conds, cfg.episode_steps, rng,
                               progress=False, family=family.name)
    _same(data, before)
    assert "fall_resets" not in data.stats
    assert "fall_resets" in training.collect_iteration(0, tiny(), family, None,
                                                       progress=False).stats


def test_quadruped_random_rollouts_reset_falls_and_take_correlated_actions():
    cfg = tiny("family='quadruped-leg-failure'", "collect.random_rollouts=6",
               "collect.episode_s=4.0", "collect.fall_upright=0.9",
               "collect.fall_seconds=0.04")
    family = get_family(cfg.family)
    data = training.collect_iteration(0, cfg, family, None, progress=False)
    assert data.stats["fall_resets"] > 0 and (data.lengths >= cfg.m + cfg.k).all()
    assert data.n_trajectories > 6 and data.lengths.min() < 100
    smooth = dataclasses.replace(cfg, collect=dataclasses.replace(cfg.collect, action_beta=0.9))
    slow = training.collect_iteration(0, smooth, family, None, progress=False)
    step = np.abs(np.diff(slow.act[0, :slow.lengths[0]], axis=0)).mean()
    assert step < 0.6 * np.abs(np.diff(data.act[0, :data.lengths[0]], axis=0)).mean()


# ------------------------------------------------------------------ on-policy, in parallel
def test_on_policy_rollouts_on_two_workers_equal_the_serial_ones():
    cfg = tiny("family='quadruped-leg-failure'", "collect.rollouts_per_iter=3",
               "collect.episode_s=1.6", "collect.fall_upright=0.95",
               "collect.fall_seconds=0.04")
    learner, family = _learner(cfg)
    conds = [family.sample(run_rng(cfg.seed, 1, 0), "train") for _ in range(3)]
    threads = torch.get_num_threads()
    serial = collect_on_policy(1, cfg, family, learner, conds, progress=False)
    assert torch.get_num_threads() == threads  # one thread while collecting, then restored
    assert serial.source == "on_policy:grbal" and serial.stats["requested"] == 3
    assert serial.stats["fall_resets"] > 0  # the untrained controller's robot tips over
    # the chunks a worker receives, run here: the learner rebuilt from its weights
    chunked = [d for chunk in make_chunks(1, cfg, family, learner, conds, 2)
               for d in collect_chunk(chunk)]
    _same(training_join(chunked), serial)
    two = dataclasses.replace(cfg, collect=dataclasses.replace(cfg.collect, workers=2))
    parallel = collect_on_policy(1, two, family, learner, conds, progress=False)
    _same(parallel, serial)


def training_join(parts: list[Dataset]) -> Dataset:
    from adaptive_control.training.collection import join_rollouts

    return join_rollouts(parts, 1, 40)


# ------------------------------------------------------------------ metrics
def test_metrics_record_the_flipped_share_and_fall_resets(tmp_path):
    cfg = tiny("family='quadruped-leg-failure'", "iterations=1", "collect.episode_s=3.2",
               "collect.fall_upright=0.9", "collect.fall_seconds=0.04")
    training.train(cfg, tmp_path / "run", progress=False)
    (row,) = csv.DictReader(open(tmp_path / "run" / "metrics.csv"))
    data = Dataset.load(tmp_path / "run" / "data" / "iter_000.npz")
    assert int(row["fall_resets"]) == data.stats["fall_resets"] > 0
    share = float(row["flipped_share"])
    assert share == pytest.approx(flipped_share_of(data, get_family(cfg.family).robot))
    assert 0.0 <= share < 0.5
