"""ONNX export of an ensemble of learners: every member adapted on the same window, every
candidate rolled out under each member and the returns averaged — in controller.onnx as in the
torch AdaptiveController — with the per-member tensors stacked along a leading member axis."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from blocked_imports import deploy_without_torch
from support import tiny_config, tiny_learner

from adaptive_control.learners import Ensemble, Learner
from adaptive_control.training.config import TrainConfig
from export.exporter import export_learner
from export.parity import PARITY_TOL, ort_session, random_feed, read_metadata, run_session
from export.runtime import artifacts as C
from export.runtime.session import ControllerSession

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 17, 6


def _ensemble(cfg: TrainConfig, k: int, seed: int = 0) -> tuple[Ensemble, TrainConfig]:
    """``k`` tiny members of ``cfg``'s kind whose weights (and action gains) differ."""
    members: list[Learner] = []
    for i in range(k):
        learner = tiny_learner(cfg)
        gen = torch.Generator().manual_seed(100 * seed + i)
        with torch.no_grad():
            for name, p in learner.model.named_parameters():
                if name == "act_gain":
                    p.uniform_(0.3, 1.5, generator=gen)
                else:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
        members.append(learner)
    return Ensemble(members).eval(), dataclasses.replace(cfg, ensemble=k)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """GrBAL with adapted action gains (3 members, warm-started MPPI) and MB+DE (2 members,
    random shooting: carried online weights), both through the exporter's parity check."""
    out = {}
    for name, kw, k in (
            ("grbal", dict(learner="grbal", planner="mppi", action_gains=True), 3),
            ("mbde", dict(learner="mbde", planner="random_shooting", online_steps=2), 2)):
        ens, cfg = _ensemble(tiny_config(**kw), k)
        res = export_learner(ens, cfg, tmp_path_factory.mktemp(name), record_steps=10,
                             latency_seconds=0)
        out[name] = (ens, cfg, res)
    return out


@pytest.mark.parametrize("name", ["grbal", "mbde"])
def test_every_graph_passes_parity_on_random_and_recorded_inputs(exports, name):
    ens, cfg, res = exports[name]
    assert set(res.parity) == {"dynamics", "adapt_step", "controller"}
    for role, errs in res.parity.items():
        assert set(errs) == {"random", "recorded"}, role
        for kind, err in errs.items():
            assert err <= PARITY_TOL, f"{name} {role} {kind}: {err}"


@pytest.mark.parametrize("name", ["grbal", "mbde"])
def test_member_count_is_recorded_and_leads_the_per_member_shapes(exports, name):
    ens, cfg, res = exports[name]
    k = len(ens.members)
    manifest = json.loads((res.out_dir / C.MANIFEST_FILE).read_text())
    assert manifest["ensemble"] == k and manifest["learner"] == cfg.learner
    for g in res.graphs.values():
        assert read_metadata(g.path)["ensemble"] == k
    dyn = read_metadata(res.graphs["dynamics"].path)
    assert [d["shape"] for d in dyn["outputs"]] == [[k, "N", OBS_DIM]]
    adapted = {d["name"]: d["shape"] for d in read_metadata(res.graphs["adapt_step"].path)
               ["outputs"]}
    for key, p in ens.members[0].model.named_parameters():
        if key.startswith("net."):
            assert adapted[C.ADAPTED_PREFIX + key] == [k, *p.shape]
    ctrl = read_metadata(res.graphs["controller"].path)
    shapes = {d["name"]: d["shape"] for d in ctrl["inputs"] + ctrl["outputs"]}
    # one set of candidates, as for one model: the graph tiles them over the members itself
    assert shapes[C.NOISE] == list(cfg.planner.noise_shape(ACT_DIM))
    assert shapes[C.ACTION] == [ACT_DIM]
    state = {n: s for n, s in shapes.items() if n.startswith(C.STATE_IN_PREFIX)}
    assert bool(state) == (name == "mbde")
    assert all(s[0] == k for s in state.values())


def test_dynamics_predicts_with_every_member(exports):
    """Row block m of next_obs is member m's own model (they differ)."""
    ens, cfg, res = exports["grbal"]
    meta = read_metadata(res.graphs["dynamics"].path)
    feed = random_feed(meta, np.random.default_rng(1), batch=5)
    got = run_session(ort_session(res.graphs["dynamics"].path), feed)[C.NEXT_OBS]
    obs, act = torch.from_numpy(feed[C.OBS]), torch.from_numpy(feed[C.ACT])
    with torch.no_grad():
        want = np.stack([m.model(obs, act).numpy() for m in ens.members])
    np.testing.assert_allclose(got, want, atol=PARITY_TOL)
    assert np.abs(want[0] - want[1]).max() > 1e-2


def _closed_loop(ens: Learner, cfg: TrainConfig, out: Path, steps: int) -> tuple[float, float]:
    """The runtime session and the torch AdaptiveController with the ensemble, on the same
    noise draws and observations: (largest action difference, largest difference between the
    torch ensemble's action and its first member's alone on the same inputs)."""
    from adaptive_control.control import AdaptiveController
    from adaptive_control.planning import make_planner
    from export.runtime.sim_robot import SimRobot
    from sims.rewards import task_reward

    robot = SimRobot("cheetah", "disabled:bthigh", seed=3)
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in robot.robot.action_bounds)
    s = ControllerSession(out, robot="cheetah")
    ctrl = AdaptiveController(ens, make_planner(cfg.planner, lo, hi), task_reward(robot.robot),
                              m=cfg.m, seed=5)
    # a copy: MB+DE's member carries online weights, which the ensemble's controller updates
    solo = AdaptiveController(copy.deepcopy(ens.members[0]), make_planner(cfg.planner, lo, hi),
                              task_reward(robot.robot), m=cfg.m, seed=5)
    obs = robot.reset()
    worst = apart = 0.0
    for _ in range(steps):
        gen = torch.Generator()
        gen.set_state(ctrl.generator.get_state())
        draw = torch.rand if s.uniform_noise else torch.randn
        s._noise = draw(s.noise_shape, generator=gen, dtype=torch.float32).numpy()
        a_rt = s.step(obs)
        a_torch = ctrl(obs.astype(np.float32))
        apart = max(apart, float(np.max(np.abs(solo(obs.astype(np.float32)) - a_torch))))
        worst = max(worst, float(np.max(np.abs(a_rt - a_torch))))
        robot.act(a_torch)
        obs = robot.observe()
    assert s.counters["graph_actions"] == steps
    return worst, apart


@pytest.mark.parametrize("name", ["grbal", "mbde"])
def test_runtime_reproduces_the_torch_ensemble_controller_in_closed_loop(exports, name):
    """Window filling, warm start and (MB+DE) every member's carried online weights handled
    by the runtime: its actions equal the torch AdaptiveController's with the ensemble, which
    differ from the first member's alone."""
    ens, cfg, res = exports[name]
    ens.reset()
    worst, apart = _closed_loop(ens, cfg, res.out_dir, 3 * cfg.m)
    assert worst <= PARITY_TOL
    assert apart > 1e-3


def test_deploy_runs_an_ensemble_export_without_torch(exports, tmp_path):
    """``adapt deploy`` on sim:cheetah, torch import blocked."""
    report, _ = deploy_without_torch(exports["grbal"][2].out_dir, tmp_path)
    assert report["report"]["steps"] == 20
    assert report["report"]["graph_actions"] == 20
    assert report["ensemble"] == 3 and report["learner"] == "grbal"


def test_ensemble_of_one_exports_like_the_plain_learner(tmp_path):
    """Same graph inputs and outputs, same actions; the manifest says ensemble 1."""
    cfg = tiny_config(learner="grbal", planner="mppi", action_gains=True)
    one, _ = _ensemble(cfg, 1, seed=2)
    plain = export_learner(one.members[0], cfg, tmp_path / "plain", verify=False,
                           latency_seconds=0)
    wrapped = export_learner(one, cfg, tmp_path / "one", verify=False, latency_seconds=0)
    assert "ensemble" not in plain.manifest and wrapped.manifest["ensemble"] == 1
    assert wrapped.manifest["learner"] == plain.manifest["learner"] == "grbal"
    assert set(wrapped.graphs) == set(plain.graphs)
    rng = np.random.default_rng(4)
    for role, g in plain.graphs.items():
        a, b = read_metadata(g.path), read_metadata(wrapped.graphs[role].path)
        assert a["inputs"] == b["inputs"] and a["outputs"] == b["outputs"], role
        feed = random_feed(a, rng)
        got_a = run_session(ort_session(g.path), feed)
        got_b = run_session(ort_session(wrapped.graphs[role].path), feed)
        for k, v in got_a.items():
            np.testing.assert_array_equal(v, got_b[k], err_msg=f"{role} {k}")


def test_reduced_precision_converts_every_members_products(tmp_path):
    """int8: each member's constant planning weights are quantised (twice the one model's
    count for two members) and the error against fp32 is measured."""
    cfg = tiny_config(learner="mb", planner="mppi")
    ens, cfg2 = _ensemble(cfg, 2, seed=3)
    res = export_learner(ens, cfg2, tmp_path / "ens", verify=False, latency_seconds=0,
                         precision="int8", record_steps=4)
    solo = export_learner(ens.members[0], cfg, tmp_path / "one", verify=False,
                          latency_seconds=0, precision="int8", record_steps=4)
    got, one = res.manifest["precision"], solo.manifest["precision"]
    for role in ("dynamics", "controller"):
        assert got["graphs"][role]["nodes"] == 2 * one["graphs"][role]["nodes"] > 0, role
    assert 0 < got["error_vs_fp32"]["dynamics"]["relative_change_error"] < 0.1
    assert 0 < got["error_vs_fp32"]["controller"]["action_max_abs"] < 0.5
    assert read_metadata(res.graphs["controller"].path)["precision"]["name"] == "int8"


def test_bad_ensembles_are_refused_before_any_work(tmp_path):
    cfg = tiny_config(learner="rebal", planner="random_shooting")
    rebal = Ensemble([tiny_learner(cfg), tiny_learner(cfg)])
    with pytest.raises(ValueError, match="ensemble of rebal learners.*mb, grbal and mbde"):
        export_learner(rebal, dataclasses.replace(cfg, ensemble=2), tmp_path / "rebal")
    cfg = tiny_config(learner="grbal")
    grbal = Ensemble([tiny_learner(cfg), tiny_learner(cfg)])
    with pytest.raises(ValueError, match="ensemble=1 in the config.*ensemble of 2"):
        export_learner(grbal, cfg, tmp_path / "mismatch")
    with pytest.raises(ValueError, match="ensemble=3 in the config.*one model"):
        export_learner(grbal.members[0], dataclasses.replace(cfg, ensemble=3),
                       tmp_path / "single")
    assert not any(tmp_path.iterdir())
