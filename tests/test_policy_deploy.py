"""Policy deploy folders: `adapt export-policy` writes them, `adapt deploy` runs them without
torch through the same loop as controllers, with the torch PolicyController's actions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from blocked_imports import RUNTIME, TRAINING, blocking_prelude

from adapt_cli import main
from adaptive_control.checkpoint import save_checkpoint
from export.policy import export_policy
from export.runtime import artifacts as C
from export.runtime.artifacts import ArtifactError, ObservationError, deploy_kind
from export.runtime.loop import run
from export.runtime.policy import PolicySession
from policies import training
from policies.config import load_policy_config
from policies.evaluate import policy_controller
from sims.registry import get_family

pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]
FAMILY = get_family("cheetah-cripple")
ROBOT = FAMILY.robot
OBS_DIM, ACT_DIM, HIDDEN = ROBOT.obs_dim, ROBOT.act_dim, 8
# A run on the simulated cheetah that switches condition mid-run: healthy for 0.1 s, then the
# back thigh fails; the policy has to carry its hidden state across the switch.
SIM = dict(condition="healthy", switches=[(0.1, "disabled:bthigh")], seed=3)
DURATION, STEPS = 0.3, 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GRU policy (the `tiny` preset's sizes) with non-trivial normalisers and output
    weights, saved as `adapt train-policy` saves it — no training."""
    cfg = load_policy_config(preset="tiny")
    torch.manual_seed(0)
    policy = training.build_policy(cfg, FAMILY)
    with torch.no_grad():
        torch.nn.init.normal_(policy.mean_head.weight, std=0.5)  # actions that vary
        policy.obs_norm.mean.normal_()
        policy.obs_norm.var.uniform_(0.5, 3.0)
        policy.rew_norm.mean.normal_()
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    save_checkpoint(path, {"content": training.CONTENT, "robot": ROBOT.name,
                           "family": FAMILY.name, "method": cfg.method, "arch": cfg.net.arch,
                           "config": cfg.to_json(), "policy": policy.state_dict()})
    return path


@pytest.fixture(scope="module")
def policy_dir(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_policy(checkpoint, tmp_path_factory.mktemp("exports") / "policy").out_dir


def _sim(**over):
    from export.runtime.sim_robot import SimRobot

    return SimRobot(ROBOT.name, **{**SIM, **over})


def _torch_rollout(checkpoint: Path) -> tuple[list[np.ndarray], float]:
    """The torch PolicyController on the simulated robot, stepped as run() steps it."""
    ctrl = policy_controller(checkpoint)
    ctrl.new_condition()
    robot = _sim()
    obs = robot.reset()
    actions = []
    for _ in range(STEPS):
        a = ctrl(obs)
        actions.append(a)
        robot.act(a)
        obs = robot.observe()
    return actions, robot.metrics()["return"]


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def test_export_writes_a_deploy_folder_and_refuses_to_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export-policy", str(checkpoint), "--out", str(out),
                 "--verify-steps", "10"]) == 0
    printed = capsys.readouterr().out
    assert "parity: max abs error" in printed and "policy.onnx  max abs error" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [C.POLICY_FILE, C.REWARD_FILE, C.MANIFEST_FILE])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no staging left over
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    assert m[C.KIND] == C.KIND_POLICY and m["robot"] == "cheetah"
    assert m["control_timestep"] == pytest.approx(ROBOT.control_timestep)
    assert (m["obs_dim"], m["act_dim"], m["hidden_size"]) == (OBS_DIM, ACT_DIM, HIDDEN)
    lo, hi = ROBOT.action_bounds
    assert m["action_low"] == lo.tolist() and m["action_high"] == hi.tolist()
    assert m["files"] == {"policy": C.POLICY_FILE, "reward": C.REWARD_FILE}
    assert set(m["parity_max_abs_error"]) == {"policy", "reward"}
    assert max(v for d in m["parity_max_abs_error"].values() for v in d.values()) <= 1e-4
    assert deploy_kind(out) == C.KIND_POLICY

    before = (out / C.POLICY_FILE).stat().st_mtime_ns
    assert main(["export-policy", str(checkpoint), "--out", str(out), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err
    assert (out / C.POLICY_FILE).stat().st_mtime_ns == before  # untouched
    (out / C.CONTROLLER_FILE).write_bytes(b"a stale controller")
    assert main(["export-policy", str(checkpoint), "--out", str(out), "--no-verify",
                 "--force"]) == 0
    assert not (out / C.CONTROLLER_FILE).exists()  # would contradict the new manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
    capsys.readouterr()
    assert main(["export-policy", str(checkpoint), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "writes a deploy folder" in capsys.readouterr().err


@pytest.mark.parametrize("arch, width", [("lstm", 2 * HIDDEN), ("mlp", 1)])
def test_lstm_and_feed_forward_policies_deploy_too(arch, width, tmp_path):
    """The hidden tensor is [h, c] for an LSTM and a 1-wide pass-through dummy for the MLP;
    the export's closed-loop check runs the deploy runtime on both."""
    cfg = load_policy_config(preset="tiny", overrides=[f"net.arch={arch!r}"])
    torch.manual_seed(1)
    policy = training.build_policy(cfg, FAMILY)
    torch.nn.init.normal_(policy.mean_head.weight, std=0.5)
    res = export_policy({"content": training.CONTENT, "config": cfg.to_json(),
                         "policy": policy.state_dict()}, tmp_path / arch, verify_steps=10)
    assert res.manifest["hidden_size"] == width and res.max_error <= 1e-4
    assert res.parity["policy"]["recorded"] <= 1e-4
    s = PolicySession(res.out_dir, robot="cheetah")
    s.step(np.zeros(OBS_DIM))
    assert s.hidden.shape == (1, width) and s.counters["graph_actions"] == 1


def test_a_failed_parity_check_writes_nothing(checkpoint, tmp_path, monkeypatch):
    import export.policy as pe

    monkeypatch.setattr(pe, "verify_policy_export",
                        lambda *a, **k: {"policy": {"random": 0.5}, "reward": {"random": 0.0}})
    with pytest.raises(RuntimeError, match="parity check failed.*was not written"):
        export_policy(checkpoint, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_reward_graph_is_the_task_reward_on_the_quadruped(tmp_path, rng):
    """The quadruped's reward has the upright term from the orientation quaternion."""
    from export.exporter import export_reward_graph
    from export.parity import ort_session
    from sims.rewards import task_reward

    quad = get_family("quadruped-leg-failure").robot
    export_reward_graph(quad, tmp_path / C.REWARD_FILE)
    sess = ort_session(tmp_path / C.REWARD_FILE)
    reward = task_reward(quad)
    assert reward.alive_bonus > 0 and reward.quat_index is not None
    for _ in range(5):
        o, n = rng.normal(size=(2, 1, quad.obs_dim)).astype(np.float32)
        a = rng.uniform(-1, 1, (1, quad.act_dim)).astype(np.float32)
        (got,) = sess.run(None, {C.OBS: o, C.ACT: a, C.NEXT_OBS: n})
        np.testing.assert_allclose(got, reward(o.astype(float), a.astype(float),
                                               n.astype(float)), atol=1e-5)


# --------------------------------------------------------------------------------------------
# Deploy: the same actions and return as torch
# --------------------------------------------------------------------------------------------


def test_runtime_reproduces_the_torch_policy_in_closed_loop(policy_dir, checkpoint):
    """run() with a PolicySession on the simulated cheetah (condition switch mid-run) gives
    the torch PolicyController's actions and return on the same initial state."""
    want, want_return = _torch_rollout(checkpoint)
    session = PolicySession(policy_dir, robot="cheetah")
    robot = _sim()
    got: list[np.ndarray] = []
    rep = run(robot, session, rate_hz=1 / ROBOT.control_timestep, duration_s=DURATION,
              deadline_s=10.0, pace=False, on_tick=lambda info: got.append(info["action"]))
    assert rep.steps == STEPS and rep.graph_actions == STEPS and rep.deadline_misses == 0
    assert rep.robot["condition"] == "disabled(bthigh)"  # the switch happened mid-run
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True)) <= 1e-4
    assert rep.robot["return"] == pytest.approx(want_return, abs=1e-4)
    assert np.abs(session.hidden).max() > 0  # carried, not reset, through the switch
    session.close()


def test_action_noise_travels_in_the_manifest_and_matches_torch(checkpoint, policy_dir,
                                                                tmp_path):
    """export-policy --action-std: the manifest carries it, the export's closed-loop check
    compares the noisy runtime with the noisy torch controller (same noise seed), and the
    runtime's actions are the torch controller's over 100 steps."""
    assert main(["export-policy", str(checkpoint), "--out", str(tmp_path / "noisy"),
                 "--verify-steps", "20", "--action-std", "0.3"]) == 0
    m = json.loads((tmp_path / "noisy" / C.MANIFEST_FILE).read_text())
    assert m[C.ACTION_STD] == 0.3 and m["parity_max_abs_error"]["policy"]["recorded"] <= 1e-4
    ctrl = policy_controller(checkpoint, action_std=0.3, noise_seed=4)
    session = PolicySession(tmp_path / "noisy", robot="cheetah", seed=4)
    robot = _sim()
    obs = robot.reset()
    gaps = []
    for _ in range(100):
        a_torch, a_rt = ctrl(obs), session.step(obs)
        gaps.append(float(np.abs(a_rt - a_torch).max()))
        robot.act(a_torch)
        obs = robot.observe()
    assert max(gaps) <= 1e-4
    session.close()
    first = _sim().reset()
    mean = PolicySession(policy_dir, robot="cheetah").step(first)
    noisy = PolicySession(tmp_path / "noisy", robot="cheetah", seed=4).step(first)
    assert np.abs(noisy - mean).max() > 0.05  # the noise is there
    assert main(["export-policy", str(checkpoint), "--out", str(tmp_path / "bad"),
                 "--action-std", "-0.5"]) == 2
    assert not (tmp_path / "bad").exists()


def test_deploy_command_runs_the_policy_without_torch(policy_dir, checkpoint, tmp_path):
    """``python -m export.runtime.cli deploy`` (the robot-side entry point) on the policy
    folder with torch and the training packages blocked: it runs, never loads torch, and its
    return equals the torch PolicyController's."""
    script = blocking_prelude(*TRAINING) + textwrap.dedent(f"""
        from export.runtime.cli import main
        rc = main(["deploy", {str(policy_dir)!r}, "--robot", "sim:cheetah",
                   "--condition", "healthy", "--switch", "0.1=disabled:bthigh", "--seed", "3",
                   "--duration", "{DURATION}", "--fast",
                   "--deadline-ms", "10000", "--quiet", "--out", {str(tmp_path)!r}])
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "policy for cheetah" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "policy" and report["arch"] == "gru"
    assert report["report"]["steps"] == STEPS and report["report"]["graph_actions"] == STEPS
    assert report["deadline_misses"] == 0
    _, want_return = _torch_rollout(checkpoint)
    assert report["return"] == pytest.approx(want_return, abs=1e-4)


def test_policy_runtime_imports_neither_torch_nor_mujoco(policy_dir):
    """The session and the loop alone, on a scripted robot: numpy and onnxruntime only."""
    script = blocking_prelude(*RUNTIME) + textwrap.dedent(f"""
        import json
        import numpy as np
        from export.runtime.loop import run
        from export.runtime.policy import PolicySession
        s = PolicySession({str(policy_dir)!r}, robot="cheetah")
        a = s.step(np.zeros({OBS_DIM}))
        class R:
            def reset(self): return np.zeros({OBS_DIM})
            def observe(self): return np.full({OBS_DIM}, 0.1)
            def act(self, action): pass
        rep = run(R(), s, rate_hz=200, duration_s=0.1)
        print(json.dumps({{"action": a.tolist(), "steps": rep.steps,
                          "blocked_loaded": sorted(m for m in sys.modules
                                                   if m.split(".")[0] in BLOCKED)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked_loaded"] == [] and out["steps"] == 20 and len(out["action"]) == ACT_DIM


# --------------------------------------------------------------------------------------------
# The session: state, safety
# --------------------------------------------------------------------------------------------


def test_session_tracks_previous_action_reward_and_hidden_state(policy_dir):
    from sims.rewards import task_reward

    s = PolicySession(policy_dir)
    assert s.prev_reward == 0.0 and not s.last_action.any() and not s.hidden.any()
    o0, o1 = np.linspace(-0.5, 0.5, OBS_DIM), np.linspace(0.3, -0.2, OBS_DIM)
    a0 = s.step(o0)
    assert s.prev_reward == 0.0  # first step: no transition yet
    h0 = s.hidden.copy()
    assert np.all((a0 >= s.low) & (a0 <= s.high)) and h0.any()
    feed = s.begin(o1)
    assert feed is not None
    want = float(task_reward(ROBOT)(o0, a0, o1))
    assert feed[C.PREV_REWARD][0, 0] == pytest.approx(want, abs=1e-5)
    np.testing.assert_allclose(feed[C.PREV_ACTION][0], a0, atol=1e-7)
    np.testing.assert_array_equal(feed[C.HIDDEN], h0)
    s.finish(s.compute(feed))
    s.reset()
    assert s.prev_reward == 0.0 and not s.last_action.any() and not s.hidden.any()


def test_bad_observation_and_deadline_miss_hold_the_action_and_the_hidden_state(policy_dir):
    class Slow(PolicySession):
        def compute(self, feed, deadline=None):
            time.sleep(0.02)
            return super().compute(feed, deadline)

    s = Slow(policy_dir)
    obs = np.linspace(-0.5, 0.5, OBS_DIM)
    s.step(obs)
    a = s.step(obs * 1.1)
    h, r = s.hidden.copy(), s.prev_reward
    assert r != 0.0
    bad = obs.copy()
    bad[2] = np.nan
    np.testing.assert_array_equal(s.step(bad), a)  # previous action again
    np.testing.assert_array_equal(s.hidden, h)
    assert s.counters["nonfinite_obs"] == 1
    # The transition into the next good observation is unknown: the last reward is kept.
    s.step(obs * 0.9)
    assert s.prev_reward == r and s.counters["graph_actions"] == 3
    a2, h2 = s.last_action.copy(), s.hidden.copy()
    np.testing.assert_array_equal(s.step(obs, deadline=time.perf_counter() + 0.005), a2)
    np.testing.assert_array_equal(s.hidden, h2)
    assert s.counters["deadline_misses"] == 1 and s.counters["graph_actions"] == 3
    z = PolicySession(policy_dir, safe_action="zeros")
    z.step(obs)
    np.testing.assert_array_equal(z.step(obs[:-1]), np.zeros(ACT_DIM))
    assert z.counters["bad_shape_obs"] == 1
    s.close()


def test_wrong_observation_size_is_refused_before_the_first_step(policy_dir):
    class Wide:
        def reset(self):
            return np.zeros(OBS_DIM + 1)

        def observe(self):
            raise AssertionError("stepped")

        act = observe

    with pytest.raises(ObservationError, match=r"the policy for 'cheetah' expects \(17,\)"):
        run(Wide(), PolicySession(policy_dir), rate_hz=100, duration_s=0.1)


# --------------------------------------------------------------------------------------------
# Bad folders: refused before any step, naming the field, the value and what is allowed
# --------------------------------------------------------------------------------------------


def _edited(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / C.MANIFEST_FILE
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return dst


def test_robot_mismatch_is_refused_by_deploy_before_any_step(policy_dir, tmp_path, capsys):
    rc = main(["deploy", str(policy_dir), "--robot", "sim:quadruped", "--fast", "--quiet",
               "--duration", "0.1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "robot='cheetah'" in err and "'quadruped'" in err
    assert "allowed --robot sim:cheetah" in err
    assert not (tmp_path / "report.json").exists()
    with pytest.raises(ArtifactError, match="robot='cheetah'"):
        PolicySession(policy_dir, robot="quadruped")
    rc = main(["deploy", str(policy_dir), "--robot", "sim:cheetah", "--adapt-before-full"])
    assert rc == 2 and "allowed only for a controller" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("hidden_size"), r"is damaged or not a policy manifest: .*found no field "
                                     r"'hidden_size'"),
    (lambda m: m.update(kind="banana"), r"kind='banana': allowed 'controller'.*'policy'"),
    (lambda m: m.update(format_version=99), r"format_version=99: this runtime reads version 1"),
    (lambda m: m.update(hidden_size="eight"), r"hidden_size='eight': allowed an integer >= 1"),
    (lambda m: m.update(control_timestep=0), r"control_timestep=0: allowed a number"),
    (lambda m: m.update(action_low=m["action_low"][:-1]),
     r"action_low has 5 values, expected act_dim=6"),
    (lambda m: m.update(obs_dim=18),
     r"graphs\.policy\.inputs=.*: allowed .*'obs': \[1, 18\].*obs_dim=18"),
    (lambda m: m.update(files={"policy": "p.onnx", "reward": "reward.onnx"}),
     r"files=.*'p\.onnx'.*: allowed"),
    (lambda m: m.update(action_std=-1), r"action_std=-1: allowed a number >= 0"),
])
def test_bad_manifest_fields_are_refused(policy_dir, tmp_path, edit, message):
    d = _edited(policy_dir, tmp_path / "bad", edit)
    with pytest.raises(ArtifactError, match=message):
        # What `adapt deploy` does: read the kind, then the session checks everything else.
        assert deploy_kind(d) == C.KIND_POLICY
        PolicySession(d, robot="cheetah")


def test_missing_or_garbled_files_are_refused(policy_dir, tmp_path, capsys):
    d = tmp_path / "no_manifest"
    shutil.copytree(policy_dir, d)
    (d / C.MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"is damaged or not a deploy folder: .*no file "
                                            r"'manifest\.json' \(it holds .*policy\.onnx"):
        deploy_kind(d)
    assert main(["deploy", str(d), "--robot", "sim:cheetah", "--quiet"]) == 2
    assert "no file 'manifest.json'" in capsys.readouterr().err
    g = tmp_path / "garbled"
    shutil.copytree(policy_dir, g)
    (g / C.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json' is damaged or not a deploy "
                                            r"manifest: .*found 9 bytes starting b'\{not json'"):
        deploy_kind(g)
    (g / C.MANIFEST_FILE).write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="is damaged or not a deploy manifest: expected a "
                                            "JSON object .*found a JSON list"):
        PolicySession(g)
    r = tmp_path / "no_reward"
    shutil.copytree(policy_dir, r)
    (r / C.REWARD_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"no file 'reward\.onnx'"):
        PolicySession(r)
    s = tmp_path / "swapped"  # the graphs of another export under the expected names
    shutil.copytree(policy_dir, s)
    shutil.copy(s / C.REWARD_FILE, s / C.POLICY_FILE)
    with pytest.raises(ArtifactError, match=r"policy\.onnx: metadata graph='reward', "
                                            r"expected 'policy'"):
        PolicySession(s)
    with pytest.raises(ArtifactError, match="no such folder"):
        deploy_kind(tmp_path / "nope")
    # A controller export that predates the manifest's kind field is still a controller.
    old = tmp_path / "old_controller"
    old.mkdir()
    (old / C.MANIFEST_FILE).write_text(json.dumps({"robot": "cheetah"}))
    assert deploy_kind(old) == C.KIND_CONTROLLER
