"""ONNX export: every graph checked, described by its metadata and equal (≤ 1e-4) to the
library's torch code in ONNX Runtime, on random inputs and on a trajectory recorded in
simulation with the torch AdaptiveController."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from support import tiny_config, tiny_learner

from export.exporter import export_learner, export_planner
from export.parity import (
    PARITY_TOL,
    ort_session,
    random_feed,
    read_metadata,
    record_trajectory,
    reference_graph,
    run_session,
    verify_export,
)
from export.runtime import artifacts as C
from sims.registry import get_family

# name -> (tiny_config kwargs, planner overrides): every learner, every planner, GRU and LSTM,
# Meta-SGD with two inner steps, warm-started CEM with coloured noise held over two steps, cold
# CEM, MPPI with the "mid" fill, MPPI held over two steps, GrBAL with adapted action gains (and
# with a limit on its inner step's norm).
CASES = {
    "grbal_rs": (dict(learner="grbal", planner="random_shooting"), {}),
    "grbal_metasgd_mppi": (dict(learner="grbal", planner="mppi", learn_inner_lr=True,
                                inner_steps=2), {"hold": 2}),
    "mbde_mppi": (dict(learner="mbde", planner="mppi", online_steps=2),
                  {"warm_start_fill": "mid"}),
    "rebal_lstm_cem": (dict(learner="rebal", planner="cem", cell="lstm"),
                       {"beta": 0.5, "hold": 2}),
    "rebal_gru_mppi": (dict(learner="rebal", planner="mppi", cell="gru"), {}),
    "mb_cem": (dict(learner="mb", planner="cem"), {"warm_start": False}),
    "grbal_gains_cem": (dict(learner="grbal", planner="cem", action_gains=True, inner_steps=2,
                             gain_inner_lr=0.5), {}),
    "rebal_gains_mppi": (dict(learner="rebal", planner="mppi", action_gains=True), {}),
    # a limit on the inner step's norm small enough to bind on every window
    "grbal_gains_clipped_mppi": (dict(learner="grbal", planner="mppi", action_gains=True,
                                      inner_max_norm=1e-3), {}),
}
GRAPHS = {"grbal": {"dynamics", "adapt_step", "controller"},
          "mbde": {"dynamics", "adapt_step", "controller"},
          "rebal": {"dynamics", "encode", "controller"},
          "mb": {"dynamics", "controller"}}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for name, (kw, overrides) in CASES.items():
        cfg = tiny_config(**kw)
        learner = tiny_learner(cfg)
        if getattr(learner, "inner_lrs", None) is not None:  # distinct per-element rates
            with torch.no_grad():
                for p in learner.inner_lrs.values():
                    p.uniform_(0.002, 0.05, generator=torch.Generator().manual_seed(1))
        if hasattr(learner, "encoder"):  # a trained-like gain head, not the zero init
            with torch.no_grad():
                learner.encoder.head.weight.normal_(generator=torch.Generator().manual_seed(3))
        elif getattr(learner.model, "act_gain", None) is not None:  # gains away from 1
            with torch.no_grad():
                gen = torch.Generator().manual_seed(2)
                learner.model.act_gain.uniform_(0.3, 1.5, generator=gen)
        res = export_learner(learner, cfg, tmp_path_factory.mktemp(name),
                             planner_overrides=overrides, record_steps=14, latency_seconds=0)
        out[name] = (learner, cfg, res)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_every_graph_matches_torch_on_random_and_recorded_inputs(exports, name):
    learner, cfg, res = exports[name]
    assert set(res.parity) == GRAPHS[cfg.learner]
    for role, errs in res.parity.items():
        assert set(errs) == {"random", "recorded"}, role
        for kind, err in errs.items():
            assert err <= PARITY_TOL, f"{name} {role} {kind}: {err}"
    manifest = json.loads((res.out_dir / C.MANIFEST_FILE).read_text())
    assert manifest["parity_max_abs_error"] == res.parity


@pytest.mark.parametrize("name", list(CASES))
def test_checker_passes_and_metadata_describes_the_graph(exports, name):
    learner, cfg, res = exports[name]
    robot = get_family(cfg.family).robot
    for role, g in res.graphs.items():
        onnx.checker.check_model(str(g.path), full_check=True)
        model = onnx.load(str(g.path))
        meta = {p.key: json.loads(p.value) for p in model.metadata_props}  # all JSON
        keys = set(C.COMMON_KEYS) | (set(C.CONTROLLER_KEYS) if role == "controller" else set())
        assert keys <= set(meta), keys - set(meta)
        assert meta["graph"] == role and meta["format"] == C.FORMAT
        assert meta["robot"] == "cheetah" and meta["learner"] == cfg.learner
        assert meta["obs_layout"] == [{"name": p.name, "start": p.start, "size": p.size}
                                      for p in robot.obs_parts]
        lo, hi = robot.action_bounds
        assert meta["action_low"] == lo.tolist() and meta["action_high"] == hi.tolist()
        assert meta["control_timestep"] == pytest.approx(robot.control_timestep)
        assert meta["m"] == cfg.m
        assert meta["planner"]["name"] == cfg.planner.name
        assert meta["normalizer"]["obs_std"] == pytest.approx(
            learner.normalizer.obs_std.tolist())
        sess = ort_session(g.path)
        for declared, actual in ((meta["inputs"], sess.get_inputs()),
                                 (meta["outputs"], sess.get_outputs())):
            assert [d["name"] for d in declared] == [a.name for a in actual]
            for d, a in zip(declared, actual, strict=True):
                assert [x if isinstance(x, int) else "N" for x in a.shape] == d["shape"]
                assert a.type == "tensor(float)" and d["dtype"] == "float32"


def test_controller_inputs_follow_learner_and_planner(exports):
    names = {n: [d["name"] for d in read_metadata(r.graphs["controller"].path)["inputs"]]
             for n, (_, _, r) in exports.items()}
    base = [*C.RECENT_INPUTS, C.OBS, C.NOISE]
    assert names["grbal_rs"] == base
    assert names["mb_cem"] == base  # CEM without warm start: no prev_plan
    assert names["rebal_lstm_cem"] == [*base, C.PREV_PLAN]
    assert names["mbde_mppi"][:7] == [*base, C.PREV_PLAN]
    state = names["mbde_mppi"][7:]
    learner = exports["mbde_mppi"][0]
    assert state == [C.STATE_IN_PREFIX + k for k, _ in learner.model.named_parameters()]
    meta = read_metadata(exports["rebal_lstm_cem"][2].graphs["controller"].path)
    # horizon 3 held over 2 steps: 2 planning steps of noise
    assert meta["noise"]["shape"] == [2, 8, 2, 6] and meta["noise"]["distribution"] == "normal"
    meta = read_metadata(exports["grbal_rs"][2].graphs["controller"].path)
    assert meta["noise"]["shape"] == [8, 3, 6] and meta["noise"]["distribution"] == "uniform"


def test_all_zero_mask_returns_the_prior_and_masked_rows_are_ignored(exports):
    learner, cfg, res = exports["grbal_rs"]
    sess = ort_session(res.graphs["adapt_step"].path)
    meta = read_metadata(res.graphs["adapt_step"].path)
    rng = np.random.default_rng(3)
    feed = random_feed(meta, rng, mask=np.zeros(cfg.m, np.float32))
    out = run_session(sess, feed)
    for k, v in learner.model.named_parameters():
        np.testing.assert_array_equal(out[C.ADAPTED_PREFIX + k], v.detach().numpy())
    # Rows with mask 0 may hold anything, NaN included: the result equals zeros there.
    mask = np.array([0, 0, 1, 1], np.float32)
    feed = random_feed(meta, rng, mask=mask)
    clean = run_session(sess, feed)
    for k in C.RECENT_INPUTS[:3]:
        feed[k][:2] = np.nan
    dirty = run_session(sess, feed)
    for k, v in clean.items():
        np.testing.assert_array_equal(dirty[k], v)
    # ... and equals adapting on the valid rows only (the library on a 2-row window).
    want = reference_graph("adapt_step", learner, None, None, feed)  # type: ignore[arg-type]
    for k, v in want.items():
        np.testing.assert_allclose(dirty[k], v, atol=PARITY_TOL)


def test_parity_check_detects_a_different_model(exports, tmp_path):
    learner, cfg, res = exports["grbal_rs"]
    spec = cfg.planner
    twin = tiny_learner(cfg)
    with torch.no_grad():
        for p in twin.model.parameters():
            p.add_(0.05)
    errs = verify_export(res.out_dir, twin, cfg, spec, record_steps=0)
    assert errs["dynamics"]["random"] > 100 * PARITY_TOL
    assert errs["adapt_step"]["random"] > 100 * PARITY_TOL


def test_recorded_trajectory_comes_from_the_simulator(exports):
    learner, cfg, res = exports["rebal_gru_mppi"]
    spec = cfg.planner
    steps = record_trajectory(learner, cfg, spec, steps=10, seed=1)
    assert len(steps) == 10
    masks = np.array([s.feed[C.RECENT_MASK].sum() for s in steps])
    assert (masks[:cfg.m] == 0).all() and (masks[cfg.m:] == cfg.m).all()  # prior until M
    obs = np.array([s.feed[C.OBS] for s in steps])
    assert np.isfinite(obs).all() and np.ptp(obs, axis=0).max() > 1e-3  # the robot moved
    window = steps[-1].feed
    np.testing.assert_array_equal(window[C.RECENT_NEXT_OBS][-1], steps[-1].feed[C.OBS])
    np.testing.assert_array_equal(window[C.RECENT_OBS][1:], window[C.RECENT_NEXT_OBS][:-1])


def test_bad_planner_settings_are_refused():
    base = tiny_config().planner
    with pytest.raises(ValueError, match="unknown planner 'lqr'|planner='lqr'"):
        export_planner(base, name="lqr")
    with pytest.raises(ValueError, match="warmstart.*allowed"):
        export_planner(base, name="mppi", overrides={"warmstart": True})
    with pytest.raises(ValueError, match="horizon"):
        export_planner(base, horizon=0)


def test_export_refuses_to_overwrite(exports):
    learner, cfg, res = exports["mb_cem"]
    with pytest.raises(FileExistsError, match="--force"):
        export_learner(learner, cfg, res.out_dir, verify=False)


def test_cli_train_export_deploy(tmp_path: Path, capsys):
    from adapt_cli import main

    run = tmp_path / "run"
    # at every control step: the export drives sim:cheetah itself
    assert main(["train", "tiny", "--out", str(run), "--set", "learner=mb", "--set",
                 "decision_steps=1", "--quiet"]) == 0
    out = tmp_path / "onnx"
    # A planner name the registry does not hold: refused naming the registered ones, nothing
    # written.
    assert main(["export", str(run), "--out", str(out), "--planner", "ilqr"]) == 2
    err = capsys.readouterr().err
    assert "'ilqr'" in err and "mppi" in err and "Traceback" not in err and not out.exists()
    assert main(["export", str(run), "--out", str(out), "--planner", "mppi",
                 "--candidates", "12", "--horizon", "4", "--verify-steps", "12"]) == 0
    text = capsys.readouterr().out
    assert "parity: max abs error" in text
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    assert manifest["planner"]["num_candidates"] == 12 and manifest["planner"]["horizon"] == 4
    assert max(v for d in manifest["parity_max_abs_error"].values()
               for v in d.values()) <= PARITY_TOL
    rep = tmp_path / "report"
    assert main(["deploy", str(out), "--robot", "sim:cheetah", "--duration", "0.4", "--fast",
                 "--switch", "0.2=disabled:bthigh", "--quiet",
                 "--out", str(rep)]) == 0
    report = json.loads((rep / "report.json").read_text())
    for key in ("return", "distance", "deadline_misses", "nonfinite_obs"):
        assert key in report
    assert set(report["latency_ms"]) == {"p50", "p99", "max"}
    assert report["report"]["steps"] == 40
    assert "disabled(bthigh)" in report["schedule"]
    # An artifact for the cheetah is refused for the quadruped, naming both.
    capsys.readouterr()
    assert main(["deploy", str(out), "--robot", "sim:quadruped", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "'cheetah'" in err and "'quadruped'" in err
    assert main(["deploy", str(out), "--robot", "cheetah", "--duration", "0.1"]) == 2
    assert "sim:NAME" in capsys.readouterr().err


@pytest.mark.parametrize("planner,extra", [("random_shooting", []), ("cem", []),
                                           ("mppi", ["--set", "warm_start=true"])])
def test_runtime_and_torch_controller_act_alike_on_the_same_noise(tmp_path: Path, planner,
                                                                  extra):
    # The exported controller in ONNX Runtime and the torch AdaptiveController planning with
    # the runtime's noise stream drive the damaged cheetah the same way, seed for seed.
    from adapt_cli import main
    from export.quickstart import onnx_returns, torch_returns

    run = tmp_path / "run"
    # GrBAL with action gains, deciding every 5 control steps (the cheetah's default)
    assert main(["train", "tiny", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--out", str(out), "--planner", planner, "--candidates",
                 "10", "--horizon", "3", "--no-verify", *extra]) == 0
    onnx = onnx_returns(out, "cheetah@5", "disabled:bthigh", [0, 1], 30)
    torch_r = torch_returns(run / "checkpoint.pt", "disabled:bthigh", [0, 1], 30,
                            runtime_noise=True, export_dir=out)
    np.testing.assert_allclose(onnx, torch_r, rtol=1e-3, atol=1e-3)


def test_a_failed_parity_check_writes_nothing_and_keeps_the_old_export(exports, tmp_path,
                                                                        monkeypatch):
    import export.exporter as ex

    learner, cfg, res = exports["mb_cem"]
    monkeypatch.setattr(ex, "verify_export",
                        lambda *a, **k: {"dynamics": {"random": 0.5}, "controller": {}})
    with pytest.raises(RuntimeError, match="parity check failed.*was not written"):
        export_learner(learner, cfg, tmp_path / "new", record_steps=0)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy
    # An existing export is replaced only once the new one passed, even with overwrite.
    before = {p.name: p.read_bytes() for p in res.out_dir.iterdir()}
    with pytest.raises(RuntimeError, match="parity check failed"):
        export_learner(learner, cfg, res.out_dir, overwrite=True, record_steps=0)
    assert {p.name: p.read_bytes() for p in res.out_dir.iterdir()} == before
    assert not [p for p in res.out_dir.parent.iterdir()
                if p.name.startswith(f".{res.out_dir.name}.")]


def test_a_limit_on_the_inner_step_is_in_the_exported_step(exports):
    """The clipped case's parity above holds against the clipped torch step; here the limit
    binds (the unclipped step gives other weights) and the metadata records it."""
    import copy
    import dataclasses

    learner, cfg, res = exports["grbal_gains_clipped_mppi"]
    path = res.graphs["adapt_step"].path
    meta = read_metadata(path)
    assert meta["adaptation"]["inner_max_norm"] == pytest.approx(1e-3)
    feed = random_feed(meta, np.random.default_rng(0))
    got = run_session(ort_session(path), feed)
    robot = get_family(cfg.family).robot
    plain = copy.deepcopy(learner)
    plain.config = dataclasses.replace(plain.config, inner_max_norm=0.0)
    want = reference_graph("adapt_step", plain, cfg.planner, robot, feed)
    assert max(float(np.abs(got[k] - want[k]).max()) for k in got) > 10 * PARITY_TOL


@pytest.mark.parametrize("max_norm, steps", [(0.0, 1), (1e-3, 1), (1e-3, 2), (100.0, 2)])
def test_the_factored_step_equals_the_dense_one_with_gains_and_a_limit(max_norm, steps):
    """The controller plans with θ* plus low-rank factors (constant weights ONNX Runtime packs
    once). With adapted action gains and a limit on the step's norm — binding (1e-3) or not
    (100) — and a second step that sees the moved gains, the factors give the weights the
    learners' own dense step gives."""
    from export.graphs.adapters import make_adapter
    from export.graphs.cores import LowRankParams

    cfg = tiny_config(learner="grbal", action_gains=True, gain_inner_lr=0.5, m=4,
                      hidden=(40, 40), inner_steps=steps, inner_max_norm=max_norm)
    learner = tiny_learner(cfg)
    with torch.no_grad():
        learner.model.act_gain.uniform_(0.3, 1.5, generator=torch.Generator().manual_seed(2))
    adapter = make_adapter(learner, window=4)
    core = adapter.core
    assert core.lowrank_exact and "lowrank" in core.recorded
    gen = torch.Generator().manual_seed(0)
    do, da = core.obs_dim, core.act_dim
    recent = [torch.randn(4, do, generator=gen), torch.rand(4, da, generator=gen) * 2 - 1,
              torch.randn(4, do, generator=gen), torch.tensor([1.0, 1.0, 0.0, 1.0])]
    factored = core.sgd(recent, lowrank=True)
    assert isinstance(factored, LowRankParams)
    assert any(factored.factors[i] for i in range(core.n_layers))  # the wide layer is factored
    dense = core.sgd(recent)
    for (wf, bf), (wd, bd) in zip(factored.dense(), dense, strict=True):
        torch.testing.assert_close(wf, wd, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(bf, bd, atol=2e-5, rtol=1e-4)
    moved = max(float((wd - w0).abs().max()) for (wd, _), (w0, _) in
                zip(dense[1:], core.raw_theta()[1:], strict=True))
    assert moved > 0  # the step changed the factored layers: the comparison is not vacuous
