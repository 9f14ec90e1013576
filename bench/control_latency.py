"""Latency of one full adapt-and-plan control step on one thread: ONNX Runtime vs torch.

The paper's configuration (Nagabandi, Clavera et al., ICLR 2019): GrBAL with a 3 × 512 ReLU
MLP, M = 16 recent transitions, one inner SGD step, 500 candidates × horizon 10 — planned
with MPPI here (one MPPI update per step). Random weights (latency does not depend on
training). Compared on identical weights, candidates and horizon:

- ``onnx``: ``controller.onnx`` (adaptation + MPPI + task reward in one graph) in ONNX
  Runtime, 1 intra-op thread;
- ``onnx_int8`` / ``onnx_bf16``: the same controller exported with ``--precision int8`` /
  ``bf16`` (:mod:`export.precision`: the dynamics weights on the planning path in int8, or
  rounded to bfloat16 with float32 arithmetic);
- ``torch_eager``: the library's own torch controller, ``AdaptiveController`` (GrBAL
  adaptation through ``torch.func.grad`` + ``planners.MPPI``), ``torch.set_num_threads(1)``;
- ``torch_eager_graph``: the export's torch module itself in eager mode (same ops as ONNX);
- ``pytorch_mppi``: ``pytorch_mppi.MPPI.command`` with the adapted model (adaptation via
  ``torch.func``, i.e. ``GrBAL.adapted_params``) — if the package is installed;
- ``matmul``: one plain ONNX Runtime MatMul (square, constant right operand) with the same
  FLOP count as the controller graph (FLOPs counted over the graph's MatMul/Gemm/Einsum and
  elementwise nodes after shape inference);
- ``torch_matmul``: the same product in torch, 1 thread. Any torch controller doing the same
  FLOPs takes at least this long, so ``torch_matmul / onnx`` is the largest ratio against
  pytorch_mppi reachable without doing fewer FLOPs (on this machine's AMD EPYC, MKL reaches
  ~90 GFLOP/s on one thread and ONNX Runtime's MLAS ~190, so the ceiling is ~2.1×).

Then the `small` preset's controller (2 × 256 GrBAL with action gains and a norm-limited
step, MPPI 256 × 15), its adaptation kept as low-rank factors on the constant trained weights
against materialised adapted weights, fp32 and int8 (``small_preset_adaptation``).

Then the largest configuration (candidates × horizon) whose p99 step latency fits the
runtime's default deadline (90 % of the period) at 100 Hz for the cheetah (obs 17, act 6) and
50 Hz for the quadruped (obs 27, act 8), same model and M. Prints readable lines; the last
line is one JSON object. About 2–4 minutes.

    python bench/control_latency.py [--seconds 2.5] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from adaptive_control.control import AdaptiveController
from adaptive_control.learners import GrBAL, GrBALConfig, Learner, make_learner
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.planning import make_planner, planner_config
from adaptive_control.training.config import TrainConfig, load_config
from adaptive_control.types import Transitions
from export.exporter import export_controller
from export.graphs.adapters import make_adapter
from export.graphs.modules import ControllerGraph
from export.parity import random_feed, read_metadata
from export.runtime import artifacts as C
from sims.registry import get_family
from sims.rewards import task_reward

PAPER = {"hidden": (512, 512, 512), "m": 16, "candidates": 500, "horizon": 10}
ROBOTS = {"cheetah": ("cheetah-cripple", 100.0), "quadruped": ("quadruped-leg-failure", 50.0)}
SWEEP_N = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
SWEEP_H = (5, 10, 20)
PRESET_SCORES = Path(__file__).resolve().parents[1] / "docs/results/deploy/cheetah.json"


# --------------------------------------------------------------------------------------------
# The controller: the paper's GrBAL + MPPI with random weights
# --------------------------------------------------------------------------------------------


def paper_learner(family: str = "cheetah-cripple", horizon: int = PAPER["horizon"]
                  ) -> tuple[TrainConfig, Learner]:
    """The paper's configuration on ``family`` with MPPI over ``horizon`` steps: GrBAL with its
    seeded initial weights and a normaliser fitted on random data of the robot's sizes, with
    unequal scales so that normalising is not a no-op."""
    cfg = TrainConfig(learner="grbal", family=family, m=PAPER["m"], k=PAPER["m"],
                      planner=planner_config("mppi", num_candidates=PAPER["candidates"],
                                             horizon=horizon),
                      grbal=GrBALConfig(hidden_sizes=PAPER["hidden"]))
    robot = get_family(family).robot
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.2, 3.0, robot.obs_dim)
    obs = rng.standard_normal((512, robot.obs_dim)) * scale + rng.standard_normal(robot.obs_dim)
    act = rng.uniform(-1, 1, (512, robot.act_dim))
    nxt = obs + 0.1 * scale * rng.standard_normal((512, robot.obs_dim)) + 0.01
    learner = make_learner("grbal", robot.obs_dim, robot.act_dim, cfg.grbal,
                           Normalizer.fit(obs, act, nxt))
    return cfg, learner.eval()


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------


def measure(fn: Callable[[], Any], seconds: float, min_runs: int = 8, max_runs: int = 400,
            warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(out) < min_runs or (time.perf_counter() < t_end and len(out) < max_runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def stats(ts: list[float]) -> dict[str, float]:
    ms = np.asarray(ts) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "mean_ms": float(ms.mean())}


def session(path: str | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------
# FLOPs of a graph
# --------------------------------------------------------------------------------------------

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Max", "Min", "Where",
                "Exp", "Neg", "Sqrt", "Pow", "Clip", "Greater", "Less", "IsNaN", "IsInf",
                "Reciprocal", "Abs"}
_REDUCE = {"ReduceSum", "ReduceMean", "Softmax", "ReduceMax", "TopK", "ArgMax"}


def count_flops(path: str | Path) -> dict[str, int]:
    """Multiply-adds x 2 of MatMul/Gemm/Einsum, plus one per element of elementwise ops."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes: dict[str, list[int]] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    def numel(name: str) -> int:
        s = shapes.get(name)
        return int(np.prod(s)) if s is not None and all(d >= 0 for d in s) else 0

    mm = elem = 0
    unknown = 0
    for node in g.node:
        op = node.op_type
        if op in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if a is None or b is None or out is None or min(a + b + out) < 0:
                unknown += 1
                continue
            k = a[-1] if op == "MatMul" else (a[0] if _attr(node, "transA") else a[1])
            mm += 2 * int(np.prod(out)) * k
        elif op == "Einsum":
            eq = _attr(node, "equation").decode()
            lhs = eq.split("->")[0].split(",")
            sizes: dict[str, int] = {}
            for term, name in zip(lhs, node.input, strict=True):
                for ch, d in zip(term, shapes.get(name, []), strict=False):
                    sizes[ch] = d
            mm += 2 * int(np.prod(list(sizes.values())))
        elif op in _ELEMENTWISE:
            elem += numel(node.output[0])
        elif op in _REDUCE:
            elem += numel(node.input[0])
    return {"matmul": mm, "elementwise": elem, "total": mm + elem, "unknown_nodes": unknown}


def _attr(node: onnx.NodeProto, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return 0


def matmul_model(n: int) -> bytes:
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
    w = helper.make_tensor("w", TensorProto.FLOAT, [n, n],
                           rng.standard_normal(n * n).astype(np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10  # what this onnxruntime reads
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------
# The contenders
# --------------------------------------------------------------------------------------------


def torch_eager(learner: GrBAL, cfg: Any, robot: Any, seconds: float) -> list[float]:
    """The library's AdaptiveController with a full window (adapt + MPPI every call)."""
    lo, hi = robot.action_bounds
    planner = make_planner(planner_config("mppi", num_candidates=cfg.planner.num_candidates,
                                          horizon=cfg.planner.horizon),
                           torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    ctrl = AdaptiveController(learner, planner, task_reward(robot), m=cfg.m, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(cfg.m + 1):  # fill the window
        ctrl(rng.standard_normal(robot.obs_dim))
    return measure(lambda: ctrl(rng.standard_normal(robot.obs_dim)), seconds, min_runs=6,
                   warmup=1)


def torch_graph(learner: GrBAL, cfg: Any, robot: Any, feed: dict[str, np.ndarray],
                seconds: float) -> list[float]:
    lo, hi = robot.action_bounds
    spec = cfg.planner
    g = ControllerGraph(make_adapter(learner, cfg.m), spec, task_reward(robot), torch.tensor(lo),
                        torch.tensor(hi)).eval()
    args = [torch.from_numpy(feed[n]) for n in g.input_names()]

    def step() -> None:
        with torch.no_grad():
            g(*args)

    return measure(step, seconds, min_runs=6, warmup=1)


def pytorch_mppi_step(learner: GrBAL, cfg: Any, robot: Any, feed: dict[str, np.ndarray],
                      seconds: float) -> list[float] | str:
    try:
        from pytorch_mppi import MPPI
    except ImportError as e:
        return f"not installed ({e}); pip install pytorch_mppi"
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in robot.action_bounds)
    reward = task_reward(robot)
    model = learner.model
    holder: dict[str, Any] = {}

    def dynamics(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return model.functional_forward(holder["params"], s, a)

    def cost(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # pytorch_mppi scores the state after the step, as our reward(obs, act, next_obs)
        # does (the reward never reads obs).
        return -reward(s, a, s)

    sigma = cfg.planner.noise_sigma * (hi - lo) / 2
    mppi = MPPI(dynamics, cost, nx=robot.obs_dim, noise_sigma=torch.diag(sigma ** 2),
                num_samples=cfg.planner.num_candidates, horizon=cfg.planner.horizon,
                lambda_=cfg.planner.lambda_, u_min=lo, u_max=hi, device="cpu")
    recent = Transitions(*(torch.from_numpy(feed[k]) for k in C.RECENT_INPUTS[:3]))
    obs = torch.from_numpy(feed[C.OBS])

    def step() -> None:
        with torch.no_grad():
            holder["params"] = learner.adapted_params(recent)
            mppi.command(obs)

    return measure(step, seconds, min_runs=6, warmup=1)


# --------------------------------------------------------------------------------------------
# Sweep: largest configuration that holds the rate
# --------------------------------------------------------------------------------------------


def sweep(robot_name: str, tmp: Path, seconds: float, log: Callable[[str], None]
          ) -> dict[str, Any]:
    family, rate = ROBOTS[robot_name]
    budget_ms = 0.9 * 1e3 / rate
    rows = []
    best: dict[str, dict[str, Any] | None] = {"p99": None, "p50": None}
    for h in SWEEP_H:
        cfg, learner = paper_learner(family, horizon=h)
        path = tmp / f"{robot_name}_h{h}.onnx"
        export_controller(learner, cfg, path, dynamic_candidates=True)
        sess = session(path)
        meta = read_metadata(path)
        rng = np.random.default_rng(0)
        names = [o.name for o in sess.get_outputs()]
        largest: dict[str, int | None] = {"p99": None, "p50": None}
        for n in SWEEP_N:
            feed = random_feed(meta, rng, batch=n)
            st = stats(measure(lambda s=sess, o=names, f=feed: s.run(o, f), seconds / 5,
                               min_runs=40, max_runs=300))
            ok = {q: st[f"{q}_ms"] <= budget_ms for q in ("p99", "p50")}
            rows.append({"horizon": h, "candidates": n, **st, "holds_p99": ok["p99"],
                         "holds_p50": ok["p50"]})
            log(f"  {robot_name:9s} H={h:2d} N={n:5d}  p50 {st['p50_ms']:7.2f}  p99 "
                f"{st['p99_ms']:7.2f} ms  {'ok' if ok['p99'] else 'p99 over'} "
                f"(budget {budget_ms:.1f})")
            for q in ok:
                if ok[q]:
                    largest[q] = n
            # Latency grows with N: stop once even the median misses the budget (a p99 spike
            # on a shared machine does not end the search for the p99 criterion).
            if not ok["p50"]:
                break
        for q, n_max in largest.items():
            cur = best[q]
            if n_max is not None and (cur is None or n_max * h > cur["candidate_steps"]):
                best[q] = {"candidates": n_max, "horizon": h, "candidate_steps": n_max * h}
    return {"rate_hz": rate, "budget_ms": budget_ms,
            "criterion": "p99 (or p50) step latency <= 0.9 x period, one thread",
            "largest_p99": best["p99"], "largest_p50": best["p50"], "rows": rows}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.5, help="timing budget per contender")
    ap.add_argument("--skip-sweep", action="store_true", help="only the paper configuration")
    ap.add_argument("--presets", default=str(PRESET_SCORES),
                    help="scores of the deploy-preset candidates (research/deploy_presets.py "
                         "--out); their steps are timed here ('' to skip)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    log = lambda s: print(s, flush=True)  # noqa: E731
    t_start = time.perf_counter()
    result: dict[str, Any] = {"threads": 1, "loadavg": list(os.getloadavg()),
                              "config": {**PAPER, "hidden": list(PAPER["hidden"]),
                                         "learner": "grbal", "inner_steps": 1,
                                         "planner": "mppi", "robot": "cheetah"}}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cfg, learner = paper_learner()
        robot = get_family(cfg.family).robot
        path = tmp / "controller.onnx"
        t0 = time.perf_counter()
        export_controller(learner, cfg, path)
        log(f"exported the paper-configuration controller in {time.perf_counter() - t0:.1f} s")
        meta = read_metadata(path)
        feed = random_feed(meta, np.random.default_rng(0))
        sess = session(path)
        names = [o.name for o in sess.get_outputs()]
        flops = count_flops(path)

        timings: dict[str, Any] = {}
        timings["onnx"] = stats(measure(lambda: sess.run(names, feed), args.seconds,
                                        min_runs=20))
        log(f"onnx runtime        p50 {timings['onnx']['p50_ms']:8.2f} ms  p99 "
            f"{timings['onnx']['p99_ms']:8.2f} ms")
        for precision in ("int8", "bf16"):
            p_path = tmp / f"controller_{precision}.onnx"
            export_controller(learner, cfg, p_path, precision=precision)
            p_sess = session(p_path)
            key = f"onnx_{precision}"
            timings[key] = stats(measure(lambda s=p_sess: s.run(names, feed), args.seconds,
                                         min_runs=20))
            log(f"onnx runtime {precision}   p50 {timings[key]['p50_ms']:8.2f} ms  p99 "
                f"{timings[key]['p99_ms']:8.2f} ms")
        timings["torch_eager"] = stats(torch_eager(learner, cfg, robot, args.seconds))
        log(f"torch eager         p50 {timings['torch_eager']['p50_ms']:8.2f} ms  "
            "(AdaptiveController: torch.func adaptation + planners.MPPI)")
        timings["torch_eager_graph"] = stats(torch_graph(learner, cfg, robot, feed,
                                                         args.seconds))
        log(f"torch eager (graph) p50 {timings['torch_eager_graph']['p50_ms']:8.2f} ms  "
            "(the exported module run in torch)")
        pm = pytorch_mppi_step(learner, cfg, robot, feed, args.seconds)
        timings["pytorch_mppi"] = stats(pm) if isinstance(pm, list) else {"unavailable": pm}
        if isinstance(pm, list):
            log(f"pytorch_mppi        p50 {timings['pytorch_mppi']['p50_ms']:8.2f} ms")
        else:
            log(f"pytorch_mppi: {pm}")
        n = max(8, round((flops["total"] / 2) ** (1 / 3)))
        mm = session_bytes(matmul_model(n))
        x = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        timings["matmul"] = {**stats(measure(lambda: mm.run(None, {"x": x}), args.seconds,
                                             min_runs=10)),
                             "n": n, "flops": 2 * n ** 3}
        log(f"equal-FLOP matmul   p50 {timings['matmul']['p50_ms']:8.2f} ms  "
            f"({n}x{n} @ {n}x{n}, {2 * n ** 3 / 1e9:.2f} GFLOP; controller "
            f"{flops['total'] / 1e9:.2f} GFLOP, {flops['matmul'] / 1e9:.2f} in MatMul/Gemm)")
        # The same product in torch (1 thread): a torch controller that does the same FLOPs
        # cannot be faster than this, so torch_matmul / onnx bounds what any torch planner
        # (pytorch_mppi included) can be slower by without doing extra work.
        xt = torch.from_numpy(x)
        timings["torch_matmul"] = {**stats(measure(lambda: xt @ xt, args.seconds, min_runs=10)),
                                   "n": n, "flops": 2 * n ** 3}
        log(f"equal-FLOP matmul, torch p50 {timings['torch_matmul']['p50_ms']:8.2f} ms")

        o = timings["onnx"]["p50_ms"]
        o8 = timings["onnx_int8"]["p50_ms"]
        ratios = {
            "fp32_over_int8": o / o8,
            "fp32_over_bf16": o / timings["onnx_bf16"]["p50_ms"],
            "pytorch_mppi_over_int8": (timings["pytorch_mppi"]["p50_ms"] / o8
                                       if "p50_ms" in timings["pytorch_mppi"] else None),
            "torch_eager_over_int8": timings["torch_eager"]["p50_ms"] / o8,
            "torch_eager_over_onnx": timings["torch_eager"]["p50_ms"] / o,
            "torch_eager_graph_over_onnx": timings["torch_eager_graph"]["p50_ms"] / o,
            "pytorch_mppi_over_onnx": (timings["pytorch_mppi"]["p50_ms"] / o
                                       if "p50_ms" in timings["pytorch_mppi"] else None),
            "onnx_over_equal_flop_matmul": o / timings["matmul"]["p50_ms"],
            "onnx_p99_over_p50": timings["onnx"]["p99_ms"] / o,
            # The ceiling of the pytorch_mppi ratio for equal FLOPs: torch's GEMM rate vs ONNX's.
            "torch_equal_flop_matmul_over_onnx": timings["torch_matmul"]["p50_ms"] / o,
        }
        targets = {
            "pytorch_mppi_over_int8 >= 3": (ratios["pytorch_mppi_over_int8"] or 0) >= 3,
            "fp32_over_int8 >= 2": ratios["fp32_over_int8"] >= 2,
            "torch_eager_over_onnx >= 2": ratios["torch_eager_over_onnx"] >= 2,
            "pytorch_mppi_over_onnx >= 3": (ratios["pytorch_mppi_over_onnx"] or 0) >= 3,
            "onnx_over_equal_flop_matmul <= 1.5": ratios["onnx_over_equal_flop_matmul"] <= 1.5,
            "onnx_p99_over_p50 <= 1.5": ratios["onnx_p99_over_p50"] <= 1.5,
        }
        for k, v in ratios.items():
            if v is not None:
                log(f"  {k:32s} {v:6.2f}")
        for k, v in targets.items():
            log(f"  target {k:36s} {'met' if v else 'NOT met'}")
        result.update({"flops": flops, "gflops_per_s_onnx": flops["total"] / (o * 1e6),
                       "timings": timings, "ratios": ratios, "targets": targets})
        if args.presets and Path(args.presets).is_file():
            log("deploy-preset candidates: normalised score (from the file) against the step "
                "timed now (the small preset's 2 x 256 GrBAL with action gains, random weights)")
            result["presets"] = preset_table(Path(args.presets), tmp, args.seconds, log)
        log("the small preset's controller (2 x 256 GrBAL, action gains, inner step limited "
            "to norm 10, MPPI 256 x 15): adaptation as factors vs materialised weights")
        result["small_preset_adaptation"] = factored_vs_dense(tmp, args.seconds, log)
        if not args.skip_sweep:
            log("largest configuration holding the rate (3x512 GrBAL, M=16, MPPI, 1 thread):")
            result["sweep"] = {r: sweep(r, tmp, args.seconds, log) for r in ROBOTS}
            for r, sw in result["sweep"].items():
                log(f"  {r}: {sw['rate_hz']:g} Hz -> p99 criterion {sw['largest_p99']}, "
                    f"p50 criterion {sw['largest_p50']}")
    result["bench_seconds"] = time.perf_counter() - t_start
    print(json.dumps(result))


def small_learner(family: str | None = None) -> tuple[TrainConfig, Learner]:
    """The `small` preset's learner for ``family``'s robot (default: the preset's family),
    random weights, with :func:`paper_learner`'s normaliser."""
    cfg = load_config(preset="small")
    robot = get_family(family or cfg.family).robot
    learner = make_learner(cfg.learner, robot.obs_dim, robot.act_dim, cfg.learner_config,
                           paper_learner()[1].normalizer,
                           actuator_velocity_index=robot.actuator_velocity_index).eval()
    return cfg, learner


def factored_vs_dense(tmp: Path, seconds: float, log: Callable[[str], None]
                      ) -> dict[str, Any]:
    """The small preset's controller (random weights, gains away from 1) exported twice: its
    adapted update kept as low-rank factors on the constant trained weights (what the export
    does) and with the adapted weights materialised in the graph (what it did while the norm
    limit had no factored form); fp32 and int8, timed alternately in this process."""
    from unittest import mock

    from export.graphs.cores import MLPCore

    cfg, learner = small_learner()
    with torch.no_grad():
        learner.model.act_gain.uniform_(0.3, 1.5, generator=torch.Generator().manual_seed(2))
    sessions = {}
    for form in ("factored", "dense"):
        for precision in ("fp32", "int8"):
            out = tmp / f"small_{form}_{precision}.onnx"
            if form == "dense":
                with mock.patch.object(MLPCore, "lowrank_exact", property(lambda self: False)):
                    export_controller(learner, cfg, out, precision=precision)
            else:
                export_controller(learner, cfg, out, precision=precision)
            sessions[f"{form}_{precision}"] = session(out)
    feed = random_feed(read_metadata(tmp / "small_factored_fp32.onnx"), np.random.default_rng(0))
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(4):  # alternate, so a change in machine load hits every contender alike
        for k, sess in sessions.items():
            times[k] += measure(lambda s_=sess: s_.run(None, feed), seconds / 4, min_runs=20)
    out_stats = {k: stats(v) for k, v in times.items()}
    for k, st in out_stats.items():
        log(f"  {k:15s} p50 {st['p50_ms']:6.2f}  p99 {st['p99_ms']:6.2f} ms")
    ratios = {f"dense_over_factored_{p}": out_stats[f"dense_{p}"]["p50_ms"]
              / out_stats[f"factored_{p}"]["p50_ms"] for p in ("fp32", "int8")}
    for k, v in ratios.items():
        log(f"  {k:32s} {v:6.2f}")
    return {"timings": out_stats, "ratios": ratios}


def preset_table(path: Path, tmp: Path, seconds: float, log: Callable[[str], None]
                 ) -> list[dict[str, Any]]:
    """Each scored candidate of ``path``: its score and flipped share as measured there, its
    step p50 / p99 timed now on one thread."""
    scored = json.loads(path.read_text())
    cfg, learner = small_learner(scored.get("family"))
    rows = []
    for s in scored["scored"]:
        spec = planner_config("mppi", num_candidates=s["candidates"], horizon=s["horizon"])
        out = tmp / f"preset_{s['precision']}_{s['candidates']}_{s['horizon']}.onnx"
        export_controller(learner, cfg, out, spec, precision=s["precision"])
        sess = session(out)
        feed = random_feed(read_metadata(out), np.random.default_rng(0))
        st = stats(measure(lambda s_=sess, f=feed: s_.run(None, f), seconds, min_runs=50,
                           max_runs=1000))
        row = {"precision": s["precision"], "candidates": s["candidates"],
               "horizon": s["horizon"], "score": s["score"], "flipped": s["flipped"],
               "speed": s["speed"], "p50_ms": st["p50_ms"], "p99_ms": st["p99_ms"]}
        rows.append(row)
        log(f"  {row['precision']:5s} MPPI {row['candidates']:4d} x {row['horizon']:2d}  score "
            f"{s['score']['mean']:6.2f} ± {s['score']['ci95']:.2f}  flipped "
            f"{s['flipped']['mean']:4.0%}  step p50 {st['p50_ms']:6.2f}  p99 "
            f"{st['p99_ms']:6.2f} ms")
    return rows


def session_bytes(model: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    main()
