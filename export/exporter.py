"""Export a trained learner to ONNX: dynamics, adaptation and the whole controller step.

``export_checkpoint(path, out_dir)`` (or ``export_learner(learner, cfg, out_dir)``) writes

* ``dynamics.onnx`` — the dynamics model with θ* and its normaliser (ReBAL: one RNN step with
  the hidden state as input and output);
* ``adapt_step.onnx`` (GrBAL, MB+DE) — recent window -> adapted weights, one output per
  weight tensor; ``encode.onnx`` (ReBAL) — recent window -> context;
* ``controller.onnx`` — adapt and plan in one graph, the task reward inside;
* ``manifest.json`` — the shared metadata, file list and the parity figures.

An :class:`~adaptive_control.learners.Ensemble` (MB, GrBAL or MB+DE members) exports into the
same files: per-member tensors get a leading member axis, the controller plans with every
member's rollouts and averages their returns, and the metadata holds ``ensemble`` (the member
count); an ensemble of one exports as its member.

The graphs are written into a staging folder next to ``out_dir`` and moved into place only
once they pass: each is checked with ``onnx.checker`` and, unless ``verify=False``, compared
with the
library's own torch code in ONNX Runtime on random inputs and on a trajectory recorded in
simulation with the torch :class:`~adaptive_control.control.AdaptiveController`.
The contract (names, shapes, metadata keys) is in :mod:`export.runtime.artifacts` and
docs/export.md; the parity checks are in :mod:`export.parity`, the graphs in
:mod:`export.graphs`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor

from adaptive_control.checkpoint import load_checkpoint, package_version
from adaptive_control.devices import module_device
from adaptive_control.learners import Ensemble, Learner
from adaptive_control.planning import PlannerConfig, switch_planner, with_settings
from adaptive_control.runs import checkpoint_path, split_runs
from adaptive_control.training.config import TrainConfig
from export import presets
from export.graphs.adapters import MODES, GraphDef, TensorSpec, make_adapter, recent_specs
from export.graphs.modules import ControllerGraph, RewardGraph
from export.parity import (
    PARITY_TOL,
    RecordedStep,
    max_parity_error,
    members_of,
    ort_session,
    precision_error,
    random_feed,
    read_metadata,
    record_trajectory,
    single_member,
    verify_export,
)
from export.precision import PRECISION_DOCS, Conversion, check_precision, convert
from export.runtime import artifacts as C
from export.runtime.loop import LatencyStats
from sims.atomic import commit_folder, staged_folder
from sims.registry import get_family
from sims.rewards import TaskReward, task_reward
from sims.robots import Robot
from sims.specs import artifact_spec

OPSET = 20


# --------------------------------------------------------------------------------------------
# Planner selection
# --------------------------------------------------------------------------------------------


def export_planner(base: PlannerConfig, name: str | None = None,
                   num_candidates: int | None = None, horizon: int | None = None,
                   overrides: Mapping[str, Any] | None = None) -> PlannerConfig:
    """The planner to bake in: the training config's, with the given fields replaced.

    ``overrides`` are fields of the planner's config dataclass (e.g. ``warm_start``,
    ``num_iterations``); unknown fields are refused with the allowed ones listed.
    """
    config = base if name is None else switch_planner(base, name)
    sizes = {k: v for k, v in (("num_candidates", num_candidates), ("horizon", horizon))
             if v is not None}
    return with_settings(config, **{**sizes, **(overrides or {})})


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def _learner_name(learner: Learner) -> str:
    return type(members_of(learner)[0]).name


#: The manifest's prose for each adaptation mode.
ADAPTATION_DOCS = {
    "reset": "SGD on the masked-mean normalised-delta MSE of the recent window, from the "
             "trained weights every call; all-zero mask -> trained weights",
    "online": "SGD from trained weights + state_in (the carried online change); the new "
              "change is returned as state_out; all-zero mask -> no update",
    "encode": "RNN over the valid rows of the recent window (masked rows skipped); the final "
              "hidden state is a fixed context for every planning step; all-zero mask -> zero "
              "context, dataset-mean previous delta",
    "encode_gains": "one GRU shared by all motors reads the valid rows of the recent window "
                    "into a command gain per motor, folded into the MLP's first layer for "
                    "planning; all-zero mask -> every gain 1",
    "none": "no adaptation: the recent window is ignored",
}


def adaptation_info(learner: Learner) -> dict[str, Any]:
    """How the adaptation inside the graphs works, for metadata and docs (from the learner's
    :meth:`~adaptive_control.learners.Learner.adaptation` description)."""
    ad = learner.adaptation()
    info: dict[str, Any] = {"mode": MODES[ad.kind]}
    if ad.sgd:
        assert ad.inner_lr is not None
        info.update(inner_steps=ad.inner_steps,
                    inner_lr=None if ad.meta_sgd else float(ad.inner_lr),  # type: ignore[arg-type]
                    meta_sgd=ad.meta_sgd)
        if ad.inner_max_norm > 0:
            info["inner_max_norm"] = ad.inner_max_norm
    if ad.kind == "recurrent":
        info["cell"] = ad.cell
    if ad.hidden_size is not None:
        info["hidden_size"] = ad.hidden_size
    return {**info, "doc": ADAPTATION_DOCS[info["mode"]]}


def _normalizer_dict(learner: Learner) -> dict[str, list[float]]:
    n = learner.normalizer
    return {k: getattr(n, k).detach().double().tolist() for k in
            ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")}


def reward_metadata(reward: TaskReward) -> dict[str, Any]:
    """The reward's parameters and formula, for metadata and manifests."""
    return {**dataclasses.asdict(reward),
            "formula": "next_obs[forward_index] - ctrl_cost * sum(act^2) + alive_bonus * "
                       "u - tilt_penalty * clip((tilt_threshold - u) / 0.1, 0, 1), where the "
                       "uprightness u = 1 - 2 (q_x^2 + q_y^2) with q = "
                       "next_obs[quat_index:quat_index+4] when quat_index is set, else "
                       "cos(next_obs[pitch_index]) when pitch_index is set (no u terms "
                       "without either)"}


def _version(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # not installed as a distribution
        return "unknown"


def common_metadata(learner: Learner, cfg: TrainConfig, robot: Robot,
                    planner: PlannerConfig) -> dict[str, Any]:
    lo, hi = robot.action_bounds
    return {
        "format": C.FORMAT, "format_version": C.FORMAT_VERSION,
        "robot": robot.name, "family": cfg.family, "learner": _learner_name(learner),
        "package_version": package_version(),
        "obs_dim": robot.obs_dim, "act_dim": robot.act_dim,
        "obs_layout": [{"name": p.name, "start": p.start, "size": p.size}
                       for p in robot.obs_parts],
        "action_low": [float(x) for x in lo], "action_high": [float(x) for x in hi],
        "control_timestep": robot.control_timestep,
        **artifact_spec(get_family(cfg.family)),
        "m": cfg.m,
        "normalizer": _normalizer_dict(learner),
        "reward": reward_metadata(task_reward(robot)),
        "adaptation": adaptation_info(learner),
        **({"ensemble": len(members_of(learner))} if isinstance(learner, Ensemble) else {}),
        "planner": dataclasses.asdict(planner),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxscript": _version("onnxscript"), "opset": OPSET},
    }


def write_metadata(path: Path, meta: Mapping[str, Any], doc: str) -> None:
    """Store every metadata value as a JSON text, then run the ONNX checker."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
    model.producer_name = "adaptive-control"
    model.producer_version = package_version()
    model.doc_string = doc
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


# --------------------------------------------------------------------------------------------
# torch -> ONNX
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporter prints progress and registration warnings; keep the CLI readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def _export(module: torch.nn.Module, args: tuple[Tensor, ...], path: Path,
            input_names: list[str], output_names: list[str],
            dynamic_shapes: Any = None) -> None:
    module.eval()
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names,
                          output_names=output_names, dynamo=True, external_data=False,
                          opset_version=OPSET, dynamic_shapes=dynamic_shapes, verbose=False)


def _zeros(spec: TensorSpec, batch: int = 4) -> Tensor:
    return torch.zeros(tuple(batch if isinstance(d, str) else d for d in spec.shape))


@dataclass
class GraphInfo:
    role: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    out_dir: Path
    graphs: dict[str, GraphInfo]
    manifest: dict[str, Any]
    parity: dict[str, dict[str, float]]
    #: controller step latency measured at export (:func:`step_latency`), or None
    latency: dict[str, Any] | None = None

    @property
    def max_error(self) -> float:
        return max_parity_error(self.parity)


def export_graph(module: torch.nn.Module, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 path: Path, meta: Mapping[str, Any], doc: str) -> GraphInfo:
    """Export ``module`` (fixed shapes, traced on zeros) to ``path`` with ``meta`` plus the
    graph's ``inputs``/``outputs`` specs as its metadata; ``meta["graph"]`` names the role."""
    _export(module, tuple(_zeros(s) for s in inputs), path, [s.name for s in inputs],
            [s.name for s in outputs])
    write_metadata(path, {**meta, "inputs": [s.to_dict() for s in inputs],
                          "outputs": [s.to_dict() for s in outputs]}, doc)
    return GraphInfo(str(meta["graph"]), path, inputs, outputs)


def export_reward_graph(robot: Robot, path: Path, meta: Mapping[str, Any] | None = None
                        ) -> GraphInfo:
    """``reward.onnx``: ``sims.rewards.task_reward(robot)`` traced as a graph
    ``(obs [1, do], act [1, da], next_obs [1, do]) -> reward [1]``, so a runtime computes the
    reward with the simulator's own arithmetic instead of a copy of it."""
    do, da = robot.obs_dim, robot.act_dim
    reward = task_reward(robot)
    ins = [TensorSpec(C.OBS, (1, do), "observation s_t"),
           TensorSpec(C.ACT, (1, da), "action a_t executed after s_t"),
           TensorSpec(C.NEXT_OBS, (1, do), "observation s_{t+1} that followed")]
    outs = [TensorSpec(C.REWARD, (1,), "r_t of the transition (s_t, a_t, s_{t+1})")]
    full = {"format": C.FORMAT, "format_version": C.FORMAT_VERSION, **(meta or {}),
            "graph": "reward", "robot": robot.name, "obs_dim": do, "act_dim": da,
            "reward": reward_metadata(reward)}
    return export_graph(RewardGraph(reward), ins, outs, path, full,
                        f"adaptive-control task reward of {robot.name}; see docs/export.md")


def _controller_graph(adapter: Any, planner: PlannerConfig, reward: TaskReward, robot: Robot,
                      out: Path, m: int, dynamic_candidates: bool = False,
                      filename: str = C.CONTROLLER_FILE) -> GraphInfo:
    do, da = robot.obs_dim, robot.act_dim
    lo, hi = robot.action_bounds
    graph = ControllerGraph(adapter, planner, reward, torch.tensor(lo), torch.tensor(hi))
    h = planner.horizon
    noise_shape: tuple[int | str, ...] = planner.noise_shape(da)
    dyn = None
    if dynamic_candidates:
        if planner.name == "cem":
            raise ValueError("dynamic_candidates: CEM's elite count depends on N; export CEM "
                             "with a fixed number of candidates")
        noise_shape = ("N", *noise_shape[1:])
    dist = ("uniform in [0, 1)" if planner.noise_distribution == "uniform"
            else "standard normal")
    ins = recent_specs(m, do, da) + [
        TensorSpec(C.OBS, (do,), "current observation"),
        TensorSpec(C.NOISE, noise_shape, f"fresh i.i.d. {dist} samples every call"),
    ]
    if graph.has_prev_plan:
        ins.append(TensorSpec(C.PREV_PLAN, (h, da), "the plan output of the previous call "
                              "(the graph shifts it by one step); initial_plan at reset"))
    ins += adapter.state_specs()
    outs = [TensorSpec(C.ACTION, (da,), "action to apply now (within the action bounds)"),
            TensorSpec(C.PLAN, (h, da), "the whole planned sequence; row 0 is the action")]
    outs += [TensorSpec(C.STATE_OUT_PREFIX + s.name[len(C.STATE_IN_PREFIX):], s.shape,
                        f"feed back as {s.name} next call") for s in adapter.state_specs()]
    args = [_zeros(s) for s in ins]
    mid = (torch.tensor(lo, dtype=torch.float32) + torch.tensor(hi, dtype=torch.float32)) / 2
    if graph.has_prev_plan:
        args[ins.index(next(s for s in ins if s.name == C.PREV_PLAN))] = mid.expand(h, da).clone()
    if dynamic_candidates:
        n_dim = torch.export.Dim("candidates", min=2, max=1 << 20)
        dyn = {"args": tuple({0: n_dim} if s.name == C.NOISE else None for s in ins)}
    path = out / filename
    _export(graph, tuple(args), path, graph.input_names(), graph.output_names(), dyn)
    extra = {
        "noise": {"input": C.NOISE, "shape": list(noise_shape),
                  **({"distribution": "uniform", "low": 0.0, "high": 1.0}
                     if planner.noise_distribution == "uniform"
                     else {"distribution": "normal", "mean": 0.0, "std": 1.0}),
                  "doc": f"{dist}, float32, drawn fresh by the caller every call"},
        "initial_plan": mid.expand(h, da).tolist() if graph.has_prev_plan else None,
        "window": {"m": m, "order": "oldest first, newest in row M-1",
                   "prior_mask": "all zeros", "default_policy": "pass an all-zero mask until "
                   "M transitions exist (the torch AdaptiveController's behaviour), then ones"},
    }
    return GraphInfo("controller", path, ins, outs, extra)


#: Graph inputs the planning path starts from, per role: the rollouts of the candidates
#: (:mod:`export.precision` converts the products downstream of them).
PLANNING_INPUTS = {"dynamics": (C.OBS, C.ACT), "controller": (C.NOISE,)}


def reduce_precision(stage: Path, graphs: Mapping[str, GraphInfo], precision: str, m: int,
                     recorded: list[RecordedStep], seed: int = 0) -> dict[str, Any]:
    """Convert the staged float32 graphs with a planning path to ``precision`` in place
    (:func:`export.precision.convert`) and measure them against the float32 graphs
    (:func:`export.parity.precision_error`). The adaptation graphs stay float32."""
    info: dict[str, Any] = {"name": precision, "doc": PRECISION_DOCS[precision]}
    if precision == "fp32":
        return info
    converted: dict[str, Path] = {}
    conversions = {}
    for role in PLANNING_INPUTS:
        if role not in graphs:
            continue
        path = graphs[role].path
        converted[role] = path.with_name(f"{path.stem}.{precision}.onnx")
        conversions[role] = convert_file(path, converted[role], precision, role).to_dict()
    errors = precision_error({r: graphs[r].path for r in converted}, converted, m, recorded,
                             seed)
    for role, path in converted.items():
        path.replace(graphs[role].path)
    return {**info, "graphs": conversions, "error_vs_fp32": errors}


def convert_file(src: Path, dest: Path, precision: str, role: str) -> Conversion:
    """:func:`export.precision.convert` of the graph at ``src`` (its planning path starting
    at ``PLANNING_INPUTS[role]``) written to ``dest``, with ``precision`` in its metadata."""
    model = onnx.load(str(src))
    conversion = convert(model, precision, PLANNING_INPUTS[role])
    props = {p.key: p.value for p in model.metadata_props}
    props["precision"] = json.dumps({"name": precision, "doc": PRECISION_DOCS[precision]})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dest))
    onnx.checker.check_model(str(dest))
    return conversion


def step_latency(path: Path, seconds: float = 1.0, min_runs: int = 30) -> dict[str, Any]:
    """p50 / p99 / max of ``controller.onnx``'s step on this machine, one thread, on random
    inputs (warm: a few runs first)."""
    sess = ort_session(path, threads=1)
    feed = random_feed(read_metadata(path), np.random.default_rng(0))
    names = [o.name for o in sess.get_outputs()]
    for _ in range(3):
        sess.run(names, feed)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < end:
        t0 = time.perf_counter()
        sess.run(names, feed)
        times.append(time.perf_counter() - t0)
    st = LatencyStats.of(times)
    return {"p50_ms": st.p50_ms, "p99_ms": st.p99_ms, "max_ms": st.max_ms, "runs": st.n,
            "threads": 1,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(), "loadavg": list(os.getloadavg())}


def _write_graph(role: str, graph: GraphDef, path: Path) -> GraphInfo:
    """Export ``graph`` to ``path``: traced on zeros, or on random rows with a dynamic batch
    dimension for inputs whose first dimension is ``"N"``."""
    ins, outs = graph.inputs, graph.outputs
    batched = [s.shape[0] == "N" for s in ins]
    dyn = None
    if any(batched):
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        args = tuple(torch.randn(4, *s.shape[1:]) if b else torch.ones(s.shape)
                     for s, b in zip(ins, batched, strict=True))
        dyn = {name: ({0: batch} if b else None) for name, b in
               zip(_forward_arg_names(graph.module, len(ins)), batched, strict=True)}
    else:
        args = tuple(_zeros(s) for s in ins)
    _export(graph.module, args, path, [s.name for s in ins], [s.name for s in outs], dyn)
    return GraphInfo(role, path, ins, outs)


def _forward_arg_names(module: torch.nn.Module, n: int) -> list[str]:
    import inspect

    params = list(inspect.signature(module.forward).parameters)
    return params[:n]


def check_ensemble(learner: Learner, cfg: TrainConfig) -> None:
    """The learner must be what ``cfg.ensemble`` says: one model, or an :class:`Ensemble` of
    that many members."""
    k = len(members_of(learner)) if isinstance(learner, Ensemble) else 1
    if k != cfg.ensemble:
        raise ValueError(f"ensemble={cfg.ensemble} in the config, but the learner is "
                         f"{'an ensemble of ' + str(k) if isinstance(learner, Ensemble) else 'one'}"
                         f" model{'s' if k > 1 else ''}: pass the config it was built from")


def on_cpu(learner: Learner) -> Learner:
    """``learner`` itself when it is on the CPU, else a CPU copy (the caller's stays where it
    is): graphs are traced, and the runtime runs, on the CPU whatever device trained it. A
    copy forgets test-time state (MB+DE's online weights do not follow ``.cpu()``)."""
    if module_device(learner).type == "cpu":
        return learner
    moved = copy.deepcopy(learner).cpu()
    moved.reset()
    return moved


def export_learner(learner: Learner, cfg: TrainConfig, out_dir: str | Path, *,
                   planner: str | None = None, num_candidates: int | None = None,
                   horizon: int | None = None, planner_overrides: Mapping[str, Any] | None = None,
                   verify: bool = True, record_steps: int = 40, seed: int = 0,
                   overwrite: bool = False, log: Callable[[str], None] | None = None,
                   precision: str = "fp32", latency_seconds: float = 1.0,
                   deploy_preset: bool = False) -> ExportResult:
    """Export ``learner`` (trained with ``cfg``) into ``out_dir``; see the module docstring.

    Everything is written and checked in a staging folder next to ``out_dir``, which replaces
    ``out_dir`` (an existing export only with ``overwrite``) once the parity check passed; a
    failed check leaves ``out_dir`` as it was. A learner on a GPU is exported from a CPU copy
    (:func:`on_cpu`). ``precision`` other than fp32 converts the planning path of
    ``dynamics.onnx`` and ``controller.onnx`` after the float32 graphs passed parity
    (:func:`reduce_precision`; the manifest records the error against float32).
    ``latency_seconds`` > 0 times the controller step on this machine
    (:func:`step_latency`, in the manifest and :attr:`ExportResult.latency`).
    ``deploy_preset`` takes the planner measured for the robot and ``precision``
    (:func:`export.presets.deploy_preset`); ``num_candidates`` / ``horizon`` still override.
    """
    check_precision(precision)
    check_ensemble(learner, cfg)
    if not latency_seconds >= 0:
        raise ValueError(f"latency_seconds={latency_seconds!r}: allowed a number >= 0")
    say = log or (lambda s: None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: choose a folder")
    if out.exists() and any((out / f).exists() for f in C.GRAPH_FILES.values()) and not overwrite:
        raise FileExistsError(f"--out {out} already holds an export: choose another folder or "
                              "pass --force")
    whole = on_cpu(learner).eval()
    whole.reset()
    learner = single_member(whole)  # an ensemble of one exports as its member
    robot = get_family(cfg.family).robot
    do, da, m = robot.obs_dim, robot.act_dim, cfg.m
    preset = None
    if deploy_preset:
        if planner is not None:
            raise ValueError(f"planner={planner!r} with the deploy preset: give one (the "
                             "preset names its planner)")
        preset = presets.deploy_preset(robot.name, precision)
        planner = preset.planner
        num_candidates = preset.num_candidates if num_candidates is None else num_candidates
        horizon = preset.horizon if horizon is None else horizon
    spec = export_planner(cfg.planner, planner, num_candidates, horizon, planner_overrides)
    reward = task_reward(robot)
    adapter = make_adapter(learner, m)
    meta = common_metadata(whole, cfg, robot, spec)

    with staged_folder(out) as stage:
        graphs: dict[str, GraphInfo] = {}
        say("exporting dynamics.onnx")
        graphs["dynamics"] = _write_graph("dynamics", adapter.dynamics_graph(do, da),
                                          stage / C.DYNAMICS_FILE)
        window = adapter.window_graph(m, do, da)
        if window is not None:
            role, graph = window
            say(f"exporting {C.GRAPH_FILES[role]}")
            graphs[role] = _write_graph(role, graph, stage / C.GRAPH_FILES[role])
        say(f"exporting controller.onnx ({spec.name}, {spec.num_candidates} candidates "
            f"x horizon {spec.horizon})")
        graphs["controller"] = _controller_graph(adapter, spec, reward, robot, stage, m)

        for role, g in graphs.items():
            full = {**meta, "graph": role, "inputs": [s.to_dict() for s in g.inputs],
                    "outputs": [s.to_dict() for s in g.outputs], "state": _state_meta(g),
                    **g.extra}
            write_metadata(g.path, full, f"adaptive-control {role} graph for {robot.name} "
                           f"({meta['learner']}); see docs/export.md")

        parity: dict[str, dict[str, float]] = {}
        recorded = (record_trajectory(learner, cfg, spec, record_steps, seed)
                    if verify or precision != "fp32" else [])
        if verify:
            say("checking ONNX Runtime against torch (random inputs)")
            parity = verify_export(stage, learner, cfg, spec, seed=seed, log=say,
                                   recorded=recorded)
            if not max_parity_error(parity) <= PARITY_TOL:
                raise RuntimeError(f"export parity check failed: max abs error "
                                   f"{max_parity_error(parity):.3g} > {PARITY_TOL:g}; per "
                                   f"graph: {json.dumps(parity)}; {out} was not written")
        if precision != "fp32":
            say(f"converting the planning path to {precision} and measuring it against fp32")
        precision_info = reduce_precision(stage, graphs, precision, m, recorded, seed)
        latency = None
        if latency_seconds > 0:
            latency = {**step_latency(graphs["controller"].path, latency_seconds),
                       "deadline_ms": 0.9e3 * robot.control_timestep,
                       "deadline": "0.9 x the control period (the runtime's default)"}
        manifest = {
            **meta,
            C.KIND: C.KIND_CONTROLLER,
            "precision": precision_info,
            "deploy_preset": preset.measured if preset is not None else None,
            "latency_at_export": latency,
            "files": {role: g.path.name for role, g in graphs.items()},
            "graphs": {role: {"inputs": [s.to_dict() for s in g.inputs],
                              "outputs": [s.to_dict() for s in g.outputs], **g.extra}
                       for role, g in graphs.items()},
            "parity_max_abs_error": parity,
            "parity_tolerance": PARITY_TOL,
        }
        (stage / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        graphs = {role: dataclasses.replace(g, path=out / g.path.name)
                  for role, g in graphs.items()}
        result = ExportResult(out, graphs, manifest, parity, latency)
        commit_folder(stage, out, [*(g.path.name for g in graphs.values()), C.MANIFEST_FILE],
                      stale=[*C.GRAPH_FILES.values(), *C.POLICY_GRAPH_FILES.values()])
    return result


def export_controller(learner: Learner, cfg: TrainConfig, path: str | Path,
                      spec: PlannerConfig | None = None, dynamic_candidates: bool = False,
                      precision: str = "fp32") -> GraphInfo:
    """Only controller.onnx (with metadata) at ``path``, in ``precision`` (no comparison
    with float32: that is :func:`export_learner`'s); ``dynamic_candidates`` leaves the
    number of candidates N free (random shooting and MPPI; for benchmarks — the runtime
    needs a fixed N)."""
    check_precision(precision)
    check_ensemble(learner, cfg)
    robot = get_family(cfg.family).robot
    spec = spec if spec is not None else cfg.planner
    if dynamic_candidates and len(members_of(learner)) > 1:
        raise ValueError(f"dynamic_candidates with an ensemble of {len(members_of(learner))} "
                         "members: export an ensemble with a fixed number of candidates")
    path = Path(path)
    learner = on_cpu(learner)
    meta = common_metadata(learner, cfg, robot, spec)
    g = _controller_graph(make_adapter(single_member(learner).eval(), cfg.m), spec,
                          task_reward(robot), robot, path.parent, cfg.m, dynamic_candidates,
                          path.name)
    write_metadata(path, {**meta, "graph": "controller",
                          "inputs": [s.to_dict() for s in g.inputs],
                          "outputs": [s.to_dict() for s in g.outputs],
                          "state": _state_meta(g), **g.extra},
                   f"adaptive-control controller graph for {robot.name}")
    if precision != "fp32":
        convert_file(path, path, precision, "controller")
    return g


def _state_meta(g: GraphInfo) -> list[dict[str, Any]]:
    return [{"input": s.name, "output": C.STATE_OUT_PREFIX + s.name[len(C.STATE_IN_PREFIX):],
             "shape": list(s.shape), "init": "zeros"}
            for s in g.inputs if s.name.startswith(C.STATE_IN_PREFIX)]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, **kwargs: Any
                      ) -> ExportResult:
    """Load a checkpoint (a ``checkpoint.pt`` or its run folder; several joined by ``+``: the
    runs' learners as one ensemble, ``builders.ensemble_of``) and :func:`export_learner`."""
    from adaptive_control.builders import ensemble_of, learner_from_checkpoint

    runs = []
    for part in split_runs(str(checkpoint)):
        path = checkpoint_path(part)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={part!r}: no checkpoint.pt there")
        runs.append(learner_from_checkpoint(load_checkpoint(path)))
    learner, cfg = ensemble_of(runs)
    return export_learner(learner, cfg, out_dir, **kwargs)


