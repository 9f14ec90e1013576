"""`adapt sweep` (grid, run folders, resubmission, local and Ray) and `adapt train --ray`."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from adapt_cli import main
from adaptive_control.runs import run_status
from adaptive_control.training import loop as training
from adaptive_control.training import sweep
from adaptive_control.training.config import load_config
from sims.dataset import Dataset

#: Four runs of two tiny iterations each.
GRID = ["tiny", "--seeds", "0-1", "--set", "learner=grbal,mb", "--set",
        "grbal.hidden_sizes=[16,16]", "--quiet"]
NAMES = ["learner=grbal,seed=0", "learner=grbal,seed=1", "learner=mb,seed=0", "learner=mb,seed=1"]


def _metrics(run) -> list[dict]:
    """metrics.csv without the timings, which differ between runs of the same seed."""
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _files(run) -> dict[str, tuple[int, str]]:
    """Every file of a run folder: (mtime, content hash)."""
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns,
                                     hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as in each Ray task: on a machine shared with other work, torch's
    spinning threads make tiny fits many times slower. Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The grid swept locally, uninterrupted: the reference of the other sweeps."""
    root = tmp_path_factory.mktemp("local") / "sweep"
    assert main(["sweep", *GRID, "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the module, shut down at its end."""
    ray = pytest.importorskip("ray")
    from adaptive_control.distributed import connect

    connect("local", num_cpus=2, quiet=True)
    yield ray
    ray.shutdown()


# ------------------------------------------------------------------ grammar and grid
def test_seeds_grammar():
    assert sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert sweep.parse_seeds("0,3,7-9") == [0, 3, 7, 8, 9]
    assert sweep.parse_seeds("5") == [5]
    for text, fragment in [("3-1", "'3-1' is empty"), ("a", "'a' is not a seed"),
                           ("-1", "not a seed"), ("0,,1", "not a seed"),
                           ("0-2,1", "seed 1 is given twice")]:
        with pytest.raises(ValueError, match=fragment):
            sweep.parse_seeds(text)


def test_set_values_grammar():
    def values(text):
        return [v for _, v in sweep.parse_axis(text)[1]]

    assert values("learner=grbal,mb") == ["grbal", "mb"]
    assert values("grbal.hidden_sizes=[32,32]") == [[32, 32]]
    assert values("grbal.hidden_sizes=[32, 32],[64,64]") == [[32, 32], [64, 64]]
    assert values("optim.val_fraction=0.1,0.2") == [0.1, 0.2]
    assert values("grbal.action_gains=true,false") == [True, False]
    assert values("family='a,b',c") == ["a,b", "c"]
    assert values("planner={name='cem',horizon=4},mppi") == [{"name": "cem", "horizon": 4},
                                                             "mppi"]
    for text, fragment in [("learner", "must look like key=value1,value2"),
                           ("learner=grbal,,mb", "an empty value"),
                           ("learner=grbal,", "an empty value"),
                           ("grbal.hidden_sizes=[32,32", "not closed"),
                           ("grbal.hidden_sizes=32,32]", "unbalanced"),
                           ("family='a,b", "quote ' is not closed"),
                           ("learner=mb,mb", "'mb' is given twice")]:
        with pytest.raises(ValueError, match=fragment):
            sweep.parse_axis(text)


def test_grid_is_the_seeds_times_the_product_of_the_values():
    points = sweep.expand_grid("tiny", ["learner=grbal,mb", "grbal.hidden_sizes=[16,16],[8]",
                                        "iterations=1"], "3-4")
    assert [p.name for p in points] == [
        f"learner={learner},grbal.hidden_sizes={h},seed={s}"
        for learner in ("grbal", "mb") for h in ("16x16", "8") for s in (3, 4)]
    assert all(p.config.iterations == 1 for p in points)  # one value: every run, not in names
    p = points[2]
    assert (p.config.learner, p.config.grbal.hidden_sizes, p.config.seed) == ("grbal", (8,), 3)
    assert p.settings == {"learner": "grbal", "grbal.hidden_sizes": [8], "iterations": 1}
    default_seed = sweep.expand_grid("tiny", ["learner=grbal,mb"])
    assert [p.name for p in default_seed] == ["learner=grbal,seed=0", "learner=mb,seed=0"]
    for sets, fragment in [(["colour=1,2"], "grid point colour=1,seed=0: unknown config key"),
                           (["learner=grbal,maml"], "learner='maml' is unknown"),
                           (["seed=1,2"], "--seeds"),
                           (["m=4", "m=8"], "given twice"),
                           (["family=cheetah-cripple,'cheetah-cripple'"], "given twice")]:
        with pytest.raises(ValueError, match=fragment):
            sweep.expand_grid("tiny", sets)


def test_run_status(tmp_path):
    cfg = load_config(preset="tiny")
    assert run_status(tmp_path / "r") == "new"
    training.train(cfg, tmp_path / "r", progress=False, stop_after=1)
    assert run_status(tmp_path / "r") == "partial"
    assert run_status(tmp_path / "r", iterations=1) == "done"
    training.train(cfg, tmp_path / "r", resume=True, progress=False)
    assert run_status(tmp_path / "r") == "done"


# ------------------------------------------------------------------ refusals before any work
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, monkeypatch, local_sweep):
    def no_training(*a, **k):
        raise AssertionError("trained before the input was checked")

    monkeypatch.setattr(sweep, "train", no_training)
    for args, fragment in [
        (["tiny", "--seeds", "3-1"], "--seeds='3-1': the range '3-1' is empty"),
        (["tiny", "--set", "optim.max_epoch=1,2"], "unknown config key 'optim.max_epoch'"),
        (["tiny", "--ray", "nowhere"], "--ray='nowhere'"),
        (["tiny", "--workers", "0"], "--workers=0"),
    ]:
        assert main(["sweep", *args, "--out", str(tmp_path / "x")]) == 2
        assert fragment in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    # A re-submission with another grid (one more seed) touches nothing.
    before = (local_sweep / "sweep.json").read_text()
    assert main(["sweep", *GRID[:2], "0-2", *GRID[3:], "--out", str(local_sweep)]) == 2
    err = capsys.readouterr().err
    assert "lists another grid" in err and "learner=grbal,seed=2" in err
    assert (local_sweep / "sweep.json").read_text() == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("")
    assert main(["sweep", *GRID, "--out", str(tmp_path / "busy")]) == 2
    assert "holds files but no sweep.json" in capsys.readouterr().err


# ------------------------------------------------------------------ local sweeps
def test_local_sweep_writes_the_grid_and_one_run_folder_per_point(local_sweep, capsys):
    listed = json.loads((local_sweep / "sweep.json").read_text())
    assert [r["name"] for r in listed["runs"]] == NAMES
    assert listed["runs"][2]["config"]["learner"] == "mb"
    for name in NAMES:
        assert run_status(local_sweep / name) == "done"
    rows = list(csv.DictReader(open(local_sweep / "summary.csv")))
    assert [(r["name"], r["status"]) for r in rows] == [(n, "trained") for n in NAMES]
    assert float(rows[0]["val_loss"]) == float(_metrics(local_sweep / NAMES[0])[-1]["val_loss"])


def test_interrupted_sweep_finishes_every_run_once_when_resubmitted(tmp_path, monkeypatch,
                                                                   local_sweep, capsys):
    root = tmp_path / "sweep"
    real_train = sweep.train
    calls: list[tuple[str, bool]] = []

    def killed_in_the_second_run(cfg, out, resume=False, progress=True):
        calls.append((Path(out).name, resume))
        if len(calls) == 2:  # killed after the second run's first checkpoint
            real_train(cfg, out, resume=resume, progress=progress, stop_after=1)
            raise KeyboardInterrupt("simulated kill")
        return real_train(cfg, out, resume=resume, progress=progress)

    monkeypatch.setattr(sweep, "train", killed_in_the_second_run)
    assert main(["sweep", *GRID, "--out", str(root)]) == 130  # Ctrl-C: one line, what was kept
    assert "the same command resumes the sweep" in capsys.readouterr().err
    assert [run_status(root / n) for n in NAMES] == ["done", "partial", "new", "new"]
    done = _files(root / NAMES[0])
    partial_data = _files(root / NAMES[1] / "data")

    def counted(cfg, out, resume=False, progress=True):
        calls.append((Path(out).name, resume))
        return real_train(cfg, out, resume=resume, progress=progress)

    calls.clear()
    monkeypatch.setattr(sweep, "train", counted)
    assert main(["sweep", *GRID, "--out", str(root)]) == 0
    assert calls == [(NAMES[1], True), (NAMES[2], False), (NAMES[3], False)]
    assert _files(root / NAMES[0]) == done  # not retrained: every file untouched
    assert _files(root / NAMES[1] / "data").items() >= partial_data.items()  # iteration 0 kept
    out = capsys.readouterr().out
    for name, status in zip(NAMES, ["skipped", "resumed", "trained", "trained"], strict=True):
        assert any(line.startswith(name) and status in line for line in out.splitlines())
    for name in NAMES:  # the same runs as the uninterrupted sweep
        assert _metrics(root / name) == _metrics(local_sweep / name)


def test_sweep_on_worker_processes_equals_the_sequential_sweep(tmp_path, local_sweep):
    grid = ["tiny", "--seeds", "0-1", "--set", "iterations=1", "--quiet"]
    assert main(["sweep", *grid, "--out", str(tmp_path / "seq")]) == 0
    assert main(["sweep", *grid, "--workers", "2", "--out", str(tmp_path / "par")]) == 0
    for name in ("seed=0", "seed=1"):
        assert _metrics(tmp_path / "par" / name) == _metrics(tmp_path / "seq" / name)


# ------------------------------------------------------------------ Ray
def test_sweep_on_ray_equals_the_local_sweep(tmp_path, local_sweep, ray_local, capsys):
    root = tmp_path / "ray"
    assert main(["sweep", *GRID, "--ray", "--out", str(root)]) == 0
    for name in NAMES:
        assert _metrics(root / name) == _metrics(local_sweep / name)
    assert main(["sweep", *GRID, "--ray", "local", "--out", str(root)]) == 0  # all done
    assert capsys.readouterr().out.strip().endswith("4 skipped")


def test_train_on_ray_collects_the_same_data_on_any_chunking(tmp_path, ray_local):
    from adaptive_control.training.ray_collect import RayCollector

    over = ["--set", "collect.rollouts_per_iter=3"]
    for run in ("a", "b"):
        assert main(["train", "tiny", *over, "--ray", "--quiet", "--out", str(tmp_path / run)]) == 0
    cfg = load_config(preset="tiny", overrides=[over[1]])
    training.train(cfg, tmp_path / "c", progress=False, collector=RayCollector(chunks=1))
    for it, (source, n) in enumerate([("random", 4), ("on_policy:grbal", 3)]):
        a, b, c = (Dataset.load(tmp_path / r / "data" / f"iter_{it:03d}.npz") for r in "abc")
        assert a.source == source and a.obs.shape == (n, 61, 17) and a.act.shape == (n, 60, 6)
        assert a.stats["requested"] == n and a.stats["dropped_diverged"] == 0
        for other in (b, c):
            np.testing.assert_array_equal(a.obs, other.obs)
            np.testing.assert_array_equal(a.act, other.act)
            np.testing.assert_array_equal(a.condition_id, other.condition_id)
            assert a.conditions == other.conditions
        assert len(set(map(bytes, a.act))) == n  # every rollout drew its own actions
