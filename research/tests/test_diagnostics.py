"""Tests of the research diagnostics in research/ (run explicitly: ``pytest research/tests``).

Each loads its script from research/ and calls its functions or ``main()`` on tiny runs.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from policies import training
from policies.config import load_policy_config
from sims.registry import get_family

RESEARCH = Path(__file__).resolve().parents[1]
FAMILY = get_family("cheetah-cripple")
ROBOT = FAMILY.robot


def tiny_cfg(**over) -> training.PolicyTrainConfig:
    return load_policy_config(preset="tiny", overrides=[
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in over.items()])


class ScriptedTeacher:
    """A fixed linear feedback law that records what it was shown (and an ``_act`` history,
    like ``AdaptiveController``)."""

    def __init__(self, seed: int = 1):
        self.w = np.random.default_rng(seed).normal(size=(ROBOT.act_dim, ROBOT.obs_dim))
        self.seen: list[np.ndarray] = []
        self.resets = 0
        self._act: deque = deque(maxlen=4)

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(obs))
        a = np.tanh(self.w @ obs)
        self._act.append(a.astype(np.float32))
        return a

    def observe_action(self, action: np.ndarray) -> None:  # as AdaptiveController's
        self._act[-1] = np.asarray(action, dtype=np.float32)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    from adaptive_control.training.config import load_config
    from adaptive_control.training.loop import train

    out = tmp_path_factory.mktemp("teacher")
    # the students act every control step: so does their teacher
    cfg = load_config(preset="tiny", overrides=["iterations=1", "threads=1", "decision_steps=1"])
    return str(train(cfg, out, progress=False))


def _example(name: str):
    import importlib.util

    path = RESEARCH / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oracle_diagnostic_distils_on_the_held_out_set_and_says_so(tmp_path, teacher_ckpt,
                                                                   monkeypatch):
    """research/distill_oracle.py (a diagnostic that breaks the split on purpose) trains on the
    held-out conditions only, in its own process, and marks its run folder."""
    import sys

    from sims import registry

    oracle = _example("distill_oracle")
    monkeypatch.setitem(registry.FAMILIES, FAMILY.name, FAMILY)  # restored after the test
    monkeypatch.setattr(sys, "argv", ["distill_oracle.py", "tiny", "--set", "iterations=1",
                                      "--set", f"distill.teacher={teacher_ckpt!r}",
                                      "--out", str(tmp_path / "oracle")])
    oracle.main()
    swapped = registry.FAMILIES[FAMILY.name]
    rng = np.random.default_rng(0)
    assert all(swapped.sample(rng) == FAMILY.test_conditions[0] for _ in range(20))
    assert (tmp_path / "oracle" / "checkpoint.pt").exists()
    assert "not held-out results" in (tmp_path / "oracle" / "ORACLE").read_text()


def test_pooled_refit_keeps_the_best_trials_of_all_runs_and_writes_a_policy_run(
        tmp_path, teacher_ckpt, monkeypatch):
    """research/distill_pooled.py refits a fresh student on the rounds of several runs (the
    best --keep fraction by return) into a run folder that loads like any policy run."""
    import sys

    pooled = _example("distill_pooled")
    for seed in (0, 1):
        training.train_policy(tiny_cfg(**{"distill.teacher": teacher_ckpt, "seed": seed,
                                          "iterations": 1}), tmp_path / f"s{seed}",
                              progress=False)
    data, returns = pooled.load_rounds(sorted(str(p) for p in tmp_path.glob("s*/data/*.npz")))
    out = tmp_path / "pooled"
    monkeypatch.setattr(sys, "argv", [
        "distill_pooled.py", str(tmp_path / "s*"), "--config", str(tmp_path / "s0/config.json"),
        "--set", "distill.epochs=2", "--keep", "0.5",
        "--val", f"own={tmp_path / 's1/data/round_000.npz'}", "--out", str(out)])
    pooled.main()
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    policy, _ = training.policy_from_checkpoint(raw)
    source = json.loads((out / "POOLED").read_text())
    assert len(source["runs"]) == 2 and source["trials"] == len(returns) // 2
    metrics = json.loads(raw["metrics"])
    assert len(metrics) == 2 and metrics[-1]["val_own"] > 0
    # The normaliser saw exactly the kept trials: the best half by return.
    best = np.sort(np.argsort(-returns, kind="stable")[:len(returns) // 2])
    kept_obs = torch.as_tensor(data["obs"][:, best]).reshape(-1, ROBOT.obs_dim)
    assert float(policy.obs_norm.count) == kept_obs.shape[0]
    torch.testing.assert_close(policy.obs_norm.mean, kept_obs.double().mean(0).float(),
                               rtol=1e-4, atol=1e-4)


def test_pooled_refit_refuses_bad_input_before_any_work(tmp_path, teacher_ckpt, monkeypatch):
    import shutil
    import sys

    pooled = _example("distill_pooled")
    training.train_policy(tiny_cfg(**{"distill.teacher": teacher_ckpt, "iterations": 1}),
                          tmp_path / "s0", progress=False)
    base = ["distill_pooled.py", str(tmp_path / "s0"), "--config", "tiny",
            "--out", str(tmp_path / "out")]
    for extra, message in ((["--keep", "0"], "--keep=0.0"),
                           (["--val", "nameless"], "--val='nameless'")):
        monkeypatch.setattr(sys, "argv", base + extra)
        with pytest.raises(SystemExit, match=message):
            pooled.main()
    monkeypatch.setattr(sys, "argv", base[:1] + [str(tmp_path / "none*")] + base[2:])
    with pytest.raises(SystemExit, match="no run folder"):
        pooled.main()
    monkeypatch.setattr(sys, "argv", base + ["--set", "family='quadruped-leg-failure'"])
    with pytest.raises(SystemExit, match="family='quadruped-leg-failure'; the runs are"):
        pooled.main()
    # A second run labelled by another teacher: rounds of different teachers do not pool.
    shutil.copytree(tmp_path / "s0", tmp_path / "s1")
    other = json.loads((tmp_path / "s1" / "config.json").read_text())
    other["distill"]["teacher"] = "another/checkpoint.pt"
    (tmp_path / "s1" / "config.json").write_text(json.dumps(other))
    monkeypatch.setattr(sys, "argv", base[:1] + [str(tmp_path / "s*")] + base[2:])
    with pytest.raises(SystemExit, match="must share family and teacher"):
        pooled.main()
    assert not (tmp_path / "out").exists()


def test_mean_of_draws_acts_and_adapts_on_the_mean_of_the_teachers_draws(teacher_ckpt):
    """research/label_noise.py --mean-of K: the teacher a perfect mean-regressing student is."""
    import copy

    from policies.evaluate import teacher_controller
    from sims.env import AdaptEnv

    label_noise = _example("label_noise")
    ctrl = teacher_controller(teacher_ckpt)
    acting = label_noise.MeanOfDraws(ctrl, 3, seed=5)
    env = AdaptEnv(ROBOT, FAMILY.test_conditions[0], episode_steps=5, seed=0)
    ts = env.reset()
    acting.reset()
    for _ in range(3):
        draws = []
        for c, base in enumerate(copy.deepcopy(ctrl) for _ in range(3)):
            if c < 2:  # the copies continue the wrapper's generators; the last is the teacher
                base.generator = copy.deepcopy(acting.generators[c])
            draws.append(base(ts.observation))
        action = acting(ts.observation)
        np.testing.assert_allclose(action, np.mean(draws, axis=0), atol=1e-6)
        assert np.ptp(np.stack(draws), axis=0).max() > 0  # the draws differ
        np.testing.assert_allclose(ctrl._last_act, action, atol=1e-6)  # it adapts on the mean
        ts = env.step(action)


def test_imitation_gap_splits_label_noise_from_the_distance_to_the_teachers_mean():
    """research/imitation_gap.py: a deterministic teacher has no label variance and a student
    that is the teacher no distance; a noisy teacher's spread shows up as label variance."""
    gap = _example("imitation_gap")
    cond = [FAMILY.test_conditions[0]]
    exact = gap.imitation_gap(ScriptedTeacher(), ScriptedTeacher(), FAMILY, cond, 1, 12, 3, 3, 0)
    assert exact["probes"] == 3  # steps 3, 6, 9
    assert exact["label_variance"] < 1e-12 and exact["distance_to_mean"] < 1e-12

    class NoisyTeacher(ScriptedTeacher):
        generator = None

        def __call__(self, obs):
            noise = torch.randn(ROBOT.act_dim, generator=self.generator).numpy() * 0.1
            return super().__call__(obs) * 0.5 + noise  # inside the bounds: no clipping

    teacher, student = NoisyTeacher(), ScriptedTeacher()
    student_acts = []

    def acting(obs):
        student_acts.append(student(obs) * 0.5)  # the teacher's mean law
        return student_acts[-1]

    acting.reset = student.reset
    noisy = gap.imitation_gap(acting, teacher, FAMILY, cond, 1, 41, 2, 8, 0)
    assert noisy["probes"] == 20
    assert 0.005 < noisy["label_variance"] < 0.013  # 0.1**2 * 7/8 expected
    assert noisy["distance_to_mean"] < noisy["label_variance"] / 3  # the mean of 8 draws
    np.testing.assert_allclose(teacher._act[-1], student_acts[-1], atol=1e-6)  # it saw them


def test_imitation_gap_refuses_a_spread_of_one_draw(monkeypatch):
    import sys

    gap = _example("imitation_gap")
    monkeypatch.setattr(sys, "argv", ["imitation_gap.py", "no-such-run", "--draws", "1"])
    with pytest.raises(SystemExit, match="--draws=1"):
        gap.main()


def test_imitation_gap_plot_writes_a_png_per_kind_of_student(tmp_path):
    plot = _example("plot_imitation_gap")
    assert plot.kind("runs/sweep/quad10-cem/gru-s3") == "quad10-cem/gru"
    rows = [{"run": f"runs/x/{a}-s{s}", "split": split, "label_variance": 0.08,
             "distance_to_mean": 0.1 + s / 100} for a in ("gru", "mlp") for s in (0, 1)
            for split in ("test", "train")]
    (tmp_path / "gap.json").write_text(json.dumps(rows))
    plot.main(str(tmp_path / "gap.png"), [str(tmp_path / "gap.json")])
    assert (tmp_path / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_scaling_scores_each_size_on_the_same_held_out_rollouts(tmp_path, monkeypatch):
    mod = _example("model_data_scaling")
    out = tmp_path / "scaling.json"
    monkeypatch.setattr("sys.argv", ["model_data_scaling.py", "--family", "cheetah-cripple@5",
                                     "--rollouts", "6,2", "--test-rollouts", "2",
                                     "--seconds", "2", "--out", str(out)])
    mod.main()
    res = json.loads(out.read_text())
    sizes = res["sizes"]
    assert [r["rollouts"] for r in sizes] == [2, 6]  # sorted, the smaller a prefix of the larger
    assert sizes[0]["transitions"] < sizes[1]["transitions"]
    assert res["test_transitions"] == 2 * 40  # 2 rollouts x 2 s at 50 ms, no falls in 2 s
    for r in sizes:
        parts = {p.name for p in get_family("cheetah-cripple@5").robot.obs_parts}
        assert set(r["by_part"]) == parts
        assert all(np.isfinite(v) and v >= 0 for v in r["by_part"].values())


def test_adaptation_steps_scores_each_step_count_and_writes_a_run_that_adapts_with_more(
        tmp_path, teacher_ckpt, monkeypatch):
    import sys

    from adaptive_control.builders import learner_from_checkpoint
    from adaptive_control.checkpoint import load_checkpoint

    steps = _example("adaptation_steps")
    out = tmp_path / "steps.json"
    monkeypatch.setattr(sys, "argv", [
        "adaptation_steps.py", teacher_ckpt, "--max-steps", "2", "--trajectories", "1",
        "--steps", "60", "--write-steps", "2", "--write-to", str(tmp_path / "runs"),
        "--out", str(out)])
    steps.main()
    row = json.loads(out.read_text())["runs"][0]
    for split in ("test", "train"):
        losses = [row[split][s]["future_loss_mean"] for s in ("0", "1", "2")]
        assert all(np.isfinite(losses)) and len(set(losses)) == 3  # each count adapts anew
        assert row[split]["0"]["action_gains"] == row["theta_gains"]
        assert row[split]["1"]["action_gains"] != row["theta_gains"]
    written = tmp_path / "runs" / Path(teacher_ckpt).resolve().parent.name / "checkpoint.pt"
    learner, cfg = learner_from_checkpoint(load_checkpoint(written))
    original, _ = learner_from_checkpoint(load_checkpoint(teacher_ckpt))
    assert cfg.grbal.inner_steps == 2 and original.config.inner_steps == 1
    for a, b in zip(learner.parameters(), original.parameters(), strict=True):
        assert torch.equal(a, b)  # the run's weights, only the step count changed
    monkeypatch.setattr(sys, "argv", ["adaptation_steps.py", teacher_ckpt, "--max-steps", "0",
                                      "--out", str(out)])
    with pytest.raises(SystemExit):
        steps.main()


def test_seed_summary_refuses_a_report_named_for_two_seeds_before_reading_any(
        tmp_path, monkeypatch, capsys):
    import sys

    summary = _example("seed_summary")
    a0, a1, b0, b1 = (str(tmp_path / n) for n in ("a0", "a1", "b0", "b1"))  # never read
    # what a shell's {a0,a1},{b0,b1}-style expansion gives: every a paired with every b
    monkeypatch.setattr(sys, "argv", ["seed_summary.py", f"{a0},{b0}", f"{a0},{b1}",
                                      f"{a1},{b0}", f"{a1},{b1}", "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit):
        summary.main()
    assert "named for more than one training seed" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _report(folder, family: str, robot: str, speeds: dict[str, float]) -> str:
    """A minimal `adapt eval` report: one healthy episode per method at the given speed."""
    import json

    eps = [{"method": m, "scenario": "healthy", "seed": 0, "ret": 100 * v, "mean_speed": v,
            "flipped": 0.0, "tilted": 0.0, "recovery_s": None, "switch_step": None}
           for m, v in speeds.items()]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(
        {"meta": {"family": family, "robot": robot}, "episodes": eps, "traces": []}))
    return str(folder)


def test_seed_summary_appends_a_family_and_replaces_only_its_own_rows(tmp_path, monkeypatch):
    import json
    import sys

    summary = _example("seed_summary")
    out = tmp_path / "summary.json"

    def run(family: str, robot: str, offset: float) -> None:
        reports = [_report(tmp_path / f"{family}-{offset}-{s}", family, robot,
                           {"grbal": 2.0 + s + offset, "mb": 1.0 + offset}) for s in range(2)]
        monkeypatch.setattr(sys, "argv", ["seed_summary.py", *reports, "--pair", "grbal-mb",
                                          "--out", str(out), "--append"])
        summary.main()

    run("cheetah-cripple@5", "cheetah@5", 0.0)
    run("quadruped-leg-failure@2", "quadruped@2", 0.0)
    run("cheetah-cripple@5", "cheetah@5", 10.0)  # a rerun of one family replaces its rows
    d = json.loads(out.read_text())
    speed = {(r["family"], r["method"]): r["speed"]["mean"] for r in d["rows"]}
    assert speed == {("quadruped-leg-failure@2", "grbal"): 2.5,
                     ("quadruped-leg-failure@2", "mb"): 1.0,
                     ("cheetah-cripple@5", "grbal"): 12.5, ("cheetah-cripple@5", "mb"): 11.0}
    paired = {(p["family"], p["metric"]): p["mean"] for p in d["paired"]}
    assert paired[("cheetah-cripple@5", "speed")] == pytest.approx(1.5)
    assert paired[("quadruped-leg-failure@2", "speed")] == pytest.approx(1.5)
    assert len(d["paired"]) == 4  # speed and return per family: no stale cheetah rows left


def test_lever_pairs_pairs_each_seed_with_its_own_base(tmp_path, monkeypatch):
    import json
    import sys

    pairs = _example("lever_pairs")
    base = [_report(tmp_path / f"b{s}", "f", "cheetah@5", {"grbal": 1.0 + s}) for s in range(3)]
    lever = [_report(tmp_path / f"l{s}", "f", "cheetah@5", {"grbal": 1.5 + s}) for s in range(3)]
    out = tmp_path / "pairs.json"
    monkeypatch.setattr(sys, "argv", ["lever_pairs.py", "--method", "grbal", "--base", *base,
                                      "--lever", *lever, "--out", str(out)])
    pairs.main()
    row = json.loads(out.read_text())["scenarios"]["healthy"]
    # the seeds spread the speeds by 2 m/s, the pairing removes that: +0.5 with no spread
    assert row["speed_diff"]["mean"] == pytest.approx(0.5)
    assert row["speed_diff"]["ci95"] == pytest.approx(0.0, abs=1e-9)
    assert row["lever"]["mean_speed"]["ci95"] > 1.0
