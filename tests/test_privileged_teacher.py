"""The privileged teacher (the planner on the true simulator) and the DAgger machinery around
it: decisions held between the teacher's planning steps, mid-episode failures in training
trials, a shared round 0, rounds split between worker processes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adaptive_control.evaluation.oracle import OracleController
from adaptive_control.planning import make_planner
from policies import training
from policies.config import PolicyNetConfig, TrialConfig, load_policy_config
from policies.networks import Policy
from policies.rollout import draw_slot_seeds, run_trials, training_conditions
from policies.teachers import HeldDecisions, make_teachers, oracle_planner_config
from sims.conditions import HEALTHY, Condition, DisabledActuator, Schedule
from sims.env import AdaptEnv
from sims.registry import get_family
from sims.rewards import task_reward

FAMILY = get_family("cheetah-cripple")
ROBOT = FAMILY.robot
#: A planner small enough for tests: the privileged teacher's machinery, not its quality.
SMALL_PLANNER = ["distill.teacher_planner.name='mppi'", "distill.teacher_planner.num_candidates=8",
                 "distill.teacher_planner.horizon=3"]


def oracle_cfg(*over: str) -> training.PolicyTrainConfig:
    return load_policy_config(preset="tiny", overrides=["distill.teacher='oracle'",
                                                         *SMALL_PLANNER, *over])


def tiny_policy(arch: str = "gru") -> Policy:
    torch.manual_seed(0)
    lo, hi = ROBOT.action_bounds
    return Policy(ROBOT.obs_dim, ROBOT.act_dim, lo, hi,
                  PolicyNetConfig(arch=arch, hidden_size=8, mlp_sizes=(16,)))


class Counter:
    """A teacher that answers its call count and records the actions it is told of."""

    def __init__(self) -> None:
        self.calls = 0
        self.observed: list[float] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def observe_action(self, a: np.ndarray) -> None:
        self.observed.append(float(a[0]))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.full(2, float(self.calls))


def test_held_decisions_decide_every_k_calls_and_adapt_on_their_own_transitions():
    inner = Counter()
    held = HeldDecisions(inner, 3)
    got = []
    for t in range(7):
        got.append(held(np.zeros(1))[0])
        held.observe_action(np.array([10.0 + t]))
    assert got == [1, 1, 1, 2, 2, 2, 3]
    assert inner.observed == [10.0, 13.0, 16.0]  # the executed action at each decision
    held.reset()  # a new episode decides at once
    assert held(np.zeros(1))[0] == 4 and inner.resets == 1


def test_the_oracle_teacher_decides_as_the_oracle_of_the_frame_skipped_family(rng):
    """Labelling every 10 ms with decisions held 5 steps is the oracle of cheetah-cripple@5:
    the same actions from the same states, the condition's true simulator included."""
    cfg = oracle_cfg()
    (teacher,) = make_teachers(FAMILY, cfg.distill, [7])
    assert teacher.k == ROBOT.decision_steps == 5
    condition = Condition((DisabledActuator("bthigh"),))
    trial = TrialConfig(episodes_per_trial=1, episode_steps=30, trials_per_iter=1)
    b = run_trials(tiny_policy(), ROBOT, [[condition]], trial, np.random.default_rng(3),
                   teachers=[teacher], beta=1.0)
    np.testing.assert_array_equal(b.act, b.teacher_act)  # beta = 1: the teacher drives
    decisions = b.teacher_act[::5, 0]
    for t in range(30):
        np.testing.assert_array_equal(b.teacher_act[t, 0], decisions[t // 5])
    assert not np.allclose(decisions[0], decisions[1])
    # The oracle of the @5 family, from the same start, decides the same.
    skipped = get_family("cheetah-cripple@5").robot
    lo, hi = (torch.tensor(x, dtype=torch.float32) for x in skipped.action_bounds)
    oracle = OracleController(skipped, make_planner(oracle_planner_config(cfg.distill), lo, hi),
                              task_reward(skipped), 7)
    # slot 0's environment, seeded as run_trials seeds it
    env = AdaptEnv(ROBOT, condition, episode_steps=30,
                   seed=np.random.default_rng(draw_slot_seeds(np.random.default_rng(3), 1)[0]))
    obs = env.reset().observation
    np.testing.assert_allclose(obs, b.obs[0, 0], atol=1e-6)
    oracle.bind_env(env)
    oracle.reset()
    for d in range(6):
        a = oracle(obs)
        np.testing.assert_allclose(a, decisions[d], atol=1e-5)
        for _ in range(5):
            obs = env.step(a).observation


def test_training_trials_fail_mid_episode_in_the_configured_share():
    trial = TrialConfig(episode_steps=500, failure_share=0.5, failure_at_s=(1.0, 4.0))
    conds = training_conditions(FAMILY, trial, np.random.default_rng(0), 400)
    failing = [c[0] for c in conds if isinstance(c[0], Schedule)]
    assert 0.4 < len(failing) / 400 < 0.6
    for s in failing:
        (t0, first), (t1, then) = s.segments
        assert t0 == 0.0 and first == HEALTHY and 1.0 <= t1 <= 4.0
        assert not FAMILY.is_held_out(then)
    assert not any(isinstance(c[0], Schedule)
                   for c in training_conditions(FAMILY, TrialConfig(), np.random.default_rng(0),
                                                50))


def test_a_failure_mid_trial_changes_the_physics_the_teacher_plans_with():
    cfg = oracle_cfg()
    (teacher,) = make_teachers(FAMILY, cfg.distill, [0])
    trial = TrialConfig(episodes_per_trial=1, episode_steps=20, trials_per_iter=1)
    failing = Schedule.switch(HEALTHY, Condition((DisabledActuator("fthigh"),)), 0.1)
    run_trials(tiny_policy(), ROBOT, [[failing]], trial, np.random.default_rng(0),
               teachers=[teacher], beta=1.0)
    physics = teacher.teacher._env.physics  # the environment it was handed, after the switch
    assert physics.model.actuator_gainprm[ROBOT.actuator_names.index("fthigh"), 0] == 0
    assert physics.model.actuator_gainprm[ROBOT.actuator_names.index("bthigh"), 0] != 0


def test_teacher_only_rounds_are_the_same_on_worker_processes(tmp_path):
    over = ["trial.episode_steps=20", "trial.failure_share=0.5", "trial.failure_at_s=[0.05,0.15]",
            "iterations=1"]
    one = training.train_policy(oracle_cfg(*over), tmp_path / "one", progress=False)
    two = training.train_policy(oracle_cfg(*over, "workers=2"), tmp_path / "two",
                                progress=False)
    a, b = (np.load(p.parent / "data" / "round_000.npz") for p in (one, two))
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["teacher_act"].any()


def test_a_shared_round_zero_is_reused_and_checked(tmp_path):
    over = ["trial.episode_steps=10", "iterations=2"]
    gru = training.train_policy(oracle_cfg(*over), tmp_path / "gru", progress=False)
    round0 = gru.parent / "data" / "round_000.npz"
    mlp = training.train_policy(
        oracle_cfg(*over, "net.arch='mlp'", f"distill.round0='{round0}'"), tmp_path / "mlp",
        progress=False)
    assert (mlp.parent / "data" / "round_000.npz").read_bytes() == round0.read_bytes()
    assert (mlp.parent / "data" / "round_001.npz").is_file()
    metrics = json.loads(torch.load(mlp, weights_only=True)["metrics"])
    assert [m["iteration"] for m in metrics] == [0, 1]
    for extra, message in (
            (["distill.round0='/no/such.npz'"], "distill.round0='/no/such.npz': no such file"),
            ([f"distill.round0='{round0}'", "seed=3"],
             "differs from this one in seed: 0 -> 3"),
            ([f"distill.round0='{round0}'", "trial.episode_steps=12"],
             "obs has shape (20, 2, 17), this run's round 0 has (24, 2, 17)")):
        with pytest.raises(ValueError) as e:
            training.train_policy(oracle_cfg(*over, *extra), tmp_path / "refused", progress=False)
        assert message in str(e.value)
        assert not (tmp_path / "refused").exists()
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="distill.round0=.*damaged.npz. is damaged or not a "
                                         "round-0 "
                                         "dataset: expected an .npz archive of the arrays"):
        training.train_policy(oracle_cfg(*over, f"distill.round0='{damaged}'"),
                              tmp_path / "refused", progress=False)


@pytest.mark.parametrize("over, message", [
    (["trial.failure_share=1.5"], "trial.failure_share=1.5 is out of range: allowed [0, 1]"),
    (["trial.failure_share=0.5", "trial.failure_at_s=[0.05,0.5]"],
     "trial.failure_at_s=(0.05, 0.5): allowed 0 < FIRST <= LAST < the episode's 0.12 s"),
    (["distill.teacher='runs/x'", "distill.teacher_decision_steps=5"],
     "only the 'oracle' teacher takes one"),
    (["distill.teacher_decision_steps=-1"], "distill.teacher_decision_steps=-1: allowed an "
                                            "integer >= 0"),
    (["distill.round0='x.npz'", "distill.beta0=0.5"], "allowed with beta0 = 1"),
    (["workers=0"], "workers=0 is out of range: allowed >= 1"),
])
def test_bad_privileged_teacher_settings_are_refused_naming_the_field(over, message):
    with pytest.raises(ValueError) as e:
        oracle_cfg(*over)
    assert message in str(e.value)


def test_a_teacher_trained_at_a_slower_decision_step_holds_its_decisions(tmp_path):
    from adaptive_control.training.config import load_config
    from adaptive_control.training.loop import train

    ckpt = train(load_config(preset="tiny", overrides=["iterations=1", "threads=1",
                                                      "decision_steps=5"]),
                 tmp_path / "teacher5", progress=False)
    distill = oracle_cfg(f"distill.teacher='{ckpt}'").distill
    (held,) = make_teachers(FAMILY, distill, [0])
    assert held.k == 5
    (same_rate,) = make_teachers(get_family("cheetah-cripple@5"), distill, [0])
    assert same_rate.k == 1
    with pytest.raises(ValueError, match="was trained on family 'cheetah-cripple@5'"):
        make_teachers(get_family("cheetah-payload"), distill, [0])


def test_adapt_eval_scores_students_against_the_teacher_they_learnt_from(tmp_path, capsys):
    """`--method LABEL=teacher:RUN` acts as the run's teacher labelled (deciding every 5
    control steps, holding in between) and, being the privileged oracle, is the score's 1."""
    from adapt_cli import main

    run = training.train_policy(oracle_cfg("iterations=1", "trial.episode_steps=10"),
                                tmp_path / "gru", progress=False).parent
    assert main(["eval", "--family", "cheetah-cripple", "--decision-steps", "1",
                 "--scenarios", "healthy", "--seeds", "1", "--duration", "0.3", "--workers", "1",
                 "--method", f"teacher=teacher:{run}", "--method", f"gru={run}",
                 "--method", "random", "--out", str(tmp_path / "eval")]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    rows = {r["method"]: r for r in results["summary"]}
    assert rows["teacher"]["score"] == pytest.approx(1.0)
    assert rows["random"]["score"] == pytest.approx(0.0)
    kinds = {m["name"]: m["kind"] for m in results["meta"]["methods"]}
    assert kinds == {"teacher": "oracle", "gru": "policy", "random": "random"}
    for bad, message in ((f"grbal=teacher:{run}", "the label 'grbal' names 'grbal' but the "
                                                  "method is 'teacher'"),
                         (f"gru=mbde:{run}", "or its teacher as teacher=teacher:")):
        assert main(["eval", "--family", "cheetah-cripple", "--decision-steps", "1",
                     "--method", bad, "--out", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()


def test_a_student_without_previous_inputs_ignores_them_and_keeps_the_step_signature():
    """net.prev_inputs = false: the action depends on the observation (and the memory) only,
    so a held label cannot be predicted by copying the previous action; the step still takes
    the previous action and reward (one interface for every policy, exported or not)."""
    lo, hi = ROBOT.action_bounds
    torch.manual_seed(0)
    p = Policy(ROBOT.obs_dim, ROBOT.act_dim, lo, hi,
               PolicyNetConfig(hidden_size=8, mlp_sizes=(16,), prev_inputs=False))
    obs = torch.randn(3, ROBOT.obs_dim)
    h = torch.randn(3, p.hidden_dim)
    a1, _, h1 = p.step(obs, torch.zeros(3, ROBOT.act_dim), torch.zeros(3, 1), h)
    a2, _, h2 = p.step(obs, torch.rand(3, ROBOT.act_dim), torch.randn(3, 1), h)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(h1, h2)
    with_prev = tiny_policy()
    b1 = with_prev.step(obs, torch.zeros(3, ROBOT.act_dim), torch.zeros(3, 1), h)[0]
    b2 = with_prev.step(obs, torch.rand(3, ROBOT.act_dim), torch.randn(3, 1), h)[0]
    assert not torch.allclose(b1, b2)


def test_teacher_noise_perturbs_what_the_teacher_executes_not_its_labels():
    """distill.teacher_action_std (DART on the supervisor): where the teacher acts, the
    executed action is its label plus noise of that many half-ranges; labels are as clean as
    without noise at the first step, and a student-only rollout is untouched."""
    cfg = oracle_cfg("distill.teacher_action_std=0.3")
    trial = TrialConfig(episodes_per_trial=1, episode_steps=15, trials_per_iter=2)
    conds = [[FAMILY.sample(np.random.default_rng(i), "train")] for i in range(2)]
    lo, hi = ROBOT.action_bounds

    def run(beta: float, std: float):
        teachers = make_teachers(FAMILY, cfg.distill, [0, 1])
        return run_trials(tiny_policy(), ROBOT, conds, trial, np.random.default_rng(5),
                          teachers=teachers, beta=beta, teacher_action_std=std,
                          noise_rng=np.random.default_rng(6))

    noisy, clean = run(1.0, 0.3), run(1.0, 0.0)
    np.testing.assert_array_equal(noisy.teacher_act[0], clean.teacher_act[0])
    np.testing.assert_array_equal(clean.act, clean.teacher_act)
    gap = (noisy.act - noisy.teacher_act) / ((hi - lo) / 2)
    inside = (noisy.act > lo + 1e-9) & (noisy.act < hi - 1e-9)  # not clipped
    assert 0.2 < gap[inside].std() < 0.4
    student_only = [run(0.0, std) for std in (0.3, 0.0)]
    np.testing.assert_array_equal(student_only[0].act, student_only[1].act)
    with pytest.raises(ValueError, match="distill.teacher_action_std=-0.1"):
        oracle_cfg("distill.teacher_action_std=-0.1")
