"""On a two-node Ray cluster: `adapt eval --ray` episodes equal the local run's bit for bit
(latencies aside), a worker killed mid-episode is retried to the same result, a bad address is
refused before any work, and an interrupted sweep re-submitted to the cluster finishes every run
exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from blocked_imports import blocking_prelude

from adapt_cli import main
from adaptive_control.evaluation.episodes import (
    Actor,
    LearnerMethod,
    MethodSpec,
    PlannerSizes,
    RandomMethod,
    evaluate,
    scenarios_for,
)
from adaptive_control.runs import checkpoint_path
from adaptive_control.training import loop as training
from adaptive_control.training.config import load_config
from sims.families import TaskFamily
from sims.registry import get_family

ROOT = Path(__file__).resolve().parents[1]
FAMILY = "cheetah-cripple"
STEPS, SEEDS, SWITCH_S = 80, [0, 1], 0.4
LATENCIES = ("latency_ms_p50", "latency_ms_p99")


def _comparable(episodes: list) -> str:
    """Every field but the latencies, as exact text (JSON floats round-trip; NaN == NaN)."""
    rows = [e if isinstance(e, dict) else asdict(e) for e in episodes]
    return json.dumps([{k: v for k, v in r.items() if k not in LATENCIES} for r in rows],
                      sort_keys=True)


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each on this machine, shared by the tests of this module."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from adaptive_control.distributed import connect

    # Workers cannot import this test module: ship its classes (the killer below) by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    connect(c.address, quiet=True)
    yield c.address
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def grbal(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("runs")
    training.train(load_config(preset="tiny", overrides=["iterations=1", "decision_steps=1"]),
                   root / "grbal", progress=False)
    return str(checkpoint_path(root / "grbal"))


def _methods(grbal: str) -> list[MethodSpec]:
    return [MethodSpec("random", RandomMethod()), MethodSpec("grbal", LearnerMethod(grbal))]


def _evaluate(methods: list[MethodSpec], ray_address: str | None = None) -> list:
    family = get_family(FAMILY)
    return evaluate(methods, family, scenarios_for(family, ["fixed", "switch"], SWITCH_S),
                    SEEDS, STEPS, workers=1, progress=False, ray=ray_address)


@pytest.fixture(scope="module")
def local(grbal) -> list:
    return _evaluate(_methods(grbal))


def test_evaluate_on_a_two_node_cluster_equals_the_local_run(cluster, grbal, local):
    on_ray = _evaluate(_methods(grbal), cluster)
    assert len(on_ray) == 2 * 2 * len(SEEDS)
    assert [(e.method, e.scenario, e.seed) for e in on_ray] == \
        [(e.method, e.scenario, e.seed) for e in local]
    assert _comparable(on_ray) == _comparable(local)
    assert all(np.isfinite(e.pred_error_k) for e in on_ray if e.method == "grbal")


def test_adapt_eval_ray_writes_the_local_results(cluster, grbal, tmp_path, monkeypatch):
    # A relative checkpoint path resolves on the workers as on the driver.
    monkeypatch.chdir(Path(grbal).parents[1])
    rel = str(Path(grbal).relative_to(Path(grbal).parents[1]))
    args = ["eval", "--family", FAMILY, "--method", "random", "--method",
            f"grbal={rel}", "--scenarios", "switch", "--switch-at", str(SWITCH_S),
            "--seeds", "2", "--duration", "0.6", "--decision-steps", "1"]
    assert main(args + ["--workers", "1", "--out", str(tmp_path / "local")]) == 0
    assert main(args + ["--ray", cluster, "--out", str(tmp_path / "ray")]) == 0
    eps = [json.loads((tmp_path / d / "results.json").read_text())["episodes"]
           for d in ("local", "ray")]
    assert len(eps[1]) == 4 and _comparable(eps[1]) == _comparable(eps[0])


@dataclass(frozen=True)
class _KillOnce:
    """Random actions; the first episode of ``seed`` run by a worker process kills that process
    mid-episode (one such kill in all, claimed through ``marker``)."""

    marker: str
    seed: int
    driver_pid: int

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        actor = RandomMethod()(family, seed, planner)
        inner, kill = actor.controller, seed == self.seed and os.getpid() != self.driver_pid
        marker, steps = self.marker, [0]

        class Controller:
            latencies = inner.latencies

            def reset(self) -> None:
                inner.reset()

            def __call__(self, obs: np.ndarray) -> np.ndarray:
                steps[0] += 1
                if kill and steps[0] == 20:
                    try:
                        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                    except FileExistsError:
                        pass
                    else:
                        os._exit(1)  # the worker dies as if killed: Ray must retry the task
                return inner(obs)

        return Actor(Controller())

    def describe(self) -> dict[str, str]:
        return RandomMethod().describe()


def test_a_killed_worker_is_retried_to_the_same_result(cluster, local, tmp_path):
    marker = tmp_path / "killed"
    spec = MethodSpec("random", _KillOnce(str(marker), seed=1, driver_pid=os.getpid()))
    on_ray = _evaluate([spec], cluster)
    assert marker.exists()  # a worker really died
    assert _comparable(on_ray) == _comparable([e for e in local if e.method == "random"])


@pytest.mark.parametrize("address,fragment", [
    ("nohost", "allowed 'local', 'auto', HOST:PORT"),
    ("127.0.0.1:1", "no Ray head answers at 127.0.0.1:1"),
])
def test_adapt_eval_refuses_a_bad_ray_address_before_work(tmp_path, capsys, address, fragment):
    pytest.importorskip("ray")
    out = tmp_path / "o"
    rc = main(["eval", "--family", FAMILY, "--method", "random", "--scenarios", "fixed",
               "--duration", "1", "--ray", address, "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"--ray={address!r}" in err and fragment in err
    assert not out.exists()


def test_adapt_eval_without_ray_never_imports_it(tmp_path):
    script = blocking_prelude("ray") + textwrap.dedent(f"""
        from adapt_cli import main
        rc = main(["eval", "--family", {FAMILY!r}, "--method", "random", "--scenarios",
                   "fixed", "--seeds", "1", "--duration", "1", "--workers", "1",
                   "--out", {str(tmp_path / "o")!r}])
        assert rc == 0 and not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ sweeps on the cluster
def test_an_interrupted_sweep_resubmitted_to_the_cluster_finishes_every_run_once(
        cluster, tmp_path, monkeypatch, capsys):
    """The driver dies during the second of three runs; the sweep re-submitted to the two-node
    cluster skips the finished run (its files untouched), resumes the killed one from its
    checkpoint and trains the last: every iteration of every run exactly once."""
    import hashlib

    from adaptive_control.runs import run_status
    from adaptive_control.training import sweep

    grid = ["tiny", "--seeds", "0-2", "--set", "grbal.hidden_sizes=[8,8]", "--quiet"]
    names = ["seed=0", "seed=1", "seed=2"]
    root = tmp_path / "sweep"
    real_train, calls = sweep.train, []

    def driver_dies_in_the_second_run(cfg, out, resume=False, progress=True):
        calls.append(out)
        if len(calls) == 2:
            real_train(cfg, out, resume=resume, progress=progress, stop_after=1)
            raise KeyboardInterrupt("the driver died")
        return real_train(cfg, out, resume=resume, progress=progress)

    monkeypatch.setattr(sweep, "train", driver_dies_in_the_second_run)
    assert main(["sweep", *grid, "--out", str(root)]) == 130  # Ctrl-C: one line, exit 130
    monkeypatch.undo()
    assert [run_status(root / n) for n in names] == ["done", "partial", "new"]

    def files(run: Path) -> dict:
        return {str(p.relative_to(run)): (p.stat().st_mtime_ns, hashlib.sha256(
            p.read_bytes()).hexdigest()) for p in sorted(run.rglob("*")) if p.is_file()}

    done = files(root / names[0])
    capsys.readouterr()
    assert main(["sweep", *grid, "--ray", cluster, "--out", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, status in zip(names, ["skipped", "resumed", "trained"], strict=True):
        assert any(line.startswith(name) and status in line for line in out), out
    assert files(root / names[0]) == done
    for name in names:
        assert run_status(root / name) == "done"
        iterations = [row.split(",")[0] for row in
                      (root / name / "metrics.csv").read_text().splitlines()[1:]]
        assert iterations == ["0", "1"], (name, iterations)
