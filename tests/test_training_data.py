"""Training from datasets (`adapt train --data`): the two file layouts, the checks at the
boundary, windows over episodes of different lengths, and the run that fits on them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from adapt_cli import main
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.learners import LEARNERS
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.training import loop as training
from adaptive_control.training.config import load_config
from adaptive_control.training.data import WindowSampler, load_training_data
from sims.collect import collect_open_loop
from sims.conditions import parse_condition
from sims.dataset import FORMAT_VERSION, UNLABELLED, Dataset
from sims.env import AdaptEnv
from sims.registry import get_family

# the logs are recorded at the robot's control step: the runs decide at every step
TINY = ["--set", "iterations=1", "--set", "decision_steps=1", "--quiet"]
LENGTHS = (30, 45, 20, 38)  # transitions per episode: tiny's windows need m + k = 16
LABELS = ("disabled:bshin", "weak:fthigh:0.5", "disabled:bshin", "healthy")


def logged_episodes(robot: str = "cheetah", lengths=LENGTHS, labels=LABELS, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """What a user's logger writes: random actions stepped through the simulator, episodes
    one after another (each its observations, one more than its actions), labels in the
    condition syntax, float64 as numpy makes them."""
    rng = np.random.default_rng(seed)
    obs, act = [], []
    for steps, label in zip(lengths, labels, strict=True):
        env = AdaptEnv(robot, parse_condition(label), episode_steps=steps, seed=rng)
        ts = env.reset()
        obs.append(ts.observation)
        lo, hi = env.robot.action_bounds
        for _ in range(steps):
            a = rng.uniform(lo, hi)
            obs.append(env.step(a).observation)
            act.append(a)
    names = sorted(set(labels))
    return {"obs": np.stack(obs), "act": np.stack(act), "lengths": np.array(lengths),
            "condition_id": np.array([names.index(x) for x in labels]),
            "conditions": np.array(names), "robot": np.array(robot)}


def episode_starts(lengths=LENGTHS) -> np.ndarray:
    """Row of each episode's first observation in the logger layout."""
    return np.cumsum((0, *lengths[:-1])) + np.arange(len(lengths))


def write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def train_cli(*args: str) -> int:
    return main(["train", "tiny", *args, *TINY])


# ------------------------------------------------------------------ layouts
def test_the_logger_layout_reads_into_padded_episodes(tmp_path):
    arrays = logged_episodes()
    data = Dataset.load(write(tmp_path / "log.npz", **arrays))
    assert data.n_trajectories == 4 and data.horizon == max(LENGTHS)
    assert data.lengths.tolist() == list(LENGTHS) and data.n_transitions == sum(LENGTHS)
    # Episode 1 (45 transitions) is rows 31 .. 76 of the flat observations.
    np.testing.assert_array_equal(data.obs[1], arrays["obs"][31:77].astype(np.float32))
    np.testing.assert_array_equal(data.act[2, :20], arrays["act"][75:95].astype(np.float32))
    # Padding repeats the last observation with action 0, and transitions() leaves it out.
    np.testing.assert_array_equal(data.obs[2, 21:], np.repeat(data.obs[2, 20:21], 25, axis=0))
    assert not data.act[2, 20:].any()
    obs, act, nxt = data.transitions()
    first = episode_starts()
    rows = np.concatenate([np.arange(s, s + t) for s, t in zip(first, LENGTHS, strict=True)])
    np.testing.assert_array_equal(obs, arrays["obs"][rows].astype(np.float32))
    np.testing.assert_array_equal(nxt, arrays["obs"][rows + 1].astype(np.float32))
    np.testing.assert_array_equal(act, arrays["act"].astype(np.float32))
    assert data.condition(0) == data.condition(2) == parse_condition("disabled:bshin")
    assert data.condition(3) == parse_condition("healthy")


def test_a_ragged_dataset_round_trips_and_joins_other_lengths(tmp_path):
    data = Dataset.load(write(tmp_path / "log.npz", **logged_episodes()))
    back = Dataset.load(data.save(tmp_path / "saved.npz"))
    np.testing.assert_array_equal(back.obs, data.obs)
    np.testing.assert_array_equal(back.lengths, data.lengths)
    fam = get_family("cheetah-cripple")
    rng = np.random.default_rng(0)
    longer = collect_open_loop(fam.robot, [fam.sample(rng)] * 2, 60, rng, progress=False)
    longer.robot = data.robot
    joined = Dataset.concatenate([data, longer])
    assert joined.horizon == 60 and joined.lengths.tolist() == [*LENGTHS, 60, 60]
    assert joined.n_transitions == data.n_transitions + longer.n_transitions
    np.testing.assert_array_equal(joined.obs[1, :46], data.obs[1, :46])


def test_unlabelled_episodes_and_a_version_1_file(tmp_path):
    arrays = logged_episodes()
    del arrays["condition_id"], arrays["conditions"], arrays["robot"]
    data = Dataset.load(write(tmp_path / "plain.npz", **arrays))
    assert (data.condition_id == UNLABELLED).all() and data.condition(0) is None
    assert data.robot == ""
    fam = get_family("cheetah-cripple")
    rng = np.random.default_rng(1)
    v1 = collect_open_loop(fam.robot, [fam.sample(rng)] * 2, 20, rng, progress=False)
    path = write(tmp_path / "v1.npz", obs=v1.obs, act=v1.act, condition_id=v1.condition_id,
                 conditions=np.array(v1.conditions), robot=np.array("cheetah"),
                 format_version=np.array(1))
    np.testing.assert_array_equal(Dataset.load(path).obs, v1.obs)
    np.savez(path, obs=v1.obs, act=v1.act, format_version=np.array(FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match=f"format_version={FORMAT_VERSION + 1}: this toolkit"):
        Dataset.load(path)
    labelled = Dataset(v1.obs, v1.act, v1.condition_id, v1.conditions, robot="")
    joined = Dataset.concatenate([data, labelled])
    assert joined.condition_id.tolist() == [UNLABELLED] * 4 + [0, 0]


# ------------------------------------------------------------------ windows
def test_windows_stay_inside_each_episode_and_every_window_is_as_likely():
    data = Dataset.from_arrays(logged_episodes())
    sampler = WindowSampler(data, 5, 7, np.arange(4))
    assert sampler.n_windows == sum(t - 12 + 1 for t in LENGTHS)
    every = sampler.all_windows(stride=1)
    assert len(every.past.obs) == sampler.n_windows
    batch = sampler.sample(4000, np.random.default_rng(0))
    # A window's last next-observation is real data: never the padding after an episode.
    obs = torch.from_numpy(data.obs)
    for b in range(0, 4000, 97):
        window = torch.cat([batch.past.obs[b], batch.future.obs[b], batch.future.next_obs[b, -1:]])
        assert any(torch.equal(window, obs[i, s:s + 13]) for i, t in enumerate(LENGTHS)
                   for s in range(t - 11))
    # Episodes are drawn in proportion to their windows (19, 34, 9, 27 of 89).
    first = batch.past.obs[:, 0]
    owner = np.array([next(i for i, t in enumerate(LENGTHS)
                           if (obs[i, :t - 11] == first[b]).all(-1).any()) for b in range(4000)])
    share = np.bincount(owner, minlength=4) / 4000
    np.testing.assert_allclose(share, np.array([19, 34, 9, 27]) / 89, atol=0.03)


# ------------------------------------------------------------------ training on data
def test_adapt_train_on_a_collected_file_fits_only_that_data(tmp_path):
    path = tmp_path / "collected.npz"
    assert main(["sims", "collect", "--family", "cheetah-cripple", "--trajectories", "5",
                 "--duration", "0.4", "--threads", "1", "--out", str(path)]) == 0
    assert train_cli("--data", str(path), "--out", str(tmp_path / "run")) == 0
    given = Dataset.load(path)
    used = Dataset.load(tmp_path / "run" / "data" / "iter_000.npz")
    assert used.source == "data" and used.family == "cheetah-cripple"
    np.testing.assert_array_equal(used.obs, given.obs)  # no random rollouts added
    assert sorted((tmp_path / "run" / "data").iterdir()) == [tmp_path / "run/data/iter_000.npz"]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt", robot="cheetah")
    assert ckpt["iteration"] == 1
    row = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert int(row["transitions"]) == 5 * 40 and np.isfinite(float(row["val_loss"]))


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_every_learner_trains_on_a_hand_written_log(tmp_path, learner):
    path = write(tmp_path / "log.npz", **logged_episodes())
    assert train_cli("--data", path, "--set", f"learner={learner!r}",
                     "--out", str(tmp_path / "run")) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["learner_name"] == learner
    # The normaliser holds the log's statistics: the model was fitted on those transitions,
    # and the padding after the shorter episodes never reached it.
    ref = Normalizer.fit(*Dataset.load(path).transitions())
    torch.testing.assert_close(ckpt["learner"]["model.normalizer.obs_mean"], ref.obs_mean)
    torch.testing.assert_close(ckpt["learner"]["model.normalizer.delta_std"], ref.delta_std)


def test_later_iterations_add_on_policy_rollouts_to_the_data(tmp_path):
    cfg = load_config(preset="tiny", overrides=["iterations=2", "decision_steps=1"])
    data = load_training_data([write(tmp_path / "a.npz", **logged_episodes()),
                               Dataset.from_arrays(logged_episodes(seed=1))],
                              "cheetah-cripple", cfg.m, cfg.k)
    assert data.n_trajectories == 8 and data.robot == "cheetah"
    training.train(cfg, tmp_path / "run", progress=False, initial_data=data)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    on_policy = Dataset.load(tmp_path / "run" / "data" / "iter_001.npz")
    assert on_policy.source == "on_policy:grbal"
    assert int(rows[1]["transitions"]) == 2 * sum(LENGTHS) + on_policy.n_transitions
    # A resumed run must be given the data it started from (or none).
    other = load_training_data([Dataset.from_arrays(logged_episodes(seed=2))],
                               "cheetah-cripple", cfg.m, cfg.k)
    with pytest.raises(ValueError, match="--data differs"):
        training.train(cfg, tmp_path / "run", resume=True, progress=False, initial_data=other)


# ------------------------------------------------------------------ refusals
def refused(tmp_path, capsys, family: str = "cheetah-cripple", **arrays) -> str:
    """Train on a file of ``arrays``: refused with exit status 2 before any run folder."""
    path = write(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "run"
    assert main(["train", "tiny", "--data", path, "--out", str(out), "--set",
                 f"family={family!r}", *TINY]) == 2
    assert not out.exists()
    return capsys.readouterr().err


def test_nan_and_inf_are_counted_by_array_and_episode(tmp_path, capsys):
    arrays = logged_episodes()
    start = episode_starts()
    arrays["obs"][start[2] + 3, :3] = np.nan
    arrays["obs"][start[3] + 1, 5] = np.inf
    arrays["act"][LENGTHS[0] + 2, 1] = -np.inf
    err = refused(tmp_path, capsys, **arrays)
    assert "obs has 3 NaN and 1 inf values in episodes 2, 3" in err
    assert "act has 0 NaN and 1 inf values in episode 1" in err
    assert "5 NaN/inf" in err and "bad.npz" in err


def test_data_of_another_robot_is_refused_naming_the_robot(tmp_path, capsys):
    arrays = logged_episodes("quadruped", labels=("healthy",) * 4)
    err = refused(tmp_path, capsys, **arrays)
    assert "robot 'quadruped'" in err and "'cheetah'" in err
    del arrays["robot"]  # without the name, the sizes tell
    err = refused(tmp_path, capsys, **arrays)
    assert "obs has 27 values per step" in err and "'cheetah' robot" in err and "17" in err


def test_data_at_the_control_step_for_a_run_deciding_less_often_names_the_fix(tmp_path,
                                                                               capsys):
    """A log of the robot at its own control step cannot train a run that decides every 5
    steps (each of its transitions spans 50 ms): refused, naming decision_steps=1."""
    path = write(tmp_path / "log.npz", **logged_episodes())
    assert main(["train", "tiny", "--data", path, "--out", str(tmp_path / "run"),
                 "--set", "decision_steps=5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is of robot 'cheetah'" in err and "'cheetah@5' robot" in err
    assert "decision_steps=1" in err and not (tmp_path / "run").exists()


def test_malformed_files_are_refused_with_the_key(tmp_path, capsys):
    good = logged_episodes()
    err = refused(tmp_path, capsys, obs=good["obs"])
    assert "is damaged or not a dataset" in err and "found no array 'act' (it holds ['obs'])" in err
    no_lengths = {k: v for k, v in good.items() if k != "lengths"}
    assert "lengths" in refused(tmp_path, capsys, **no_lengths)
    wrong = {**good, "lengths": np.array([30, 45, 20, 37])}
    assert "need 136 observations" in refused(tmp_path, capsys, **wrong)
    ints = {**good, "obs": good["obs"].astype(np.int64)}
    assert "obs has dtype int64" in refused(tmp_path, capsys, **ints)
    half = {k: v for k, v in good.items() if k != "conditions"}
    assert "condition_id without conditions" in refused(tmp_path, capsys, **half)
    typo = {**good, "conditions": np.array(["disabled:bshin", "weak:fthigh", "healthy"])}
    assert ("conditions[1]='weak:fthigh': condition 'weak:fthigh' has 1 field(s) after 'weak'"
            in refused(tmp_path, capsys, **typo))
    too_weak = {**good, "conditions": np.array(["disabled:bshin", "weak:fthigh:5", "healthy"])}
    assert "weak.factor=5.0 is out of range" in refused(tmp_path, capsys, **too_weak)
    leg = {**good, "conditions": np.array(["lost_leg:back_right", "healthy"]),
           "condition_id": np.array([0, 1, 0, 1])}
    assert "conditions[0] (lost_leg(back_right,0.5)) is not a condition of the 'cheetah'" in (
        refused(tmp_path, capsys, **leg))
    objects = {**good, "robot": np.array([{"name": "cheetah"}], dtype=object)}
    np.savez(tmp_path / "obj.npz", **objects)
    assert main(["train", "tiny", "--data", str(tmp_path / "obj.npz"), "--out",
                 str(tmp_path / "r2"), *TINY]) == 2
    assert "'robot' holds Python objects" in capsys.readouterr().err


def test_episodes_shorter_than_a_window_are_refused(tmp_path, capsys):
    arrays = logged_episodes(lengths=(30, 12, 40, 9))
    err = refused(tmp_path, capsys, **arrays)
    assert "2 episodes are shorter than a window of m + k = 16" in err
    assert "1 (12), 3 (9)" in err


def test_missing_and_misnamed_data_files(tmp_path, capsys):
    assert main(["train", "tiny", "--data", str(tmp_path / "absent.npz"), "--out",
                 str(tmp_path / "r"), *TINY]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "log.csv").write_text("1,2,3\n")
    assert main(["train", "tiny", "--data", str(tmp_path / "log.csv"), "--out",
                 str(tmp_path / "r"), *TINY]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    (tmp_path / "fake.npz").write_text("not a zip")
    assert main(["train", "tiny", "--data", str(tmp_path / "fake.npz"), "--out",
                 str(tmp_path / "r"), *TINY]) == 2
    assert ("is damaged or not a dataset: expected an .npz archive of obs and act arrays "
            "(docs/data.md), found 9 bytes starting b'not a zip'") in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
