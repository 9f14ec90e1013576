"""policies: recurrent policies, trial rollouts, DAgger, PPO's GAE, checkpoints, ONNX export."""

from __future__ import annotations

import json
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from adapt_cli import main
from policies import training
from policies.config import PolicyNetConfig, TrialConfig, load_policy_config
from policies.evaluate import evaluate_policy, policy_controller
from policies.networks import Policy, RunningNorm
from policies.rollout import draw_slot_seeds, run_trials
from policies.teachers import make_teachers
from sims.conditions import Condition, DisabledActuator
from sims.registry import get_family

FAMILY = get_family("cheetah-cripple")
ROBOT = FAMILY.robot


def tiny_policy(arch: str = "gru", seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    lo, hi = ROBOT.action_bounds
    p = Policy(ROBOT.obs_dim, ROBOT.act_dim, lo, hi,
               PolicyNetConfig(arch=arch, hidden_size=8, mlp_sizes=(16,)))
    # Larger output weights than the near-zero init, so actions (and hidden states) vary.
    torch.nn.init.normal_(p.mean_head.weight, std=0.5)
    return p


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


# ------------------------------------------------------------------ networks
def test_running_norm_matches_batch_statistics():
    x = torch.randn(1000, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 2.0
    rn = RunningNorm(3)
    for chunk in x.split(137):
        rn.update(chunk)
    assert torch.allclose(rn.mean.double(), x.mean(0), atol=1e-5)
    assert torch.allclose(rn.var.double(), x.var(0, unbiased=False), rtol=1e-4)
    assert "mean" in dict(rn.named_buffers()) and not list(rn.parameters())


@pytest.mark.parametrize("arch", ["gru", "lstm", "mlp"])
def test_policy_shapes_bounds_and_unroll_resets(arch):
    p = tiny_policy(arch)
    t, b = 7, 3
    obs = torch.randn(t, b, ROBOT.obs_dim) * 10
    pa, pr = torch.randn(t, b, ROBOT.act_dim), torch.randn(t, b, 1)
    resets = torch.zeros(t, b, dtype=torch.bool)
    resets[0] = True
    resets[4, 1] = True
    mean, value, h = p.unroll(obs, pa, pr, resets, p.initial_hidden(b))
    assert mean.shape == (t, b, ROBOT.act_dim) and value.shape == (t, b)
    assert h.shape == (b, p.hidden_dim)
    assert bool((mean <= p.act_high).all() and (mean >= p.act_low).all())
    # A reset at step 4 makes slot 1 forget its past: same as starting fresh at step 4.
    fresh = torch.zeros(t - 4, 1, dtype=torch.bool)
    fresh[0] = True
    m2, _, _ = p.unroll(obs[4:, 1:2], pa[4:, 1:2], pr[4:, 1:2], fresh, torch.ones(1, p.hidden_dim))
    torch.testing.assert_close(mean[4:, 1:2], m2)


# ------------------------------------------------------------------ trials and hidden state
def test_hidden_carried_across_steps_and_episodes_reset_on_new_condition(rng):
    p = tiny_policy("gru")
    trial = TrialConfig(episodes_per_trial=2, episode_steps=5, trials_per_iter=2)
    conds = [[Condition((DisabledActuator("bshin"),)), Condition((DisabledActuator("ffoot"),))],
             [Condition((DisabledActuator("fthigh"),)), Condition((DisabledActuator("bfoot"),))]]
    b = run_trials(p, ROBOT, conds, trial, rng, record_hidden=True)
    t_trial = 10
    assert b.obs.shape[:2] == (2 * t_trial, 2)
    h = b.hidden_in
    # Trial starts (t = 0 and t = 10, where the condition changes): zero state, reset flagged.
    for t in (0, t_trial):
        assert b.resets[t].all() and np.all(h[t] == 0)
    assert b.resets.sum() == 2 * 2
    # Every other step, including the episode boundary t = 5 and 15, carries a non-zero state
    # that is exactly the GRU's output of the previous step.
    for t in range(1, 2 * t_trial):
        if t == t_trial:
            continue
        assert np.abs(h[t]).sum() > 0
        with torch.no_grad():
            _, _, nxt = p.step(*(torch.as_tensor(x[t - 1]) for x in
                                 (b.obs, b.prev_act, b.prev_rew)), torch.as_tensor(h[t - 1]))
        np.testing.assert_allclose(h[t], nxt.numpy(), atol=1e-6)
    # Episode starts zero the previous action and reward but not the state.
    for t in (0, 5, 10, 15):
        assert b.episode_start[t].all()
        assert np.all(b.prev_act[t] == 0) and np.all(b.prev_rew[t] == 0)
    assert b.episode_start.sum() == 8
    np.testing.assert_array_equal(b.prev_act[1:5], b.act[0:4])
    assert b.trial_end[t_trial - 1].all() and b.trial_end[-1].all() and b.trial_end.sum() == 4
    # The training unroll (with the recorded resets) reproduces the rollout's actions.
    with torch.no_grad():
        mean, _, _ = p.unroll(*(torch.as_tensor(x) for x in
                                (b.obs, b.prev_act, b.prev_rew, b.resets)), p.initial_hidden(2))
    np.testing.assert_allclose(mean.numpy(), b.sample, atol=1e-5)
    assert b.episode_returns.shape == (2, 2, 2)
    np.testing.assert_allclose(b.episode_returns.sum(), b.reward.sum(), rtol=1e-5)


# ------------------------------------------------------------------ DAgger
def test_dagger_labels_the_students_own_states_with_teacher_actions(rng):
    p = tiny_policy("gru")
    trial = TrialConfig(episodes_per_trial=2, episode_steps=6, trials_per_iter=2)
    conds = [[FAMILY.sample(rng, "train")] for _ in range(2)]
    teachers = [ScriptedTeacher(1), ScriptedTeacher(1)]
    b = run_trials(p, ROBOT, conds, trial, rng, teachers=teachers, beta=0.0)
    lo, hi = ROBOT.action_bounds
    for i, teacher in enumerate(teachers):
        # The teacher was asked about exactly the states the student visited, in order ...
        np.testing.assert_allclose(np.stack(teacher.seen), b.obs[:, i], atol=1e-6)
        # ... and each is labelled with its action there, while the student's action ran.
        want = np.clip(np.tanh(np.stack(teacher.seen) @ teacher.w.T), lo, hi)
        np.testing.assert_allclose(b.teacher_act[:, i], want, atol=1e-6)
        assert teacher.resets == 2  # once per episode
    np.testing.assert_allclose(b.act, np.clip(b.sample, lo, hi), atol=1e-6)
    assert not np.allclose(b.act, b.teacher_act, atol=1e-3)
    # The teacher's history records the executed (student's) action, not its own.
    np.testing.assert_allclose(teachers[0]._act[-1], b.act[-1, 0], atol=1e-6)
    # beta = 1: the teacher's actions are executed.
    b1 = run_trials(p, ROBOT, conds, trial, rng, teachers=[ScriptedTeacher(1)] * 2, beta=1.0)
    np.testing.assert_allclose(b1.act, b1.teacher_act, atol=1e-6)


def test_rollout_noise_perturbs_only_the_students_executed_actions(rng):
    p = tiny_policy("gru")
    trial = TrialConfig(episodes_per_trial=1, episode_steps=8, trials_per_iter=2)
    conds = [[FAMILY.sample(rng, "train")] for _ in range(2)]
    lo, hi = ROBOT.action_bounds
    b = run_trials(p, ROBOT, conds, trial, np.random.default_rng(3),
                   teachers=[ScriptedTeacher(1), ScriptedTeacher(1)], beta=0.0,
                   action_std=0.3, noise_rng=np.random.default_rng(4))
    # The executed action is the student's mean plus 0.3 half-ranges of the noise stream, and
    # it is what the student sees as its previous action.
    seeds = draw_slot_seeds(np.random.default_rng(4), 2)  # one noise stream per slot
    noise = np.stack([np.random.default_rng(s).standard_normal(b.sample.shape[::2])
                      for s in seeds], axis=1)
    want = np.clip(b.sample + 0.3 * (hi - lo) / 2 * noise, lo, hi)
    np.testing.assert_allclose(b.act, want, atol=1e-5)
    assert not np.allclose(b.act, np.clip(b.sample, lo, hi), atol=1e-3)
    np.testing.assert_array_equal(b.prev_act[1:], b.act[:-1])
    # Teacher-executed rollouts are untouched: the same as without noise, step for step.
    runs = [run_trials(p, ROBOT, conds, trial, np.random.default_rng(3),
                       teachers=[ScriptedTeacher(1), ScriptedTeacher(1)], beta=1.0, **kw)
            for kw in ({}, {"action_std": 0.3, "noise_rng": np.random.default_rng(4)})]
    for k in ("obs", "act", "teacher_act", "reward"):
        np.testing.assert_array_equal(getattr(runs[0], k), getattr(runs[1], k))
    with pytest.raises(ValueError, match="noise_rng"):
        run_trials(p, ROBOT, conds, trial, rng, action_std=0.3)


def test_distill_fit_moves_the_student_towards_the_teacher(rng):
    p = tiny_policy("gru")
    cfg = tiny_cfg(**{"distill.epochs": 15, "bptt": 4, "distill.lr": 1e-2})
    trial = TrialConfig(episodes_per_trial=1, episode_steps=16, trials_per_iter=2)
    conds = [[FAMILY.sample(rng, "train")] for _ in range(2)]
    b = run_trials(p, ROBOT, conds, trial, rng, teachers=[ScriptedTeacher(), ScriptedTeacher()])
    data = {k: getattr(b, k) for k in training.DATA_KEYS}
    opt = torch.optim.Adam(p.parameters(), lr=cfg.distill.lr)
    first = training.distill_fit(p, opt, data, tiny_cfg(**{"distill.epochs": 1}),
                                 np.random.default_rng(0))
    last = training.distill_fit(p, opt, data, cfg, np.random.default_rng(1))
    assert last < 0.5 * first


# ------------------------------------------------------------------ PPO
def test_gae_matches_hand_computation():
    g, lam = 0.9, 0.8
    r = np.array([[1.0], [2.0], [3.0], [4.0]])
    v = np.array([[0.5], [1.0], [1.5], [2.0]])
    ends = np.array([[False], [True], [False], [True]])  # two trials of two steps
    adv, ret = training.gae(r, v, ends, g, lam)
    d1 = 2.0 - 1.0  # last step of trial 1: no bootstrap
    d0 = 1.0 + g * 1.0 - 0.5
    d3 = 4.0 - 2.0
    d2 = 3.0 + g * 2.0 - 1.5
    want = np.array([[d0 + g * lam * d1], [d1], [d2 + g * lam * d3], [d3]])
    np.testing.assert_allclose(adv, want)
    np.testing.assert_allclose(ret, want + v)


def test_ppo_log_prob_is_the_gaussian_density():
    p = tiny_policy()
    mean, x = torch.zeros(2, ROBOT.act_dim), torch.randn(2, ROBOT.act_dim)
    ref = torch.distributions.Normal(mean, p.log_std.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(p.log_prob(mean, x), ref)


# ------------------------------------------------------------------ runs, checkpoints, resume
@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    from adaptive_control.training.config import load_config
    from adaptive_control.training.loop import train

    out = tmp_path_factory.mktemp("teacher")
    # the students act every control step: so does their teacher
    cfg = load_config(preset="tiny", overrides=["iterations=1", "threads=1", "decision_steps=1"])
    return str(train(cfg, out, progress=False))


def test_distill_run_checkpoint_round_trip_and_controller(tmp_path, teacher_ckpt):
    cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt})
    ckpt_path = training.train_policy(cfg, tmp_path / "run", progress=False)
    raw = torch.load(ckpt_path, weights_only=True)
    assert raw["iteration"] == 2 and raw["content"] == "policy" and raw["method"] == "distill"
    policy, cfg2 = training.policy_from_checkpoint(raw)
    assert cfg2 == cfg
    for k, v in policy.state_dict().items():
        torch.testing.assert_close(v, raw["policy"][k])
    assert float(policy.obs_norm.count) > 0  # the normaliser travels in the weights
    assert len(json.loads(raw["metrics"])) == 2
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3
    ctrl = policy_controller(tmp_path / "run")
    res = evaluate_policy(ctrl, FAMILY, episodes=1, steps=20, switch=True)
    assert res.episodes[0].steps == 20 and np.isfinite(res.mean_return)
    assert len(ctrl.latencies) == 20


def test_rollout_action_std_reaches_the_dagger_rounds_where_the_student_acts(tmp_path,
                                                                             teacher_ckpt):
    # Round 0 (beta0 = 1) is all teacher, so it is the same with or without the noise (a noisy
    # run may reuse a plain run's round 0); round 1 executes the noisy student.
    data = {}
    for std in (0.0, 0.3):
        cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt, "distill.rollout_action_std": std})
        training.train_policy(cfg, tmp_path / f"s{std}", progress=False)
        data[std] = [np.load(tmp_path / f"s{std}" / "data" / f"round_{i:03d}.npz")
                     for i in (0, 1)]
    for k in data[0.0][0].files:
        np.testing.assert_array_equal(data[0.0][0][k], data[0.3][0][k])
    assert not np.allclose(data[0.0][1]["prev_act"], data[0.3][1]["prev_act"])  # executed


def test_controller_carries_previous_action_and_reward(tmp_path):
    cfg = tiny_cfg(method="rl2", iterations=1)
    ckpt = training.train_policy(cfg, tmp_path / "run", progress=False)
    ctrl = policy_controller(ckpt)
    p = ctrl.policy
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=ROBOT.obs_dim) for _ in range(3)]
    acts = [ctrl(o) for o in obs]
    # By hand: zeros first, then the previous action and the task reward of the last step.
    from sims.rewards import task_reward

    fn = task_reward(ROBOT)
    h = p.initial_hidden(1)
    pa, pr = np.zeros(ROBOT.act_dim), 0.0
    for i, o in enumerate(obs):
        if i:
            pr = float(fn(obs[i - 1], pa, o))
        with torch.no_grad():
            a, h = p(torch.tensor(o, dtype=torch.float32)[None],
                     torch.tensor(pa, dtype=torch.float32)[None],
                     torch.tensor([[pr]], dtype=torch.float32), h)
        np.testing.assert_allclose(acts[i], a[0].numpy(), atol=1e-6)
        pa = acts[i]
    ctrl.reset()
    assert ctrl._prev_obs is None and np.all(ctrl._hidden.numpy() == 0)


def test_action_noise_is_seeded_scaled_and_fed_back_as_the_previous_action(tmp_path):
    """action_std > 0: the mean plus N(0, (std * half-range)^2) from the noise seed, clipped;
    the noisy action, which is what the robot executes, is the next step's prev_action."""
    ckpt = training.train_policy(tiny_cfg(method="rl2", iterations=1), tmp_path / "run",
                                 progress=False)
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=ROBOT.obs_dim) for _ in range(400)]
    std = 0.1
    noisy, twin = (policy_controller(ckpt, action_std=std, noise_seed=5) for _ in range(2))
    acts = np.array([noisy(o) for o in obs])
    np.testing.assert_array_equal(acts, [twin(o) for o in obs])  # same seed, same actions
    third = policy_controller(ckpt, action_std=std, noise_seed=6)
    assert not np.allclose(acts, [third(o) for o in obs])
    # The noise on top of what the mean policy does with the same inputs.
    ref = policy_controller(ckpt)
    means = []
    for i, o in enumerate(obs):
        ref._prev_act = acts[i - 1] if i else np.zeros(ROBOT.act_dim)
        means.append(ref(o))
    lo, hi = ROBOT.action_bounds
    resid = (acts - np.array(means)) / ((hi - lo) / 2)
    inside = (np.abs(acts) < 0.999 * hi).all(1)  # clipping shrinks the residual at the bounds
    assert resid[inside].std() == pytest.approx(std, rel=0.1)
    assert abs(resid[inside].mean()) < 0.02
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"action_std=.*allowed a number >= 0"):
            policy_controller(ckpt, action_std=bad)


def test_rl2_resume_reproduces_an_uninterrupted_run(tmp_path):
    cfg = tiny_cfg(method="rl2", iterations=3)
    full = torch.load(training.train_policy(cfg, tmp_path / "full", progress=False),
                      weights_only=True)
    training.train_policy(cfg, tmp_path / "killed", progress=False, stop_after=1)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["iteration"] == 1
    with pytest.raises(FileExistsError):
        training.train_policy(cfg, tmp_path / "killed", progress=False)
    with pytest.raises(ValueError, match="config differs"):
        training.train_policy(tiny_cfg(method="rl2", iterations=3, seed=5), tmp_path / "killed",
                              resume=True, progress=False)
    resumed = torch.load(training.train_policy(cfg, tmp_path / "killed", resume=True,
                                               progress=False), weights_only=True)
    assert resumed["iteration"] == 3
    for k, v in full["policy"].items():
        torch.testing.assert_close(resumed["policy"][k], v)
    assert json.loads(resumed["metrics"])[-1]["return_mean"] == pytest.approx(
        json.loads(full["metrics"])[-1]["return_mean"])


def test_a_run_started_from_another_keeps_its_policy_through_the_value_warmup(tmp_path):
    """``init`` starts from a trained policy (weights and normalisers, the Gaussian head reset),
    and ``ppo.value_warmup`` iterations move only its value head."""
    start = torch.load(training.train_policy(tiny_cfg(method="rl2"), tmp_path / "start",
                                             progress=False), weights_only=True)["policy"]
    cfg = tiny_cfg(method="rl2", init=str(tmp_path / "start"), **{"ppo.value_warmup": 1,
                                                                    "net.init_log_std": -2.0})
    training.train_policy(cfg, tmp_path / "warm", progress=False, stop_after=1)
    saved = torch.load(tmp_path / "warm" / "checkpoint.pt", weights_only=True)
    warm = saved["policy"]
    row = json.loads(saved["metrics"])[0]
    assert row["value_only"] and 0.0 < row["value_explained"] <= 1.0
    for k, v in start.items():
        if k == "log_std":
            assert torch.all(warm[k] == -2.0)
        elif k.startswith("value_head"):
            assert not torch.equal(warm[k], v), k
        else:  # every policy weight and the normalisers as they were
            torch.testing.assert_close(warm[k], v, msg=k)
    shutil.rmtree(tmp_path / "start")  # a resumed run restores its own checkpoint, not init
    after = torch.load(training.train_policy(cfg, tmp_path / "warm", resume=True,
                                             progress=False), weights_only=True)["policy"]
    assert not torch.equal(after["mean_head.weight"], start["mean_head.weight"])
    torch.testing.assert_close(after["obs_norm.mean"], start["obs_norm.mean"])


def test_target_kl_ends_an_iterations_ppo_passes_early(tmp_path):
    def updates(**over) -> list[int]:
        ckpt = training.train_policy(tiny_cfg(method="rl2", **over), tmp_path / str(over),
                                     progress=False)
        return [r["updates"] for r in json.loads(torch.load(ckpt, weights_only=True)["metrics"])]

    # tiny: 2 epochs x 1 minibatch x 3 chunks of 8 steps; a minute bound stops after the first
    # minibatch, whose later chunks have moved away from the rollout policy.
    assert updates() == [6, 6]
    assert updates(**{"ppo.target_kl": 1e-9}) == [3, 3]


def test_a_start_of_another_family_or_network_is_refused_before_work(tmp_path):
    training.train_policy(tiny_cfg(method="rl2", iterations=1), tmp_path / "start",
                          progress=False)
    for over, message in (({"init": str(tmp_path / "none")}, "no such run folder"),
                          ({"net.hidden_size": 4}, r"net.hidden_size: 8 there, 4 here"),
                          ({"family": "quadruped-leg-failure"}, "trained on family")):
        cfg = tiny_cfg(method="rl2", **{"init": str(tmp_path / "start"), **over})
        with pytest.raises(ValueError, match=message):
            training.train_policy(cfg, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()


def test_teacher_labels_with_the_configured_planner(teacher_ckpt):
    """distill.teacher_planner replaces the teacher checkpoint's planner for labelling (and
    for the teacher that eval-policy compares against); unset fields take that planner's
    defaults, and no teacher_planner keeps the checkpoint's own."""
    from adaptive_control.planning import CEM, MPPI, MPPIConfig

    def load_teacher(distill):
        (held,) = make_teachers(FAMILY, distill, [0])
        assert held.k == 1  # the teacher was trained at every control step
        return held.teacher

    with_teacher = tiny_cfg(**{"distill.teacher": teacher_ckpt}).distill
    own = load_teacher(with_teacher).planner
    assert tiny_cfg().distill.teacher_planner is None
    same = load_teacher(with_teacher)
    assert same.planner.config == own.config
    cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt, "distill.teacher_planner.name": "mppi",
                      "distill.teacher_planner.num_candidates": 48,
                      "distill.teacher_planner.lambda_": 0.3})
    teacher = load_teacher(cfg.distill)
    assert isinstance(teacher.planner, MPPI) and not isinstance(own, MPPI)
    assert teacher.planner.config.num_candidates == 48
    assert teacher.planner.config.lambda_ == 0.3
    assert teacher.planner.config.horizon == MPPIConfig().horizon  # unset: MPPI's default
    from policies.evaluate import teacher_controller

    assert isinstance(teacher_controller(teacher_ckpt, distill=cfg.distill).planner, MPPI)
    cem = tiny_cfg(**{"distill.teacher": teacher_ckpt, "distill.teacher_planner.name": "cem",
                      "distill.teacher_planner.num_iterations": 2})
    teacher = load_teacher(cem.distill)
    assert isinstance(teacher.planner, CEM) and teacher.planner.config.num_iterations == 2
    # An option the labelling planner does not have is refused before any work.
    with pytest.raises(ValueError, match="'distill.teacher_planner.num_iterations' for "
                                         "distill.teacher_planner.name='mppi'"):
        tiny_cfg(**{"distill.teacher": teacher_ckpt, "distill.teacher_planner.name": "mppi",
                    "distill.teacher_planner.num_iterations": 3})


def test_the_teacher_is_required_and_checked_before_any_work(tmp_path, teacher_ckpt,
                                                             monkeypatch):
    """No default teacher path (it would resolve against the current directory); a missing,
    wrong-family or non-learner teacher is refused naming distill.teacher and its value."""
    from policies.config import DistillConfig

    assert DistillConfig().teacher == ""
    monkeypatch.chdir(tmp_path)
    policy_run = training.train_policy(tiny_cfg(method="rl2", iterations=1), tmp_path / "rl2",
                                       progress=False)
    for over, message in (
            ({}, "distill.teacher='' is not set (required with method='distill'): allowed "
                 "'oracle' (the privileged teacher) or an `adapt train` run folder or its "
                 "checkpoint.pt trained on family 'cheetah-cripple' (or cheetah-cripple@K)"),
            ({"distill.teacher": "runs/grbal"},
             f"distill.teacher='runs/grbal': no such run folder or checkpoint (relative to "
             f"{tmp_path})"),
            ({"distill.teacher": teacher_ckpt, "family": "cheetah-payload"},
             "was trained on family 'cheetah-cripple'; allowed 'oracle'"),
            ({"distill.teacher": str(policy_run)}, "holds no learner")):
        with pytest.raises(ValueError) as e:
            training.train_policy(tiny_cfg(**over), tmp_path / "run", progress=False)
        assert message in str(e.value)
        assert not (tmp_path / "run").exists()
    # A run folder names its checkpoint.
    run_folder = tiny_cfg(**{"distill.teacher": str(Path(teacher_ckpt).parent)}).distill
    assert len(make_teachers(FAMILY, run_folder, [0, 1])) == 2


def test_a_policy_config_with_the_old_teacher_fields_loads_as_a_planner_table():
    from adaptive_control.planning import MPPIConfig
    from policies.config import policy_config_from_json

    values = tiny_cfg().to_dict()
    old = {k: v for k, v in values["distill"].items() if k != "teacher_planner"}
    plain = {**old, "teacher_planner": "", "teacher_candidates": 0, "teacher_iterations": 0,
             "teacher_lambda": 0.0}
    assert policy_config_from_json(json.dumps({**values, "distill": plain})) == tiny_cfg()
    mppi = {**plain, "teacher_planner": "mppi", "teacher_candidates": 256,
            "teacher_lambda": 0.3}
    cfg = policy_config_from_json(json.dumps({**values, "distill": mppi}))
    assert cfg.distill.teacher_planner == MPPIConfig(num_candidates=256, lambda_=0.3)
    with pytest.raises(ValueError, match="distill.teacher_planner to the whole labelling"):
        policy_config_from_json(json.dumps({**values, "distill": {**plain,
                                                                  "teacher_candidates": 8}}))


def test_eval_policy_pools_runs_and_compares_with_the_labelling_teacher(tmp_path, teacher_ckpt,
                                                                         capsys):
    """Runs differing by seed are pooled per method and architecture, with the standard error
    across runs and the ratios against the teacher as it labelled them."""
    runs = []
    for arch, seed in (("gru", 0), ("gru", 1), ("mlp", 0), ("mlp", 1)):
        cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt, "net.arch": arch, "seed": seed,
                          "iterations": 1, "distill.teacher_planner.num_candidates": 8,
                          "distill.teacher_planner.horizon": 3})
        runs.append(str(training.train_policy(cfg, tmp_path / f"{arch}{seed}", progress=False)))
    out = tmp_path / "eval.json"
    assert main(["eval-policy", *runs, "--teacher", teacher_ckpt, "--episodes", "1",
                 "--duration", "0.15", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    groups = res["groups"]
    assert set(groups) == {"distill gru", "distill mlp"}
    gru = groups["distill gru"]
    means = [res["methods"][r]["mean_return"] for r in runs[:2]]
    assert gru["runs"] == 2 and gru["mean_return"] == pytest.approx(np.mean(means))
    assert gru["sem_across_runs"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(2))
    teacher = res["methods"][f"teacher:{teacher_ckpt}"]
    assert gru["return_vs_teacher"] == pytest.approx(gru["mean_return"] / teacher["mean_return"])
    assert "by method and architecture" in capsys.readouterr().out
    # GRU and MLP runs of the same seed are compared pairwise.
    pair = res["paired"]["distill gru - distill mlp"]
    ret = {r: res["methods"][r]["mean_return"] for r in runs}
    assert pair["seeds"] == [0, 1]
    assert pair["differences"] == pytest.approx([ret[runs[0]] - ret[runs[2]],
                                                 ret[runs[1]] - ret[runs[3]]])
    assert pair["wins"] == sum(d > 0 for d in pair["differences"])
    # Policies labelled by differently configured teachers have no single teacher to compare.
    other = tiny_cfg(**{"distill.teacher": teacher_ckpt, "iterations": 1})
    runs.append(str(training.train_policy(other, tmp_path / "other", progress=False)))
    assert main(["eval-policy", *runs, "--teacher", teacher_ckpt, "--episodes", "1",
                 "--duration", "0.05"]) == 2
    assert "labelled by differently configured teachers" in capsys.readouterr().err


def test_eval_policy_on_training_conditions(tmp_path, teacher_ckpt):
    """--split train runs every method, the teacher too, on the same seeded draws of the
    training distribution (imitation in distribution vs generalisation to the held-out set)."""
    from policies.compare import eval_conditions

    assert eval_conditions(FAMILY, "test", 5, 0) == list(FAMILY.test_conditions)
    train = eval_conditions(FAMILY, "train", 6, 3)
    assert len(train) == 6 and not any(FAMILY.is_held_out(c) for c in train)
    assert eval_conditions(FAMILY, "train", 6, 3) == train  # seeded: the same for every method
    cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt, "iterations": 1})
    run = training.train_policy(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "eval.json"
    assert main(["eval-policy", str(run), "--teacher", teacher_ckpt, "--split", "train",
                 "--conditions", "3", "--episodes", "1", "--duration", "0.05", "--seed", "3",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    labels = [c.label for c in eval_conditions(FAMILY, "train", 3, 3)]
    assert res["split"] == "train" and res["conditions"] == labels
    for method in res["methods"].values():
        assert [e["label"] for e in method["episodes"]] == labels
        assert [e["steps"] for e in method["episodes"]] == [5] * 3  # 0.05 s of 10 ms steps


def test_eval_policy_refuses_a_length_under_two_steps_naming_duration(tmp_path, teacher_ckpt,
                                                                        capsys, monkeypatch):
    import policies.compare

    def no_work(*a, **k):
        raise AssertionError("episodes started despite invalid input")

    monkeypatch.setattr(policies.compare, "run_comparison", no_work)
    cfg = tiny_cfg(**{"distill.teacher": teacher_ckpt, "iterations": 1})
    run = str(training.train_policy(cfg, tmp_path / "run", progress=False))
    for duration in ("0", "-1", "0.01"):
        assert main(["eval-policy", run, "--duration", duration]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"adapt: error: --duration={duration}:")
        assert "allowed seconds >= 0.02" in lines[0]
    with pytest.raises(SystemExit) as exit_:  # no alias: the length is given in seconds only
        main(["eval-policy", run, "--steps", "5"])
    assert exit_.value.code == 2 and "unrecognized arguments: --steps" in capsys.readouterr().err


def test_paired_differences_pair_runs_by_seed_and_skip_ambiguous_groups():
    from policies.compare import paired_differences

    ret = {"g0": 10.0, "g1": 4.0, "g2": 7.0, "m0": 6.0, "m1": 5.0, "m3": 1.0}
    methods = {k: {"mean_return": v} for k, v in ret.items()}
    group_of = {k: "distill gru" if k[0] == "g" else "distill mlp" for k in ret}
    seed_of = {k: int(k[1]) for k in ret}
    pair = paired_differences(methods, group_of, seed_of)["distill gru - distill mlp"]
    assert pair["seeds"] == [0, 1]  # seeds 2 and 3 have no partner
    assert pair["differences"] == [4.0, -1.0] and pair["wins"] == 1
    assert pair["mean"] == 1.5 and pair["sem"] == pytest.approx(2.5)
    # Two GRU runs of seed 0 (say, different widths): which one pairs with MLP seed 0 is
    # ambiguous, so that group is not paired rather than paired with whichever came last.
    methods["g0b"], group_of["g0b"], seed_of["g0b"] = {"mean_return": 0.0}, "distill gru", 0
    assert paired_differences(methods, group_of, seed_of) == {}


def test_students_trained_with_rollout_noise_form_their_own_group():
    from policies.compare import group_name

    assert group_name(tiny_cfg()) == "distill gru"
    assert group_name(tiny_cfg(**{"net.arch": "mlp"})) == "distill mlp"
    assert group_name(tiny_cfg(**{"distill.rollout_action_std": 0.28})) == "distill gru noise 0.28"
    assert group_name(tiny_cfg(method="rl2")) == "rl2 gru"


# ------------------------------------------------------------------ config errors
@pytest.mark.parametrize("override, message", [
    ("nonsense=1", "unknown config key 'nonsense'"),
    ("ppo.gama=0.9", "unknown config key 'ppo.gama'"),
    ("method='dagger'", "method='dagger' is unknown"),
    ("net.arch='transformer'", "net.arch='transformer' is unknown"),
    ("trial.episode_steps=0", "trial.episode_steps=0 is out of range"),
    ("ppo.gamma=1.5", "ppo.gamma=1.5 is out of range"),
    ("bptt='long'", "bptt='long' must be an integer"),
    ("family='cheetah-moon'", "family='cheetah-moon' is unknown"),
    ("distill.teacher_planner='lqr'", "distill.teacher_planner='lqr' is unknown"),
    ("distill.teacher_planner.name='lqr'", "distill.teacher_planner.name='lqr' is unknown"),
    ("distill.teacher_planner.num_candidates=-1",
     "distill.teacher_planner.num_candidates=-1 must be an integer >= 1"),
    ("distill.teacher_candidates=8", "unknown config key 'distill.teacher_candidates'"),
    ("distill.rollout_action_std=-0.1", "distill.rollout_action_std=-0.1: allowed a number >= 0"),
    ("distill.rollout_action_std=nan", "distill.rollout_action_std=nan: allowed a number >= 0"),
    ("ppo.target_kl=-0.01", "ppo.target_kl=-0.01 is out of range"),
    ("ppo.value_warmup=2", "ppo.value_warmup=2 is out of range: allowed 0 <= value_warmup < "
     "iterations=2"),
])
def test_bad_config_refused(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_policy_config(preset="tiny", overrides=[override])


def test_cli_refuses_bad_config_and_missing_teacher_before_work(tmp_path, capsys):
    assert main(["train-policy", "tiny", "--out", str(tmp_path / "a"),
                 "--set", "ppo.clipp=0.1"]) == 2
    assert "unknown config key 'ppo.clipp'" in capsys.readouterr().err
    assert main(["train-policy", "tiny", "--out", str(tmp_path / "b"),
                 "--set", "distill.teacher=/no/such.pt"]) == 2
    assert ("distill.teacher='/no/such.pt': no such run folder or checkpoint; allowed "
            "'oracle' (the privileged teacher) or an `adapt train` run folder"
            ) in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    (tmp_path / "c.toml").write_text('preset = "tiny"\nmethod = "rl2"\n[net]\nwidth = 3\n')
    assert main(["train-policy", str(tmp_path / "c.toml"), "--out", str(tmp_path / "c")]) == 2
    assert "unknown config key 'net.width'" in capsys.readouterr().err
    assert main(["eval-policy", str(tmp_path / "no-such-run"), "--action-std", "-1"]) == 2
    assert "--action-std=-1.0: allowed a number >= 0" in capsys.readouterr().err
    assert main(["eval-policy", str(tmp_path / "no-such-run"), "--split", "train",
                 "--conditions", "0"]) == 2
    assert "--conditions=0: allowed an integer >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------ ONNX
def test_onnx_export_matches_torch_over_100_steps(tmp_path, rng):
    pytest.importorskip("onnxscript")
    import onnxruntime

    from export.policy import export_policy
    from export.runtime import artifacts as C

    cfg = tiny_cfg(method="rl2", iterations=1)
    ckpt = torch.load(training.train_policy(cfg, tmp_path / "run", progress=False),
                      weights_only=True)
    # Non-trivial normaliser statistics and output weights, so that baking them in is tested.
    with torch.no_grad():
        for k in ("obs_norm.mean", "rew_norm.mean"):
            ckpt["policy"][k].normal_()
        ckpt["policy"]["obs_norm.var"].uniform_(0.5, 3.0)
        ckpt["policy"]["mean_head.weight"].normal_(std=0.5)
    result = export_policy(ckpt, tmp_path / "policy")
    assert result.policy_path == tmp_path / "policy" / "policy.onnx"
    assert result.max_error <= 1e-4  # the export's own parity check passed
    # policy.onnx alone in ONNX Runtime; the test tracks previous action, reward and hidden state.
    sess = onnxruntime.InferenceSession(str(result.policy_path),
                                        providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in sess.get_modelmeta().custom_metadata_map.items()}
    assert meta["robot"] == "cheetah" and int(meta["obs_dim"]) == ROBOT.obs_dim
    assert int(meta["act_dim"]) == ROBOT.act_dim and int(meta["hidden_size"]) == 8
    assert float(meta["control_timestep"]) == pytest.approx(ROBOT.control_timestep)
    ctrl = policy_controller(ckpt)
    from sims.env import AdaptEnv

    env = AdaptEnv(ROBOT, FAMILY.test_conditions[0], episode_steps=100, seed=rng)
    ts = env.reset()
    h = np.zeros((1, int(meta["hidden_size"])), np.float32)
    pa, pr, worst, n = np.zeros(ROBOT.act_dim), 0.0, 0.0, 0
    while not ts.last():
        a_torch = ctrl(ts.observation)
        a_onnx, h = sess.run(list(C.POLICY_OUTPUTS), {
            C.OBS: np.asarray(ts.observation, np.float32).reshape(1, -1),
            C.PREV_ACTION: np.asarray(pa, np.float32).reshape(1, -1),
            C.PREV_REWARD: np.array([[pr]], np.float32), C.HIDDEN: h})
        a_onnx = a_onnx[0]
        worst = max(worst, float(np.abs(a_onnx - a_torch).max()),
                    float(np.abs(h - ctrl._hidden.numpy()).max()))
        ts = env.step(a_torch)
        pa, pr, n = a_torch, float(ts.reward), n + 1
    assert n == 100 and worst <= 1e-4


def test_trials_carry_the_hidden_state_and_the_control_resets_it(tmp_path):
    from policies.evaluate import evaluate_trials

    cfg = tiny_cfg(method="rl2", iterations=1)
    ctrl = policy_controller(training.train_policy(cfg, tmp_path / "run", progress=False))
    family = get_family(cfg.family)
    carried = evaluate_trials(ctrl, family, trials=1, episodes_per_trial=3, steps=8, seed=5)
    control = evaluate_trials(ctrl, family, trials=1, episodes_per_trial=3, steps=8, seed=5,
                              carry=False)
    assert carried.shape == control.shape == (len(family.test_conditions), 3)
    # Same initial states: the first episode (zero hidden state) is identical; later ones
    # differ only by what the carried hidden state remembers.
    np.testing.assert_array_equal(carried[:, 0], control[:, 0])
    assert not np.allclose(carried[:, 1:], control[:, 1:])
    assert ctrl.keep_hidden is False  # restored
