"""The deployment runtime: numpy + onnxruntime only, validation at load, the recent window,
safe actions for bad observations, deadline misses, the fixed-rate loop and the simulated
robot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from blocked_imports import RUNTIME, blocking_prelude, deploy_without_torch
from support import tiny_config, tiny_learner

from export.exporter import export_learner
from export.runtime import artifacts as C
from export.runtime.artifacts import ArtifactError, ObservationError
from export.runtime.loop import Watchdog, run
from export.runtime.session import ControllerSession, TransitionBuffer
from file_errors import DamagedFileError

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 17, 6


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """GrBAL + MPPI (prev_plan input) and MB+DE + random shooting (carried state)."""
    out = {}
    for name, kw in (("grbal_mppi", dict(learner="grbal", planner="mppi")),
                     ("mbde_rs", dict(learner="mbde", planner="random_shooting"))):
        cfg = tiny_config(**kw)
        learner = tiny_learner(cfg)
        res = export_learner(learner, cfg, tmp_path_factory.mktemp(name), verify=False)
        out[name] = (learner, cfg, res.out_dir)
    return out


@pytest.fixture
def grbal_dir(artifacts) -> Path:
    return artifacts["grbal_mppi"][2]


class ScriptedRobot:
    """A toy plant with the cheetah's sizes; misbehaves on request at given ticks."""

    def __init__(self, obs_dim: int = OBS_DIM, nan_at: tuple[int, ...] = (),
                 wrong_size_at: tuple[int, ...] = (), raise_at: tuple[int, ...] = (),
                 act_raise_at: tuple[int, ...] = ()) -> None:
        self.obs_dim, self.nan_at, self.wrong_size_at = obs_dim, nan_at, wrong_size_at
        self.raise_at, self.act_raise_at = raise_at, act_raise_at
        self.actions: list[np.ndarray] = []

    def reset(self) -> np.ndarray:
        self.t, self.x = 0, np.linspace(-0.5, 0.5, self.obs_dim)
        return self.x.copy()

    def observe(self) -> np.ndarray:
        if self.t in self.raise_at:
            raise OSError("sensor timeout")
        if self.t in self.nan_at:
            bad = self.x.copy()
            bad[3] = np.nan
            return bad
        if self.t in self.wrong_size_at:
            return self.x[:-1].copy()
        return self.x.copy()

    def act(self, action: np.ndarray) -> None:
        self.t += 1
        if self.t in self.act_raise_at:
            raise OSError("bus error")
        self.actions.append(np.asarray(action, float).copy())
        self.x = 0.95 * self.x + 0.05 * np.resize(action, self.obs_dim)

    def metrics(self) -> dict:
        return {"ticks": self.t}


# --------------------------------------------------------------------------------------------
# No torch
# --------------------------------------------------------------------------------------------


def test_runtime_runs_without_torch(grbal_dir):
    """A fresh interpreter where importing torch (or mujoco, sims, onnx, the training
    package) raises: load, step, run the loop — and torch never appears in sys.modules."""
    script = blocking_prelude(*RUNTIME) + textwrap.dedent(f"""
        import json
        import numpy as np
        from export.runtime.loop import run
        from export.runtime.session import ControllerSession
        s = ControllerSession({str(grbal_dir)!r}, robot="cheetah")
        a = s.step(np.zeros({OBS_DIM}))
        class R:
            def reset(self): return np.zeros({OBS_DIM})
            def observe(self): return np.full({OBS_DIM}, 0.1)
            def act(self, action): pass
        rep = run(R(), s, rate_hz=200, duration_s=0.1)
        print(json.dumps({{"action": a.tolist(), "steps": rep.steps,
                          "torch": "torch" in sys.modules,
                          "blocked_loaded": sorted(m for m in sys.modules
                                                   if m.split(".")[0] in BLOCKED)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch"] is False and out["blocked_loaded"] == []
    assert out["steps"] == 20 and len(out["action"]) == ACT_DIM


def test_deploy_entry_point_runs_without_torch(grbal_dir, tmp_path):
    """``python -m export.runtime.cli deploy`` with the simulated robot, torch import blocked;
    matplotlib blocked too (a robot's environment may lack it): report.json only, and a line
    saying why there is no timeline.png."""
    report, printed = deploy_without_torch(grbal_dir, tmp_path)
    assert report["report"]["steps"] == 20 and report["nonfinite_obs"] == 0
    assert "no timeline.png: matplotlib is not installed" in printed
    assert not (tmp_path / "timeline.png").exists() and len(report["timeline"]) == 1


# --------------------------------------------------------------------------------------------
# Validation at load
# --------------------------------------------------------------------------------------------


def _rewrite_metadata(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / C.CONTROLLER_FILE
    model = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    edit(meta)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
    onnx.save(model, str(path))
    return dst


def test_missing_folder_and_file_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no such folder"):
        ControllerSession(tmp_path / "nope")
    (tmp_path / "dynamics.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"is damaged or not a deploy folder: expected "
                                            r"controller\.onnx.*found no file 'controller\.onnx' "
                                            r"\(it holds \['dynamics\.onnx'\]\)"):
        ControllerSession(tmp_path)


def test_corrupt_file_is_refused(tmp_path):
    (tmp_path / C.CONTROLLER_FILE).write_bytes(b"not an onnx model")
    with pytest.raises(DamagedFileError, match=r"controller\.onnx' is damaged or not an ONNX "
                                               r"graph: .*found 17 bytes starting b'not an onnx"):
        ControllerSession(tmp_path)


def test_missing_metadata_is_refused(grbal_dir, tmp_path):
    d = _rewrite_metadata(grbal_dir, tmp_path / "x", lambda m: m.pop("noise"))
    with pytest.raises(ArtifactError, match=r"is damaged or not a controller graph: .*found no "
                                            r"metadata key 'noise'"):
        ControllerSession(d)
    d = _rewrite_metadata(grbal_dir, tmp_path / "y", lambda m: m.clear())
    with pytest.raises(ArtifactError, match=r"found no metadata keys \['act_dim', "):
        ControllerSession(d)


def test_wrong_shapes_are_refused(grbal_dir, tmp_path):
    def obs18(m):
        m["inputs"][4]["shape"] = [18]

    d = _rewrite_metadata(grbal_dir, tmp_path / "a", obs18)
    with pytest.raises(ArtifactError, match=r"input 'obs' has shape \[17\].*declares \[18\]"):
        ControllerSession(d)

    def dim18(m):
        m["obs_dim"] = 18

    d = _rewrite_metadata(grbal_dir, tmp_path / "b", dim18)
    with pytest.raises(ArtifactError, match=r"recent_obs has shape \[4, 17\], expected \[4, 18\]"):
        ControllerSession(d)

    def bounds(m):
        m["action_low"] = m["action_low"][:-1]

    d = _rewrite_metadata(grbal_dir, tmp_path / "c", bounds)
    with pytest.raises(ArtifactError, match="action_low has 5 values, expected act_dim=6"):
        ControllerSession(d)

    def renamed(m):
        m["inputs"][5]["name"] = "noise_in"

    d = _rewrite_metadata(grbal_dir, tmp_path / "d", renamed)
    with pytest.raises(ArtifactError, match="missing from the graph: \\['noise_in'\\]"):
        ControllerSession(d)


def test_artifact_for_another_robot_is_refused(grbal_dir, tmp_path):
    with pytest.raises(ArtifactError, match="exported for robot 'cheetah', not 'quadruped'"):
        ControllerSession(grbal_dir, robot="quadruped")
    d = _rewrite_metadata(grbal_dir, tmp_path / "v", lambda m: m.update(format_version=99))
    with pytest.raises(ArtifactError, match="format_version=99"):
        ControllerSession(d)


# --------------------------------------------------------------------------------------------
# Window, safety and deadlines
# --------------------------------------------------------------------------------------------


def test_transition_buffer_keeps_the_newest_last():
    b = TransitionBuffer(3, 2, 1)
    for i in range(4):
        b.push(np.full(2, i), np.full(1, 10 + i), np.full(2, i + 1))
        assert b.mask.tolist() == [0.0] * max(0, 2 - i) + [1.0] * min(3, i + 1)
    assert b.full and b.obs[:, 0].tolist() == [1, 2, 3] and b.act[:, 0].tolist() == [11, 12, 13]
    b.clear()
    assert b.count == 0 and not b.mask.any()


def test_window_prior_until_full_then_adapts(grbal_dir):
    s = ControllerSession(grbal_dir)
    feeds = []
    for i in range(s.m + 2):
        feeds.append(s.begin(np.full(OBS_DIM, 0.01 * i)))
        s.finish(s.compute(feeds[-1]))
    masks = [f[C.RECENT_MASK].sum() for f in feeds]
    assert masks[:s.m] == [0] * s.m and masks[s.m:] == [s.m, s.m]
    last = feeds[-1]
    # the newest transition ends at the observation being planned from
    np.testing.assert_array_equal(last[C.RECENT_NEXT_OBS][-1], last[C.OBS])
    np.testing.assert_allclose(last[C.RECENT_OBS][0], np.full(OBS_DIM, 0.01), rtol=1e-6)
    s2 = ControllerSession(grbal_dir, adapt_before_full=True)
    f0 = s2.begin(np.zeros(OBS_DIM))
    s2.finish(s2.compute(f0))
    f1 = s2.begin(np.ones(OBS_DIM))
    assert f0[C.RECENT_MASK].sum() == 0 and f1[C.RECENT_MASK].tolist() == [0, 0, 0, 1]


def test_nonfinite_observation_gets_the_shifted_plan_and_never_enters_the_window(grbal_dir):
    s = ControllerSession(grbal_dir)
    for i in range(6):
        s.step(np.full(OBS_DIM, 0.1 * i))
    plan = s.plan.copy()
    count = s.buffer.count
    bad = np.full(OBS_DIM, 0.3)
    bad[2] = np.inf
    a = s.step(bad)
    np.testing.assert_array_equal(a, plan[1])  # previous plan shifted by one
    assert s.counters["nonfinite_obs"] == 1
    assert s.buffer.count == count and np.isfinite(s.buffer.obs).all()
    s.step(np.full(OBS_DIM, 0.7))  # the transition into the bad observation is dropped too
    assert s.buffer.count == count
    s.step(np.full(OBS_DIM, 0.8))
    assert s.buffer.count == min(count + 1, s.m)
    assert np.isfinite(s.buffer.next_obs).all()
    z = ControllerSession(grbal_dir, safe_action="zeros")
    z.step(np.zeros(OBS_DIM))
    np.testing.assert_array_equal(z.step(np.full(OBS_DIM, np.nan)), np.zeros(ACT_DIM))
    assert z.step(np.zeros(OBS_DIM - 1)).shape == (ACT_DIM,)
    assert z.counters["bad_shape_obs"] == 1


class SlowSession(ControllerSession):
    """A session whose graph takes ``delay`` seconds at the steps listed in ``slow_at``."""

    def __init__(self, *a, delay: float = 0.05, slow_at: tuple[int, ...] = (), **kw) -> None:
        super().__init__(*a, **kw)
        self.delay, self.slow_at, self.calls = delay, slow_at, 0

    def compute(self, feed, deadline=None):
        self.calls += 1
        if self.calls in self.slow_at:
            time.sleep(self.delay)
        return super().compute(feed, deadline)


def test_deadline_miss_executes_the_shifted_plan(grbal_dir):
    s = SlowSession(grbal_dir, slow_at=(4,), delay=0.03)
    for i in range(3):
        s.step(np.full(OBS_DIM, 0.1 * i), deadline=time.perf_counter() + 1.0)
    plan = s.plan.copy()
    a = s.step(np.full(OBS_DIM, 0.3), deadline=time.perf_counter() + 0.01)
    np.testing.assert_array_equal(a, plan[1])
    np.testing.assert_array_equal(s.plan[0], plan[1])  # the shifted plan is now current
    assert s.counters["deadline_misses"] == 1 and s.counters["graph_actions"] == 3
    # The next step warm-starts MPPI from the shifted plan.
    feed = s.begin(np.full(OBS_DIM, 0.4))
    np.testing.assert_array_equal(feed[C.PREV_PLAN], s.plan)


def test_watchdog_sets_terminate_at_the_deadline_only():
    w = Watchdog()
    try:
        ro = ort.RunOptions()
        w.arm(ro, time.perf_counter() + 0.02)
        time.sleep(0.1)
        assert ro.terminate
        ro2 = ort.RunOptions()
        w.arm(ro2, time.perf_counter() + 0.05)
        w.disarm()
        time.sleep(0.1)
        assert not ro2.terminate
    finally:
        w.close()


def test_run_counts_misses_bad_observations_and_errors_without_crashing(grbal_dir):
    s = SlowSession(grbal_dir, slow_at=(5, 6), delay=0.04)
    robot = ScriptedRobot(nan_at=(8,), wrong_size_at=(10,), raise_at=(12,), act_raise_at=(14,))
    rep = run(robot, s, rate_hz=100, duration_s=0.3)
    assert rep.steps == 30 and not rep.interrupted
    # The two slowed steps miss; a loaded machine may add misses of its own.
    assert 2 <= rep.deadline_misses < rep.steps
    assert rep.nonfinite_obs == 1 and rep.bad_shape_obs == 1
    assert rep.robot_errors == 2 and "robot.act" in (rep.last_error or "")
    # every step but the three bad observations and the late ones acts on the graph's action
    assert 30 - 3 - rep.deadline_misses <= rep.graph_actions <= 30 - 3 - 2
    assert rep.latency.n == 30 and rep.latency.p50_ms <= rep.latency.p99_ms <= rep.latency.max_ms
    assert rep.robot == {"ticks": 30}
    assert all(np.isfinite(a).all() and a.shape == (ACT_DIM,) for a in robot.actions)


def test_session_errors_are_counted_and_replaced(grbal_dir):
    class Broken(ControllerSession):
        def compute(self, feed, deadline=None):
            raise RuntimeError("ORT exploded")

    s = Broken(grbal_dir)
    rep = run(ScriptedRobot(), s, rate_hz=500, duration_s=0.02, pace=False)
    assert rep.session_errors == rep.steps == 10 and "ORT exploded" in rep.last_error
    assert rep.graph_actions == 0


def test_wrong_observation_size_is_refused_before_the_first_step(grbal_dir):
    robot = ScriptedRobot(obs_dim=OBS_DIM + 1)
    with pytest.raises(ObservationError, match=r"shape \(18,\).*expects \(17,\)"):
        run(robot, ControllerSession(grbal_dir), rate_hz=100, duration_s=0.1)
    assert robot.actions == []


def test_bad_run_arguments_are_refused(grbal_dir):
    s = ControllerSession(grbal_dir)
    with pytest.raises(ValueError, match="rate_hz"):
        run(ScriptedRobot(), s, rate_hz=0, duration_s=1)
    with pytest.raises(ValueError, match="duration_s"):
        run(ScriptedRobot(), s, rate_hz=10, duration_s=float("nan"))
    with pytest.raises(ValueError, match="safe_action"):
        ControllerSession(Path("unused"), safe_action="brake")


def test_run_holds_the_rate(grbal_dir):
    # Paced: 20 ticks at 50 Hz cannot finish before the 20th tick is due (no upper bound on
    # time: a loaded machine may run late, and that is what the miss counter reports).
    rep = run(ScriptedRobot(), ControllerSession(grbal_dir), rate_hz=50, duration_s=0.4)
    assert rep.steps == 20 and rep.duration_s >= 19 * 0.02
    assert rep.achieved_rate_hz <= 50 * 20 / 19 + 1e-9


def test_garbage_collector_is_paused_during_the_run_only(grbal_dir):
    import gc

    seen = []
    assert gc.isenabled()
    run(ScriptedRobot(), ControllerSession(grbal_dir), rate_hz=200, duration_s=0.03,
        on_tick=lambda info: seen.append(gc.isenabled()))
    assert seen and not any(seen)  # no collection pause can land on a control step
    assert gc.isenabled()
    with pytest.raises(ObservationError):  # also restored when the run is refused
        run(ScriptedRobot(obs_dim=OBS_DIM + 1), ControllerSession(grbal_dir), rate_hz=100,
            duration_s=0.1)
    assert gc.isenabled()


def test_threads_are_not_left_running(grbal_dir):
    before = threading.active_count()
    s = ControllerSession(grbal_dir)
    s.step(np.zeros(OBS_DIM), deadline=time.perf_counter() + 1)
    s.close()
    time.sleep(0.05)
    assert threading.active_count() == before


# --------------------------------------------------------------------------------------------
# Runtime vs the torch controller, closed loop in the simulator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grbal_mppi", "mbde_rs"])
def test_runtime_reproduces_the_torch_controller_in_closed_loop(artifacts, name):
    """Same noise draws, same observations: the runtime's actions equal the torch
    AdaptiveController's over a whole episode (window filling, MB+DE state, MPPI warm
    start all handled by the runtime)."""
    from adaptive_control.control import AdaptiveController
    from adaptive_control.planning import make_planner
    from export.runtime.sim_robot import SimRobot
    from sims.rewards import task_reward

    learner, cfg, out = artifacts[name]
    robot = SimRobot("cheetah", "disabled:bthigh", seed=3)
    lo, hi = robot.robot.action_bounds
    s = ControllerSession(out, robot="cheetah")
    planner = make_planner(cfg.planner, torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    ctrl = AdaptiveController(learner, planner, task_reward(robot.robot), m=cfg.m, seed=5)
    obs = robot.reset()
    worst = 0.0
    for _ in range(3 * cfg.m):
        gen = torch.Generator()
        gen.set_state(ctrl.generator.get_state())
        draw = torch.rand if s.uniform_noise else torch.randn
        s._noise = draw(s.noise_shape, generator=gen, dtype=torch.float32).numpy()
        a_rt = s.step(obs)
        a_torch = ctrl(obs.astype(np.float32))
        worst = max(worst, float(np.max(np.abs(a_rt - a_torch))))
        robot.act(a_torch)
        obs = robot.observe()
    assert worst <= 1e-4
    assert s.counters["graph_actions"] == 3 * cfg.m


# --------------------------------------------------------------------------------------------
# The simulated robot
# --------------------------------------------------------------------------------------------


def test_sim_robot_switches_condition_and_keeps_state():
    from export.runtime.sim_robot import SimRobot

    r = SimRobot("cheetah", "healthy", seed=0, switches=[(0.05, "disabled:bthigh")])
    obs = r.reset()
    assert obs.shape == (r.obs_dim,) and r.metrics()["condition"] == "healthy"
    for _ in range(5):
        r.act(np.ones(r.act_dim))
    before = r.observe()
    r.act(np.ones(r.act_dim))
    m = r.metrics()
    assert m["condition"] == "disabled(bthigh)" and m["sim_steps"] == 6
    assert np.abs(r.observe()[:8] - before[:8]).max() < 0.1  # positions continue
    assert set(m) >= {"return", "distance", "speed", "diverged"}
    with pytest.raises(ValueError, match="action holds NaN"):
        r.act(np.full(r.act_dim, np.nan))
    with pytest.raises(ValueError, match=r"switch time 0.02: allowed .* after the previous"):
        SimRobot("cheetah", switches=[(0.05, "slope:5"), (0.02, "healthy")])
    with pytest.raises(ValueError, match="bthigh2"):
        SimRobot("cheetah", "disabled:bthigh2")


def test_sim_robot_realtime_follows_the_wall_clock():
    from export.runtime.sim_robot import SimRobot

    r = SimRobot("cheetah", realtime=True)
    r.reset()
    time.sleep(0.1)
    r.observe()
    assert 8 <= r.metrics()["sim_steps"] <= 30  # ~10 control steps of 0.01 s


def test_warm_up_changes_nothing_a_step_sees(grbal_dir):
    """warm_up() runs the graph but draws no noise and touches no episode state, so the first
    step after it equals the first step of a session that never warmed up."""
    cold, warm = ControllerSession(grbal_dir, seed=7), ControllerSession(grbal_dir, seed=7)
    warm.warm_up()
    obs = np.linspace(-0.5, 0.5, OBS_DIM)
    for _ in range(3):
        np.testing.assert_array_equal(cold.step(obs), warm.step(obs))
    assert warm.counters["steps"] == 3 and len(warm.latencies) == 3


# --------------------------------------------------------------------------------------------
# Long runs: bounded memory, the timeline, switch schedules, the report
# --------------------------------------------------------------------------------------------


def test_timeline_windows_and_switches_land_in_the_right_windows(grbal_dir):
    from export.runtime.sim_robot import SimRobot

    robot = SimRobot("cheetah", "healthy", seed=1,
                     switches=[(0.25, "disabled:bthigh"), (0.45, "slope:5")])
    rep = run(robot, ControllerSession(grbal_dir), rate_hz=100, duration_s=0.65, pace=False,
              window_s=0.1)
    rows = rep.timeline
    # six full windows of 10 ticks and the partial last one
    assert [r["steps"] for r in rows] == [10] * 6 + [5]
    np.testing.assert_allclose([r["t_s"] for r in rows], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65])
    # the condition at each window's end: the switch at 0.25 s is inside the third window
    assert [r["condition"] for r in rows] == (["healthy"] * 2 + ["disabled(bthigh)"] * 2
                                              + ["slope(5)"] * 3)
    assert sum(r["deadline_misses"] for r in rows) == rep.deadline_misses
    assert sum(r["overruns"] for r in rows) == rep.overruns == 0
    for r in rows:
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] <= rep.latency.max_ms
        assert 0.0 <= r["flipped"] <= r["tilted"] <= 1.0 and r["memory_mb"] > 0
        assert np.isfinite(r["speed"]) and np.isfinite(r["mean_speed"])
    np.testing.assert_allclose(rows[-1]["distance"], rep.robot["distance"])
    # the mean speeds over the windows add up to the distance travelled
    np.testing.assert_allclose(sum(r["mean_speed"] * r["steps"] * 0.01 for r in rows),
                               rep.robot["distance"], atol=1e-9)
    assert rep.memory["growth_mb"] == rows[-1]["memory_mb"] - rows[0]["memory_mb"]
    # a run shorter than one window has one row, and no growth to report
    short = run(ScriptedRobot(), ControllerSession(grbal_dir), rate_hz=100, duration_s=0.05,
                pace=False)
    assert [r["steps"] for r in short.timeline] == [5] and short.memory["growth_mb"] is None
    assert short.timeline[0]["condition"] is None  # the scripted robot reports no condition
    with pytest.raises(ValueError, match="window_s=0: allowed"):
        run(ScriptedRobot(), ControllerSession(grbal_dir), rate_hz=100, duration_s=1,
            window_s=0)


def test_sim_robot_counts_flipped_and_tilted_steps():
    from export.runtime.sim_robot import SimRobot
    from sims.physics import FLIPPED_UPRIGHT, TILTED_UPRIGHT

    r = SimRobot("cheetah", seed=0)
    r.reset()
    flipped = tilted = 0
    for i in range(300):  # full torque, alternating every 20 steps: the cheetah tumbles
        r.act(np.full(r.act_dim, 1.0 if (i // 20) % 2 else -1.0))
        flipped += r.physics.upright() < FLIPPED_UPRIGHT
        tilted += r.physics.upright() < TILTED_UPRIGHT
    m = r.metrics()
    assert m["flipped_steps"] == flipped and m["sim_steps"] == 300
    assert m["tilted_steps"] == tilted and tilted > flipped > 0


class SteadyRobot(ScriptedRobot):
    """The scripted plant without the record of its actions: it keeps nothing per tick."""

    def act(self, action: np.ndarray) -> None:
        self.t += 1
        self.x = 0.95 * self.x + 0.05 * np.resize(action, self.obs_dim)


def _ticks_memory(grbal_dir, n_ticks: int) -> int:
    """Python memory (tracemalloc) allocated between run()'s first and last tick."""
    import tracemalloc

    seen: list[int] = []

    def on_tick(info):
        if info["tick"] in (0, n_ticks - 1):
            seen.append(tracemalloc.get_traced_memory()[0])

    session = ControllerSession(grbal_dir)
    tracemalloc.start()
    try:
        run(SteadyRobot(), session, rate_hz=100, duration_s=n_ticks / 100, pace=False,
            window_s=1e6, on_tick=on_tick)
    finally:
        tracemalloc.stop()
    return seen[1] - seen[0]


def test_memory_does_not_grow_with_the_number_of_ticks(grbal_dir):
    """Nothing is kept per tick: a 10x longer run allocates no more while it runs. A Python
    list of float latencies costs 32 bytes a tick (a pointer and a float object); the session's
    and the loop's lists would have grown by ~290 kB over the extra 4500 ticks."""
    short, long = _ticks_memory(grbal_dir, 500), _ticks_memory(grbal_dir, 5000)
    assert long - short < 16_000, (short, long)


def test_idle_time_collects_a_cycle_leaked_every_tick(grbal_dir):
    """The collector stays paused during the run, but the young generations are collected in
    idle time: a robot that drops a reference cycle every tick does not pile them up."""
    import gc

    class Node:
        alive = 0

        def __init__(self) -> None:
            Node.alive += 1
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            Node.alive -= 1

    class LeakyRobot(SteadyRobot):
        def act(self, action):
            Node()
            super().act(action)

    peak = []
    rep = run(LeakyRobot(), ControllerSession(grbal_dir), rate_hz=100, duration_s=30,
              pace=False, on_tick=lambda info: peak.append(Node.alive) if not gc.isenabled()
              else None)
    assert rep.steps == 3000 and rep.idle_collections > 0
    assert len(peak) == 3000 and max(peak) < 1000  # without the collections: 3000


def test_deploy_writes_the_report_the_timeline_and_the_plot(grbal_dir, tmp_path, capsys,
                                                           monkeypatch):
    from export.runtime.cli import _Status, main

    out = tmp_path / "soak"
    assert main(["deploy", str(grbal_dir), "--robot", "sim:cheetah", "--duration", "0.5",
                 "--fast", "--window", "0.1", "--switch", "0.15=disabled:bthigh",
                 "--switch", "0.35=slope:5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # a log (not a terminal) gets the status line every LOG_EVERY_S seconds: none in 50 fast
    # ticks, a line with elapsed / ETA and step / total when the interval is shorter
    assert "ETA" not in text
    monkeypatch.setattr(_Status, "LOG_EVERY_S", 0.0)
    assert main(["deploy", str(grbal_dir), "--robot", "sim:cheetah", "--duration", "0.05",
                 "--fast"]) == 0
    status = [line for line in capsys.readouterr().out.splitlines() if "ETA" in line]
    assert len(status) == 5 and "step 5/5" in status[-1] and status[-1].startswith("0:00:00 / ")
    summary = text.splitlines()[-3]
    for part in ("deadline misses", "latency p50", "memory growth", "errors 0"):
        assert part in summary
    report = json.loads((out / "report.json").read_text())
    assert [r["condition"] for r in report["timeline"]] == (
        ["healthy", "disabled(bthigh)", "disabled(bthigh)", "slope(5)", "slope(5)"])
    assert report["switches"] == [{"t_s": 0.15, "condition": "disabled(bthigh)"},
                                  {"t_s": 0.35, "condition": "slope(5)"}]
    assert report["report"]["steps"] == 50 and report["errors"] == 0
    assert set(report["memory"]) == {"first_mb", "last_mb", "growth_mb", "growth_pct"}
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("switches,allowed", [
    (["abc"], "allowed T=COND"),
    (["1"], "allowed T=COND"),
    (["0=slope:5"], "allowed a time after 0 s"),
    (["-1=slope:5"], "allowed a time after 0 s"),
    (["0.2=slope:5", "0.1=healthy"], "after the previous switch's 0.2 s"),
    (["0.2=slope:5", "0.2=healthy"], "after the previous switch's 0.2 s"),
    (["5=slope:5"], "before --duration 1 s"),
    (["0.5=disabled:bthigh2"], "allowed bthigh, bshin"),
    (["0.5=wobbly"], "wobbly"),
])
def test_bad_switches_are_refused_before_any_work(switches, allowed, tmp_path, capsys):
    from export.runtime.cli import main

    # the export folder does not exist: the switches are refused before it is opened
    argv = ["deploy", str(tmp_path / "no-export"), "--robot", "sim:cheetah", "--duration", "1",
            "--out", str(tmp_path / "out")]
    argv += [f"--switch={s}" for s in switches]  # "=": argparse takes "-1=..." for a flag
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--switch {switches[-1]!r}" in err and allowed in err
    assert not (tmp_path / "out").exists()
