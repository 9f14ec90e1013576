"""The evaluation harness: recovery time, an end-to-end `adapt eval`, bad input."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from adapt_cli import main
from adaptive_control.evaluation.episodes import moving_average, recovery_time
from adaptive_control.training import loop as training
from adaptive_control.training.config import load_config

DT = 0.01


def test_recovery_time_on_a_synthetic_trace():
    # 2 m/s for 3 s, drop to 0.2 m/s at the switch, ramp back to 2 m/s over 2 s.
    pre = np.full(300, 2.0)
    ramp = np.linspace(0.2, 2.0, 200)
    speed = np.concatenate([pre, ramp, np.full(300, 2.0)])
    t = recovery_time(speed, DT, switch_step=300)
    # The 0.5 s moving average reaches 1.6 m/s (80 %) when the ramp's mean over the
    # trailing 50 steps does: solve for the first index i with mean(ramp[i-49:i+1]) >= 1.6.
    smooth = moving_average(ramp, 50)
    expected = (np.nonzero(smooth >= 1.6)[0][0] + 1) * DT
    assert t == pytest.approx(expected)
    assert 1.5 < t < 2.0


def test_recovery_never_and_undefined():
    speed = np.concatenate([np.full(300, 2.0), np.full(300, 1.0)])
    assert recovery_time(speed, DT, 300) is None  # stuck at 50 %
    backwards = np.concatenate([np.full(300, -1.0), np.full(300, 1.0)])
    assert math.isnan(recovery_time(backwards, DT, 300))  # nothing to recover to
    immediate = np.full(600, 2.0)
    # No drop at all: recovered as soon as the window holds only post-switch speeds.
    assert recovery_time(immediate, DT, 300) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="switch_step"):
        recovery_time(immediate, DT, 600)


def test_collection_evaluation_and_policy_evaluation_run_one_episode_loop():
    """The same controller, seed and scenario give the same episode, step for step, whether
    collected as data, evaluated as a method or evaluated as a policy."""
    from adaptive_control.evaluation.episodes import (
        MethodSpec,
        RandomMethod,
        method_episode,
        scenarios_for,
    )
    from policies.evaluate import evaluate_policy
    from sims.collect import collect_closed_loop
    from sims.registry import get_family

    family, seed, steps = get_family("cheetah-cripple"), 3, 120
    robot = family.robot
    scenario = scenarios_for(family, ["switch"], switch_time_s=0.5)[0]
    spec = MethodSpec("random", RandomMethod())
    ep = method_episode(spec, family.name, scenario, seed, steps, record_qpos=True)

    def controller():
        return RandomMethod()(family, seed, {}).controller

    ds = collect_closed_loop(robot, [scenario.schedule], controller(), steps,
                             np.random.default_rng(seed), progress=False)
    assert ep.steps == steps and ds.obs.shape == (1, steps + 1, robot.obs_dim)
    assert scenario.schedule.segments[0][1].obs_noise_std == 0  # observations are the state
    qpos = np.asarray(ep.qpos)[:, robot.obs_qpos_index]
    np.testing.assert_array_equal(ds.obs[0, 1:, :len(robot.obs_qpos_index)],
                                  qpos.astype(np.float32))
    np.testing.assert_array_equal(ds.obs[0, 1:, robot.forward_velocity_index],
                                  np.float32(ep.speed))
    assert ds.stats["switch_steps"] == [[0, ep.switch_step]]
    assert ep.segment == [int(t >= ep.switch_step) for t in range(steps)]

    res = evaluate_policy(controller(), family, episodes=1, steps=steps, seed=seed,
                          conditions=[scenario.schedule.segments[-1][1]])
    fixed = method_episode(spec, family.name, scenarios_for(family, ["fixed"])[0], seed, steps)
    assert res.episodes[0].steps == fixed.steps == steps
    assert res.episodes[0].ret == pytest.approx(fixed.ret, rel=1e-12, abs=1e-12)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(preset="tiny", overrides=["iterations=1"])
    g = training.train(cfg, root / "grbal", progress=False)
    m = training.train(load_config(preset="tiny", overrides=["iterations=1", "learner='mb'"]),
                       root / "mb", progress=False)
    q = training.train(load_config(preset="tiny", overrides=[
        "iterations=1", "family='quadruped-leg-failure'"]), root / "quad", progress=False)
    return {"grbal": g.parent, "mb": m.parent, "quad": q.parent}


def test_adapt_eval_end_to_end(tiny_runs, tmp_path):
    out = tmp_path / "report"
    rc = main(["eval", "--family", "cheetah-cripple", "--method", f"grbal={tiny_runs['grbal']}",
               "--method", f"mbde=mbde:{tiny_runs['mb']}", "--method", "random",
               "--seeds", "2", "--duration", "3", "--switch-at", "1.5",
               "--workers", "1", "--video", "--out", str(out)])
    assert rc == 0
    for f in ("results.json", "episodes.csv", "summary.md", "return_by_method.png",
              "speed_over_time.png", "pred_error_over_time.png"):
        assert (out / f).stat().st_size > 0, f
    assert list(out.glob("video_*.mp4"))
    res = json.loads((out / "results.json").read_text())
    eps = res["episodes"]
    assert len(eps) == 3 * 2 * 2  # methods x scenarios x seeds
    assert {e["method"] for e in eps} == {"grbal", "mbde", "random"}
    assert {e["scenario"] for e in eps} == {"fixed:disabled(bthigh)",
                                            "switch@1.5s:disabled(bthigh)"}
    for e in eps:
        assert e["steps"] == 60 and np.isfinite(e["ret"]) and np.isfinite(e["distance"])
        if e["method"] == "random":
            assert math.isnan(e["pred_error_k"]) if e["pred_error_k"] is not None else True
        else:
            assert e["pred_error_k"] > 0 and e["latency_ms_p50"] > 0
        if e["scenario"].startswith("switch"):
            assert e["switch_step"] == 30  # 1.5 s of 50 ms decisions
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert len(rows) == 12
    md = (out / "summary.md").read_text()
    assert "| switch@1.5s:disabled(bthigh) | grbal |" in md
    # the same seed gives the same episode
    again = tmp_path / "again"
    main(["eval", "--family", "cheetah-cripple", "--method", f"grbal={tiny_runs['grbal']}",
          "--seeds", "1", "--duration", "3", "--scenarios", "fixed", "--workers", "1",
          "--out", str(again)])
    first = [e for e in eps if e["method"] == "grbal" and e["seed"] == 0
             and e["scenario"].startswith("fixed")][0]
    second = json.loads((again / "results.json").read_text())["episodes"][0]
    assert first["ret"] == pytest.approx(second["ret"])


def test_planner_sizes_replace_the_checkpoints_planner_fields(tiny_runs):
    """--candidates/--horizon: dataclasses.replace on each checkpoint's planner config."""
    import dataclasses

    from adaptive_control.evaluation.episodes import LearnerMethod, PlannerSizes
    from adaptive_control.runs import checkpoint_path
    from sims.registry import get_family

    family = get_family("cheetah-cripple@5")  # what the tiny preset plans in
    method = LearnerMethod(str(checkpoint_path(tiny_runs["grbal"])))
    own = method(family, 0, PlannerSizes()).controller.planner.config
    sized = method(family, 0, PlannerSizes(num_candidates=8, horizon=2)).controller.planner
    assert sized.config == dataclasses.replace(own, num_candidates=8, horizon=2)
    with pytest.raises(ValueError, match="horizon=0"):
        PlannerSizes(horizon=0)


@pytest.mark.parametrize("argv,fragment", [
    (["--method", "maml"], "method 'maml'"),
    (["--method", "grbal=/nope"], "not found"),
    (["--family", "cheetah-moon"], "family='cheetah-moon'"),
    (["--scenarios", "earthquake"], "scenario='earthquake'"),
    (["--switch-at", "50"], "--switch-at=50"),
    (["--method", "QUAD"], "trained for robot 'quadruped@2', not 'cheetah@5'"),
    (["--method", "mbde=mbde:GRBAL"], "MB+DE needs an MB checkpoint"),
    (["--method", "de=policy:/nope"], "the variants are mbde:RUN, oracle:RUN"),
    (["--method", "floor=random"], "the random floor is `--method random`"),
    (["--method", "=GRBAL"], "allowed 'random', LABEL=RUN"),
    (["--candidates", "0", "--scenarios", "fixed"], "num_candidates=0"),
])
def test_adapt_eval_bad_input_before_work(tiny_runs, tmp_path, capsys, argv, fragment):
    argv = [a.replace("QUAD", f"quad={tiny_runs['quad']}").replace("GRBAL",
                                                                   str(tiny_runs["grbal"]))
            for a in argv]
    base = {"--family": "cheetah-cripple", "--method": f"grbal={tiny_runs['grbal']}"}
    args = ["eval"] + argv
    for k, v in base.items():
        if k not in argv:
            args += [k, v]
    out = tmp_path / "o"
    rc = main(args + ["--duration", "3", "--out", str(out)])
    assert rc == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------ methods by checkpoint
def _eval(runs, tmp_path, *methods, family="cheetah-cripple", extra=(), out="o"):
    """`adapt eval` of ``methods`` (RUN names a key of ``runs``) on one short fixed episode
    into ``tmp_path / out``; (exit status, results.json or None)."""
    out = tmp_path / out
    argv = ["eval", "--family", family, "--seeds", "1", "--duration", "1.5",
            "--scenarios", "fixed", "--workers", "1", "--out", str(out), *extra]
    for m in methods:
        label, _, source = m.partition("=")
        variant, _, key = source.rpartition(":")
        argv += ["--method", f"{label}={variant + ':' if variant else ''}{runs[key]}"
                 if key in runs else m]
    rc = main(argv)
    res = json.loads((out / "results.json").read_text()) if rc == 0 else None
    return rc, res


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from policies.config import load_policy_config
    from policies.training import train_policy

    cfg = load_policy_config(preset="tiny", overrides=["method='rl2'", "iterations=1"])
    return train_policy(cfg, tmp_path_factory.mktemp("policy") / "rl2", progress=False).parent


def test_the_label_is_only_a_label(tiny_runs, tmp_path):
    """The same run under two labels: the same episodes, and the learner its config names."""
    rc, res = _eval(tiny_runs, tmp_path, "first=grbal", "second=grbal")
    assert rc == 0
    a, b = ({k: v for k, v in e.items() if not k.startswith("latency")}
            for e in res["episodes"])
    assert a.pop("method") == "first" and b.pop("method") == "second"
    assert a == b
    learners = {m["name"]: (m["kind"], m["learner"]) for m in res["meta"]["methods"]}
    assert learners == {"first": ("learner", "grbal"), "second": ("learner", "grbal")}


def test_a_learners_run_is_that_learner_and_a_label_naming_another_is_refused(
        tiny_runs, tmp_path, capsys):
    rc, res = _eval(tiny_runs, tmp_path, "baseline=mb")
    assert rc == 0
    assert [(m["name"], m["learner"]) for m in res["meta"]["methods"]] == [("baseline", "mb")]
    for method, fix in (("grbal=mb", "e.g. mb="),  # was: MB reported as GrBAL
                        ("mbde=mb", "e.g. mbde=mbde:"),  # was: MB+DE chosen by the spelling
                        ("oracle-cem=grbal", "e.g. oracle-cem=oracle:"),
                        ("policy=grbal", "e.g. grbal=")):
        rc, _ = _eval(tiny_runs, tmp_path, method, out="refused")
        err = capsys.readouterr().err
        assert rc == 2 and fix in err, err
        assert "labels whose leading letters are a method's name" in err
        assert not (tmp_path / "refused").exists()


def test_mbde_is_an_explicit_variant_of_an_mb_run(tiny_runs, tmp_path):
    from adapt_cli.evaluate import parse_method
    from adaptive_control.evaluation.episodes import PlannerSizes
    from adaptive_control.learners.mb import MBDE
    from sims.registry import get_family

    family = get_family("cheetah-cripple@5")
    de = parse_method(f"de=mbde:{tiny_runs['mb']}", family)
    plain = parse_method(f"plain={tiny_runs['mb']}", family)
    assert isinstance(de.factory(family, 0, PlannerSizes()).model, MBDE)
    assert not isinstance(plain.factory(family, 0, PlannerSizes()).model, MBDE)
    rc, res = _eval(tiny_runs, tmp_path, "de=mbde:mb", "mb=mb")
    assert rc == 0
    assert {m["name"]: m["learner"] for m in res["meta"]["methods"]} == {"de": "mbde",
                                                                         "mb": "mb"}
    err = {e["method"]: e["pred_error_k"] for e in res["episodes"]}
    assert err["de"] != err["mb"]  # the online update changes the model it predicts with


def test_a_run_of_another_family_needs_the_flag(tiny_runs, tmp_path, capsys):
    rc, _ = _eval(tiny_runs, tmp_path, "grbal=grbal", family="cheetah-payload")
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "o").exists()
    assert ("trained on family 'cheetah-cripple@5', not the evaluated --family "
            "'cheetah-payload@5'") in err and "--allow-family-mismatch" in err
    rc, res = _eval(tiny_runs, tmp_path, "grbal=grbal", "oracle=oracle:grbal",
                    family="cheetah-payload", extra=["--allow-family-mismatch"])
    assert rc == 0 and res["meta"]["family"] == "cheetah-payload@5"
    assert {e["method"] for e in res["episodes"]} == {"grbal", "oracle"}
    # Another robot stays refused: its observations have another size.
    rc, _ = _eval(tiny_runs, tmp_path, "quad=quad", extra=["--allow-family-mismatch"])
    assert rc == 2 and "trained for robot 'quadruped@2'" in capsys.readouterr().err


def test_a_policy_run_is_told_by_its_contents(tiny_runs, tiny_policy, tmp_path, capsys):
    runs = {**tiny_runs, "policy": tiny_policy}
    # a policy acts at every control step of the family it was trained on
    rc, res = _eval(runs, tmp_path, "gru=policy", extra=["--decision-steps", "1"])
    assert rc == 0 and res["meta"]["methods"][0]["kind"] == "policy"
    assert res["episodes"][0]["steps"] == 150  # 1.5 s of 10 ms steps
    for method, fragment in (("grbal=policy", "the label 'grbal' names 'grbal' but the method "
                                              "is 'policy'"),
                             ("x=mbde:policy", "mbde:RUN needs an `adapt train` run"),
                             ("x=oracle:policy", "oracle:RUN needs an `adapt train` run")):
        rc, _ = _eval(runs, tmp_path, method, extra=["--decision-steps", "1"])
        assert rc == 2 and fragment in capsys.readouterr().err


def test_existing_output_folder_needs_overwrite(tiny_runs, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc = main(["eval", "--family", "cheetah-cripple", "--method", "random", "--seeds", "1",
               "--duration", "1", "--scenarios", "fixed", "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    rc = main(["eval", "--family", "cheetah-cripple", "--method", "random", "--seeds", "1",
               "--duration", "1", "--scenarios", "fixed", "--workers", "1",
               "--out", str(out), "--overwrite"])
    assert rc == 0 and not (out / "keep.txt").exists()


def test_quickstart_smoke(tmp_path, capsys):
    """The README's main job, end to end on the tiny preset: train, compare, report, export."""
    out = tmp_path / "qs"
    rc = main(["quickstart", "--preset", "tiny", "--out", str(out), "--seeds", "1",
               "--duration", "3.2", "--workers", "1"])
    assert rc == 0
    for f in ("summary.md", "results.json", "return_by_method.png", "speed_over_time.png",
              "export/controller.onnx", "export/returns.json"):
        assert (out / f).exists(), f
    assert list(out.glob("video_*.mp4"))
    md = (out / "summary.md").read_text()
    assert "| switch@3s:disabled(bthigh) | grbal |" in md and "10-step adapted" in md
    assert "adapt quickstart: done" in capsys.readouterr().out
