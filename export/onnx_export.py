"""Export a trained learner to ONNX: dynamics, adaptation and the whole controller step.

``export_checkpoint(path, out_dir)`` (or ``export_learner(learner, cfg, out_dir)``) writes

* ``dynamics.onnx`` — the dynamics model with θ* and its normaliser (ReBAL: one RNN step with
  the hidden state as input and output);
* ``adapt_step.onnx`` (GrBAL, MB+DE) — recent window -> adapted weights, one output per
  weight tensor; ``encode.onnx`` (ReBAL) — recent window -> context;
* ``controller.onnx`` — adapt and plan in one graph, the task reward inside;
* ``manifest.json`` — the shared metadata, file list and the parity figures.

Each graph is checked with ``onnx.checker`` and, unless ``verify=False``, compared with the
library's own torch code in ONNX Runtime on random inputs and on a trajectory recorded in
simulation with the torch :class:`~adaptive_control.control.AdaptiveController`.
The contract (names, shapes, metadata keys) is in :mod:`export.contract` and docs/export.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
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
from adaptive_control.learners import (
    MB,
    MBDE,
    GrBAL,
    Learner,
    MLPPredictor,
    ReBAL,
    ReBALGains,
    inner_update,
)
from adaptive_control.models.dynamics import MLPDynamics
from adaptive_control.planning import (
    PlannerConfig,
    cem,
    make_planner,
    mppi,
    random_shooting,
    shift_plan,
    switch_planner,
    with_settings,
)
from adaptive_control.runs import checkpoint_path
from adaptive_control.training.config import TrainConfig
from adaptive_control.types import Transitions
from export import contract as C
from export.graphs import (
    AdaptStepGraph,
    ControllerGraph,
    DynamicsGraph,
    EncodeGainsGraph,
    EncodeGraph,
    GainAdapter,
    GainDynamicsGraph,
    MLPAdapter,
    PlannerSpec,
    RecurrentAdapter,
    RecurrentCore,
    RecurrentStepGraph,
    RewardGraph,
    TensorSpec,
    make_adapter,
)
from sims.families import get_family
from sims.rewards import TaskReward, task_reward
from sims.robots import Robot

#: Largest allowed max-abs difference between ONNX Runtime and torch.
PARITY_TOL = 1e-4
OPSET = 20


# --------------------------------------------------------------------------------------------
# Planner selection
# --------------------------------------------------------------------------------------------


def planner_spec(base: PlannerConfig, robot: Robot, name: str | None = None,
                 num_candidates: int | None = None, horizon: int | None = None,
                 overrides: Mapping[str, Any] | None = None) -> PlannerSpec:
    """The planner to bake in: the training config's, with the given fields replaced.

    ``overrides`` are fields of the planner's config dataclass (e.g. ``warm_start``,
    ``num_iterations``); unknown fields are refused with the allowed ones listed.
    """
    config = base if name is None else switch_planner(base, name)
    sizes = {k: v for k, v in (("num_candidates", num_candidates), ("horizon", horizon))
             if v is not None}
    config = with_settings(config, **{**sizes, **(overrides or {})})
    return PlannerSpec(config.name, config)


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def _learner_name(learner: Learner) -> str:
    return type(learner).name


def adaptation_info(learner: Learner) -> dict[str, Any]:
    """How the adaptation inside the graphs works, for metadata and docs."""
    if isinstance(learner, GrBAL):
        lr = learner.inner_lr()
        return {"mode": "reset", "inner_steps": learner.config.inner_steps,
                "inner_lr": None if isinstance(lr, dict) else float(lr),
                "meta_sgd": isinstance(lr, dict),
                "doc": "SGD on the masked-mean normalised-delta MSE of the recent window, "
                       "from the trained weights every call; all-zero mask -> trained weights"}
    if isinstance(learner, MBDE):
        return {"mode": "online", "inner_steps": learner.config.online_steps,
                "inner_lr": learner.config.online_lr, "meta_sgd": False,
                "doc": "SGD from trained weights + state_in (the carried online change); the "
                       "new change is returned as state_out; all-zero mask -> no update"}
    if isinstance(learner, ReBAL):
        return {"mode": "encode", "cell": learner.config.cell,
                "hidden_size": learner.config.hidden_size,
                "doc": "RNN over the valid rows of the recent window (masked rows skipped); the "
                       "final hidden state is a fixed context for every planning step; "
                       "all-zero mask -> zero context, dataset-mean previous delta"}
    if isinstance(learner, ReBALGains):
        return {"mode": "encode_gains", "hidden_size": learner.config.hidden_size,
                "doc": "one GRU shared by all motors reads the valid rows of the recent window "
                       "into a command gain per motor, folded into the MLP's first layer for "
                       "planning; all-zero mask -> every gain 1"}
    return {"mode": "none", "doc": "no adaptation: the recent window is ignored"}


def _normalizer_dict(learner: Learner) -> dict[str, list[float]]:
    n = learner.normalizer
    return {k: getattr(n, k).detach().double().tolist() for k in
            ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")}


def reward_metadata(reward: TaskReward) -> dict[str, Any]:
    """The reward's parameters and formula, for metadata and manifests."""
    return {**dataclasses.asdict(reward),
            "formula": "next_obs[forward_index] - ctrl_cost * sum(act^2) + alive_bonus * "
                       "(1 - 2 (q_x^2 + q_y^2)) with q = next_obs[quat_index:quat_index+4] "
                       "when quat_index is set"}


def _version(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # not installed as a distribution
        return "unknown"


def common_metadata(learner: Learner, cfg: TrainConfig, robot: Robot,
                    planner: PlannerSpec) -> dict[str, Any]:
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
        "m": cfg.m,
        "normalizer": _normalizer_dict(learner),
        "reward": reward_metadata(task_reward(robot)),
        "adaptation": adaptation_info(learner),
        "planner": {"name": planner.name, **dataclasses.asdict(planner.config)},
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxscript": _version("onnxscript"), "opset": OPSET},
    }


def _recent_specs(m: int, do: int, da: int) -> list[TensorSpec]:
    return [
        TensorSpec(C.RECENT_OBS, (m, do), "observations s_t of the last M transitions, oldest "
                   "first (newest in the last row)"),
        TensorSpec(C.RECENT_ACT, (m, da), "actions a_t applied after each s_t"),
        TensorSpec(C.RECENT_NEXT_OBS, (m, do), "observations s_{t+1} that followed"),
        TensorSpec(C.RECENT_MASK, (m,), "1 for a valid row, 0 for an empty one (ignored; may "
                   "hold any values); all zeros -> the unadapted prior"),
    ]


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

    @property
    def max_error(self) -> float:
        return max_parity_error(self.parity)


def max_parity_error(parity: Mapping[str, Mapping[str, float]]) -> float:
    """The largest error of a ``{graph: {check: max abs error}}`` report (NaN if none)."""
    errs = [v for d in parity.values() for v in d.values()]
    return max(errs) if errs else math.nan


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


def _dynamics_graph(learner: Learner, adapter: Any, out: Path, do: int, da: int) -> GraphInfo:
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    if isinstance(adapter, RecurrentAdapter):
        core: RecurrentCore = adapter.core
        hs = core.hidden_size
        ins = [TensorSpec(C.OBS, ("N", do), "observations"),
               TensorSpec(C.ACT, ("N", da), "actions"),
               TensorSpec(C.PREV_DELTA, ("N", do), "previous state change s_t - s_{t-1} (raw "
                          "units; the dataset-mean delta at the start)"),
               TensorSpec(C.HIDDEN, ("N", hs), "RNN hidden state h")]
        outs = [TensorSpec(C.NEXT_OBS, ("N", do), "predicted next observations"),
                TensorSpec(C.NEXT_HIDDEN, ("N", hs), "advanced hidden state")]
        if core.is_lstm:
            ins.append(TensorSpec(C.CELL, ("N", hs), "LSTM cell state c"))
            outs.append(TensorSpec(C.NEXT_CELL, ("N", hs), "advanced cell state"))
        module: torch.nn.Module = _StepWrapper(RecurrentStepGraph(core), core.is_lstm)
    elif isinstance(adapter, GainAdapter):
        ins = [TensorSpec(C.OBS, ("N", do), "observations"),
               TensorSpec(C.ACT, ("N", da), "actions"),
               TensorSpec(C.ACTION_GAINS, (da,), "per-motor command gains (encode.onnx's "
                          "output; ones = the unadapted model)")]
        outs = [TensorSpec(C.NEXT_OBS, ("N", do), "predicted next observations")]
        module = GainDynamicsGraph(adapter.core)
    else:
        ins = [TensorSpec(C.OBS, ("N", do), "observations"),
               TensorSpec(C.ACT, ("N", da), "actions")]
        outs = [TensorSpec(C.NEXT_OBS, ("N", do), "predicted next observations")]
        module = DynamicsGraph(adapter.core)
    batched = [s.shape[0] == "N" for s in ins]
    args = tuple(torch.randn(4, *s.shape[1:]) if b else torch.ones(s.shape)
                 for s, b in zip(ins, batched, strict=True))
    dyn = {name: ({0: batch} if b else None)
           for name, b in zip(_forward_arg_names(module, len(ins)), batched, strict=True)}
    path = out / C.DYNAMICS_FILE
    _export(module, args, path, [s.name for s in ins], [s.name for s in outs], dyn)
    return GraphInfo("dynamics", path, ins, outs)


class _StepWrapper(torch.nn.Module):
    """Fixed-arity forward for the recurrent step (dynamic shapes need named arguments)."""

    def __init__(self, graph: RecurrentStepGraph, lstm: bool) -> None:
        super().__init__()
        # not `self.graph`: that name clashes with torch.fx.GraphModule.graph
        self.step, self.lstm = graph, lstm

    def forward(self, obs: Tensor, act: Tensor, prev_delta: Tensor, hidden: Tensor,
                cell: Tensor | None = None) -> tuple[Tensor, ...]:
        if cell is None:
            return self.step(obs, act, prev_delta, hidden)
        return self.step(obs, act, prev_delta, hidden, cell)


def _forward_arg_names(module: torch.nn.Module, n: int) -> list[str]:
    import inspect

    params = list(inspect.signature(module.forward).parameters)
    return params[:n]


def _adapt_step_graph(adapter: MLPAdapter, out: Path, m: int, do: int, da: int) -> GraphInfo:
    core = adapter.core
    ins = _recent_specs(m, do, da) + adapter.state_specs()
    outs = [TensorSpec(C.ADAPTED_PREFIX + n, s, "adapted weight (PyTorch state_dict layout) "
                       "of the plain MLP; adapted action gains are folded into net.0")
            for n, s in zip(core.param_names, core.param_shapes, strict=True)]
    if adapter.mode == "online":
        outs += [TensorSpec(C.STATE_OUT_PREFIX + n, s, "new online change; feed back as "
                            f"{C.STATE_IN_PREFIX}{n}")
                 for n, s in zip(core.param_names, core.param_shapes, strict=True)]
    path = out / C.ADAPT_STEP_FILE
    _export(AdaptStepGraph(adapter), tuple(_zeros(s) for s in ins), path,
            [s.name for s in ins], [s.name for s in outs])
    return GraphInfo("adapt_step", path, ins, outs)


def _encode_gains_graph(adapter: GainAdapter, out: Path, m: int, do: int, da: int
                        ) -> GraphInfo:
    ins = _recent_specs(m, do, da)
    outs = [TensorSpec(C.ACTION_GAINS, (da,), "per-motor command gains read from the window")]
    path = out / C.ENCODE_FILE
    _export(EncodeGainsGraph(adapter.encoder), tuple(_zeros(s) for s in ins), path,
            [s.name for s in ins], [s.name for s in outs])
    return GraphInfo("encode", path, ins, outs)


def _encode_graph(adapter: RecurrentAdapter, out: Path, m: int, do: int, da: int) -> GraphInfo:
    core = adapter.core
    ins = _recent_specs(m, do, da)
    outs = [TensorSpec(C.CONTEXT_HIDDEN, (core.hidden_size,), "hidden state after the window")]
    if core.is_lstm:
        outs.append(TensorSpec(C.CONTEXT_CELL, (core.hidden_size,), "LSTM cell state after "
                               "the window"))
    outs.append(TensorSpec(C.LAST_DELTA, (do,), "s' - s of the newest valid row (raw units); "
                           "the dataset-mean delta when no row is valid"))
    path = out / C.ENCODE_FILE
    _export(EncodeGraph(core), tuple(_zeros(s) for s in ins), path, [s.name for s in ins],
            [s.name for s in outs])
    return GraphInfo("encode", path, ins, outs)


def _controller_graph(adapter: Any, planner: PlannerSpec, reward: TaskReward, robot: Robot,
                      out: Path, m: int, dynamic_candidates: bool = False,
                      filename: str = C.CONTROLLER_FILE) -> GraphInfo:
    do, da = robot.obs_dim, robot.act_dim
    lo, hi = robot.action_bounds
    graph = ControllerGraph(adapter, planner, reward, torch.tensor(lo), torch.tensor(hi))
    h = planner.config.horizon
    noise_shape: tuple[int | str, ...] = planner.noise_shape(da)
    dyn = None
    if dynamic_candidates:
        if planner.name == "cem":
            raise ValueError("dynamic_candidates: CEM's elite count depends on N; export CEM "
                             "with a fixed number of candidates")
        noise_shape = ("N", *noise_shape[1:])
    dist = ("uniform in [0, 1)" if planner.noise_distribution == "uniform"
            else "standard normal")
    ins = _recent_specs(m, do, da) + [
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


def export_learner(learner: Learner, cfg: TrainConfig, out_dir: str | Path, *,
                   planner: str | None = None, num_candidates: int | None = None,
                   horizon: int | None = None, planner_overrides: Mapping[str, Any] | None = None,
                   verify: bool = True, record_steps: int = 40, seed: int = 0,
                   overwrite: bool = False, log: Callable[[str], None] | None = None
                   ) -> ExportResult:
    """Export ``learner`` (trained with ``cfg``) into ``out_dir``; see the module docstring."""
    say = log or (lambda s: None)
    out = Path(out_dir)
    if out.exists() and any((out / f).exists() for f in C.GRAPH_FILES.values()) and not overwrite:
        raise FileExistsError(f"--out {out} already holds an export: choose another folder or "
                              "pass --force")
    out.mkdir(parents=True, exist_ok=True)
    for f in (*C.GRAPH_FILES.values(), C.MANIFEST_FILE):
        (out / f).unlink(missing_ok=True)
    learner = learner.eval()
    learner.reset()
    robot = get_family(cfg.family).robot
    do, da, m = robot.obs_dim, robot.act_dim, cfg.m
    spec = planner_spec(cfg.planner, robot, planner, num_candidates, horizon, planner_overrides)
    reward = task_reward(robot)
    adapter = make_adapter(learner)
    meta = common_metadata(learner, cfg, robot, spec)

    graphs: dict[str, GraphInfo] = {}
    say("exporting dynamics.onnx")
    graphs["dynamics"] = _dynamics_graph(learner, adapter, out, do, da)
    if isinstance(adapter, MLPAdapter) and adapter.mode != "none":
        say("exporting adapt_step.onnx")
        graphs["adapt_step"] = _adapt_step_graph(adapter, out, m, do, da)
    if isinstance(adapter, RecurrentAdapter):
        say("exporting encode.onnx")
        graphs["encode"] = _encode_graph(adapter, out, m, do, da)
    if isinstance(adapter, GainAdapter):
        say("exporting encode.onnx")
        graphs["encode"] = _encode_gains_graph(adapter, out, m, do, da)
    say(f"exporting controller.onnx ({spec.name}, {spec.config.num_candidates} candidates x "
        f"horizon {spec.config.horizon})")
    graphs["controller"] = _controller_graph(adapter, spec, reward, robot, out, m)

    for role, g in graphs.items():
        full = {**meta, "graph": role, "inputs": [s.to_dict() for s in g.inputs],
                "outputs": [s.to_dict() for s in g.outputs], "state": _state_meta(g), **g.extra}
        write_metadata(g.path, full, f"adaptive-control {role} graph for {robot.name} "
                       f"({meta['learner']}); see docs/export.md")

    parity: dict[str, dict[str, float]] = {}
    if verify:
        say("checking ONNX Runtime against torch (random inputs)")
        parity = verify_export(out, learner, cfg, spec, record_steps=record_steps, seed=seed,
                               log=say)
    manifest = {
        **meta,
        C.KIND: C.KIND_CONTROLLER,
        "files": {role: g.path.name for role, g in graphs.items()},
        "graphs": {role: {"inputs": [s.to_dict() for s in g.inputs],
                          "outputs": [s.to_dict() for s in g.outputs], **g.extra}
                   for role, g in graphs.items()},
        "parity_max_abs_error": parity,
        "parity_tolerance": PARITY_TOL,
    }
    (out / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    result = ExportResult(out, graphs, manifest, parity)
    if verify and not result.max_error <= PARITY_TOL:
        raise RuntimeError(f"export parity check failed: max abs error {result.max_error:.3g} > "
                           f"{PARITY_TOL:g}; per graph: {json.dumps(parity)}")
    return result


def export_controller(learner: Learner, cfg: TrainConfig, path: str | Path,
                      spec: PlannerSpec | None = None, dynamic_candidates: bool = False
                      ) -> GraphInfo:
    """Only controller.onnx (with metadata) at ``path``; ``dynamic_candidates`` leaves the
    number of candidates N free (random shooting and MPPI; for benchmarks — the runtime
    needs a fixed N)."""
    robot = get_family(cfg.family).robot
    spec = spec if spec is not None else planner_spec(cfg.planner, robot)
    path = Path(path)
    g = _controller_graph(make_adapter(learner.eval()), spec, task_reward(robot), robot,
                          path.parent, cfg.m, dynamic_candidates, path.name)
    meta = common_metadata(learner, cfg, robot, spec)
    write_metadata(path, {**meta, "graph": "controller",
                          "inputs": [s.to_dict() for s in g.inputs],
                          "outputs": [s.to_dict() for s in g.outputs],
                          "state": _state_meta(g), **g.extra},
                   f"adaptive-control controller graph for {robot.name}")
    return g


def _state_meta(g: GraphInfo) -> list[dict[str, Any]]:
    return [{"input": s.name, "output": C.STATE_OUT_PREFIX + s.name[len(C.STATE_IN_PREFIX):],
             "shape": list(s.shape), "init": "zeros"}
            for s in g.inputs if s.name.startswith(C.STATE_IN_PREFIX)]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, **kwargs: Any
                      ) -> ExportResult:
    """Load a checkpoint (a ``checkpoint.pt`` or its run folder) and :func:`export_learner`."""
    from adaptive_control.training.loop import learner_from_checkpoint

    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint_path(checkpoint)))
    return export_learner(learner, cfg, out_dir, **kwargs)


# --------------------------------------------------------------------------------------------
# torch references (the library's own code paths)
# --------------------------------------------------------------------------------------------


def _t(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _valid(feed: Mapping[str, np.ndarray]) -> Transitions:
    keep = feed[C.RECENT_MASK] > 0
    return Transitions(_t(feed[C.RECENT_OBS][keep]), _t(feed[C.RECENT_ACT][keep]),
                       _t(feed[C.RECENT_NEXT_OBS][keep]))


def _state_delta(learner: MBDE, feed: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    return {k: _t(feed[C.STATE_IN_PREFIX + k]) for k, _ in learner.model.named_parameters()}


@torch.no_grad()
def reference_adapted(learner: Learner, feed: Mapping[str, np.ndarray]
                      ) -> tuple[Any, dict[str, Tensor] | None]:
    """(predictor, adapted MLP params or None) from the library's learner code."""
    recent = _valid(feed)
    if isinstance(learner, GrBAL):
        if len(recent) == 0:
            return learner.prior(), {k: v.detach() for k, v in
                                     learner.model.named_parameters()}
        params = learner.adapted_params(recent)
        return MLPPredictor(learner.model, params), params
    if isinstance(learner, MBDE):
        theta = dict(learner.model.named_parameters())
        start = {k: theta[k].detach() + d for k, d in _state_delta(learner, feed).items()}
        params = start
        if len(recent) > 0:
            params = inner_update(learner.model, start, recent, learner.config.online_lr,
                                  learner.config.online_steps, create_graph=False)
        return MLPPredictor(learner.model, params), {k: v.detach() for k, v in params.items()}
    if isinstance(learner, ReBAL | ReBALGains):
        return (learner.adapt(recent) if len(recent) else learner.prior()), None
    assert isinstance(learner, MB)
    return learner.prior(), None


@torch.no_grad()
def plan_with_noise(spec: PlannerSpec, predictor: Any, reward: TaskReward, obs: Tensor,
                    noise: Tensor, lo: Tensor, hi: Tensor, prev_plan: Tensor | None) -> Tensor:
    """The plan ``[H, da]`` controller.onnx computes from ``noise`` (and, warm-started, the
    previous plan), by the library's pure planner functions."""
    cfg = spec.config
    mid = (lo + hi) / 2
    if spec.warm_start:
        assert prev_plan is not None
        prior = shift_plan(prev_plan, None if cfg.warm_start_fill == "last" else mid)
    else:
        prior = mid.expand(cfg.horizon, lo.shape[0]).clone()
    if spec.name == "random_shooting":
        plan, _ = random_shooting(predictor, reward, obs, noise, lo, hi, cfg.discount)
        return plan
    if spec.name == "cem":
        return cem(predictor, reward, obs, noise, lo, hi, prior, cfg.init_std * (hi - lo) / 2,
                   cfg.elite_frac, cfg.alpha, cfg.discount)
    return mppi(predictor, reward, obs, noise, prior, lo, hi, cfg.noise_sigma * (hi - lo) / 2,
                cfg.lambda_, cfg.beta, cfg.discount)


@torch.no_grad()
def reference_controller(learner: Learner, spec: PlannerSpec, robot: Robot,
                         feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """controller.onnx's outputs computed with the library: learner + pure planner function."""
    predictor, params = reference_adapted(learner, feed)
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in robot.action_bounds)
    reward = task_reward(robot)
    obs, noise = _t(feed[C.OBS]), _t(feed[C.NOISE])
    prev = _t(feed[C.PREV_PLAN]) if spec.warm_start else None
    plan = plan_with_noise(spec, predictor, reward, obs, noise, lo, hi, prev)
    out = {C.ACTION: plan[0].numpy(), C.PLAN: plan.numpy()}
    if isinstance(learner, MBDE):
        assert params is not None
        for k, v in learner.model.named_parameters():
            out[C.STATE_OUT_PREFIX + k] = (params[k] - v.detach()).numpy()
    return out


@torch.no_grad()
def reference_graph(role: str, learner: Learner, spec: PlannerSpec, robot: Robot,
                    feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of graph ``role`` for ``feed``, computed with the library's torch code."""
    if role == "controller":
        return reference_controller(learner, spec, robot, feed)
    if role == "dynamics":
        obs, act = _t(feed[C.OBS]), _t(feed[C.ACT])
        if isinstance(learner, ReBAL):
            h = _t(feed[C.HIDDEN])
            hidden = (h, _t(feed[C.CELL])) if learner.model.cell == "lstm" else h
            nxt, hn = learner.model.step(obs, act, _t(feed[C.PREV_DELTA]), hidden)
            out = {C.NEXT_OBS: nxt.numpy()}
            if isinstance(hn, tuple):
                out[C.NEXT_HIDDEN], out[C.NEXT_CELL] = hn[0].numpy(), hn[1].numpy()
            else:
                out[C.NEXT_HIDDEN] = hn.numpy()
            return out
        if isinstance(learner, ReBALGains):
            params = {**learner.model.params(), "act_gain": _t(feed[C.ACTION_GAINS])}
            return {C.NEXT_OBS: learner.model.functional_forward(params, obs, act).numpy()}
        return {C.NEXT_OBS: learner.model(obs, act).numpy()}
    if role == "adapt_step":
        _, params = reference_adapted(learner, feed)
        assert params is not None
        assert isinstance(learner.model, MLPDynamics)
        params = learner.model.fold_action_gain(params)  # the graph outputs a plain MLP
        out = {C.ADAPTED_PREFIX + k: v.numpy() for k, v in params.items()}
        if isinstance(learner, MBDE):
            for k, v in learner.model.named_parameters():
                out[C.STATE_OUT_PREFIX + k] = (params[k] - v.detach()).numpy()
        return out
    if role == "encode" and isinstance(learner, ReBALGains):
        gains = (learner.gains(_valid(feed)) if feed[C.RECENT_MASK].any()
                 else torch.ones(learner.model.act_dim))
        return {C.ACTION_GAINS: gains.numpy()}
    if role == "encode":
        assert isinstance(learner, ReBAL)
        pred = learner.adapt(_valid(feed)) if feed[C.RECENT_MASK].any() else learner.prior()
        ctx = pred.context
        out = {C.LAST_DELTA: pred.last_delta.numpy()}
        if isinstance(ctx, tuple):
            out[C.CONTEXT_HIDDEN], out[C.CONTEXT_CELL] = ctx[0].numpy(), ctx[1].numpy()
        else:
            out[C.CONTEXT_HIDDEN] = ctx.numpy()
        return out
    raise ValueError(f"graph role={role!r} is unknown: allowed {', '.join(C.GRAPH_FILES)}")


# --------------------------------------------------------------------------------------------
# Inputs for the parity checks
# --------------------------------------------------------------------------------------------


def random_feed(meta: Mapping[str, Any], rng: np.random.Generator, mask: np.ndarray | None = None,
                batch: int = 7) -> dict[str, np.ndarray]:
    """Plausible random inputs for a graph described by its metadata (``inputs`` etc.)."""
    n = meta["normalizer"]
    lo, hi = np.array(meta["action_low"]), np.array(meta["action_high"])
    om, os_ = np.array(n["obs_mean"]), np.array(n["obs_std"])
    dm, ds = np.array(n["delta_mean"]), np.array(n["delta_std"])
    feed: dict[str, np.ndarray] = {}
    for spec in meta["inputs"]:
        name = spec["name"]
        shape = tuple(batch if isinstance(d, str) else d for d in spec["shape"])
        if name in (C.OBS, C.RECENT_OBS):
            x = om + os_ * rng.standard_normal(shape)
        elif name in (C.ACT, C.RECENT_ACT, C.PREV_PLAN):
            x = rng.uniform(lo, hi, size=shape)
        elif name == C.RECENT_NEXT_OBS:
            x = feed[C.RECENT_OBS] + dm + ds * rng.standard_normal(shape)
        elif name == C.PREV_DELTA:
            x = dm + ds * rng.standard_normal(shape)
        elif name == C.ACTION_GAINS:
            x = 1.0 + 0.5 * rng.standard_normal(shape)
        elif name == C.RECENT_MASK:
            x = mask if mask is not None else np.ones(shape)
        elif name == C.NOISE:
            x = (rng.random(shape) if meta["planner"]["name"] == "random_shooting"
                 else rng.standard_normal(shape))
        elif name.startswith(C.STATE_IN_PREFIX):
            x = 1e-3 * rng.standard_normal(shape)
        else:  # hidden / cell states
            x = np.tanh(rng.standard_normal(shape))
        feed[name] = np.asarray(x, dtype=np.float32)
    return feed


def _masks(m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """All ones, all zeros, a partly filled window (leading rows empty) and a random pattern."""
    partial = np.zeros(m, np.float32)
    partial[m // 2:] = 1
    rand = (rng.random(m) < 0.6).astype(np.float32)
    return [np.ones(m, np.float32), np.zeros(m, np.float32), partial, rand]


@dataclass
class RecordedStep:
    """One step of the torch AdaptiveController in simulation, as controller.onnx sees it."""

    feed: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]  # the torch controller's own action, plan (and state)


@torch.no_grad()
def record_trajectory(learner: Learner, cfg: TrainConfig, spec: PlannerSpec, steps: int,
                      seed: int = 0, condition: Any = None) -> list[RecordedStep]:
    """Run the torch :class:`AdaptiveController` (with the exported planner) in ``AdaptEnv``
    for ``steps`` steps and record each step's controller.onnx inputs and the torch outputs.

    The noise is the controller's own draw (reproduced from its generator state), so the
    expected outputs are exactly what the torch controller did. ``condition`` defaults to the
    family's first held-out condition.
    """
    from adaptive_control.control import AdaptiveController
    from sims.env import AdaptEnv

    family = get_family(cfg.family)
    robot = family.robot
    lo, hi = robot.action_bounds
    planner = make_planner(spec.config, torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    ctrl = AdaptiveController(learner, planner, task_reward(robot), m=cfg.m, seed=seed)
    cond = condition if condition is not None else family.test_conditions[0]
    env = AdaptEnv(robot, cond, episode_steps=max(steps, 1), seed=seed)
    ts = env.reset()
    ctrl.reset()
    m, da = cfg.m, robot.act_dim
    mid = ((lo + hi) / 2).astype(np.float32)
    theta = ({k: v.detach().clone() for k, v in learner.model.named_parameters()}
             if isinstance(learner, MBDE) else {})
    out: list[RecordedStep] = []
    # The window is rebuilt here from what was observed and executed (not read from the
    # controller's internals), so the recording also checks the contract's window layout.
    obs_hist: list[np.ndarray] = []
    act_hist: list[np.ndarray] = []
    for _ in range(steps):
        obs = np.asarray(ts.observation, dtype=np.float32)
        obs_hist = (obs_hist + [obs])[-(m + 1):]
        feed = _window_feed(obs_hist, act_hist, m, robot.obs_dim, da)
        feed[C.OBS] = obs
        gen = torch.Generator().manual_seed(0)
        gen.set_state(ctrl.generator.get_state())
        shape = spec.noise_shape(da)
        draw = torch.rand if spec.noise_distribution == "uniform" else torch.randn
        feed[C.NOISE] = draw(shape, generator=gen, dtype=torch.float32).numpy()
        if spec.warm_start:
            last = planner.last_plan
            feed[C.PREV_PLAN] = (np.tile(mid, (spec.config.horizon, 1)) if last is None
                                 else last.numpy().astype(np.float32))
        if isinstance(learner, MBDE):
            online = learner.online_params()
            for k, v in theta.items():
                feed[C.STATE_IN_PREFIX + k] = (online[k] - v).numpy()
        action = ctrl(obs)
        expected = {C.ACTION: action.astype(np.float32),
                    C.PLAN: planner.last_plan.numpy().astype(np.float32)}
        if isinstance(learner, MBDE):
            online = learner.online_params()
            for k, v in theta.items():
                expected[C.STATE_OUT_PREFIX + k] = (online[k] - v).numpy()
        out.append(RecordedStep(feed, expected))
        act_hist = (act_hist + [action.astype(np.float32)])[-m:]
        ts = env.step(action)
        if ts.last():
            break
    return out


def _window_feed(obs_hist: list[np.ndarray], act_hist: list[np.ndarray], m: int, do: int,
                 da: int) -> dict[str, np.ndarray]:
    """The recent-window inputs for the AdaptiveController's history (prior until M exist)."""
    feed = {C.RECENT_OBS: np.zeros((m, do), np.float32),
            C.RECENT_ACT: np.zeros((m, da), np.float32),
            C.RECENT_NEXT_OBS: np.zeros((m, do), np.float32),
            C.RECENT_MASK: np.zeros(m, np.float32)}
    n = min(len(act_hist), m)
    if len(act_hist) >= m:
        o = np.asarray(obs_hist[-(m + 1):], np.float32)
        feed[C.RECENT_OBS] = o[:-1].copy()
        feed[C.RECENT_NEXT_OBS] = o[1:].copy()
        feed[C.RECENT_ACT] = np.asarray(act_hist[-m:], np.float32)
        feed[C.RECENT_MASK][:] = 1.0
    elif n > 0:  # the rows exist but the torch controller plans with the prior: mask stays 0
        o = np.asarray(obs_hist[-(n + 1):], np.float32)
        feed[C.RECENT_OBS][m - n:] = o[:-1]
        feed[C.RECENT_NEXT_OBS][m - n:] = o[1:]
        feed[C.RECENT_ACT][m - n:] = np.asarray(act_hist[-n:], np.float32)
    return feed


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


def ort_session(path: str | Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_error(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> float:
    """Largest |got − want| over the outputs both have; inf on a shape mismatch or NaN."""
    err = 0.0
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return math.inf
        if g.size:
            d = float(np.max(np.abs(g - w)))
            err = max(err, d if math.isfinite(d) else math.inf)
    return err


def run_session(sess: Any, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feed.items() if k in wanted}),
                    strict=True))


def read_metadata(path: str | Path) -> dict[str, Any]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def verify_export(out_dir: str | Path, learner: Learner, cfg: TrainConfig, spec: PlannerSpec,
                  record_steps: int = 40, seed: int = 0,
                  log: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """Max abs error ONNX Runtime vs torch per graph, on random and on recorded inputs."""
    say = log or (lambda s: None)
    out = Path(out_dir)
    robot = get_family(cfg.family).robot
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, float]] = {}
    sessions = {}
    metas = {}
    for role, fname in C.GRAPH_FILES.items():
        if (out / fname).exists():
            sessions[role] = ort_session(out / fname)
            metas[role] = read_metadata(out / fname)
    for role, sess in sessions.items():
        errs = []
        for mask in _masks(cfg.m, rng):
            feed = random_feed(metas[role], rng, mask)
            errs.append(max_abs_error(run_session(sess, feed),
                                      reference_graph(role, learner, spec, robot, feed)))
        results[role] = {"random": max(errs)}
    if record_steps > 0:
        say(f"checking ONNX Runtime against the torch controller on {record_steps} recorded "
            "simulation steps")
        steps = record_trajectory(learner, cfg, spec, record_steps, seed)
        errs = [max_abs_error(run_session(sessions["controller"], s.feed), s.expected)
                for s in steps]
        results["controller"]["recorded"] = max(errs)
        learner.reset()
        for role in ("dynamics", "adapt_step", "encode"):
            if role not in sessions:
                continue
            errs = [max_abs_error(run_session(sessions[role], f),
                                  reference_graph(role, learner, spec, robot, f))
                    for f in _recorded_feeds(role, steps, metas[role], rng)]
            results[role]["recorded"] = max(errs)
    return results


def _recorded_feeds(role: str, steps: list[RecordedStep], meta: Mapping[str, Any],
                    rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Inputs for the non-controller graphs taken from a recorded trajectory."""
    feeds = []
    if role == "dynamics":
        full = [s.feed for s in steps if s.feed[C.RECENT_MASK].all()] or [steps[-1].feed]
        for f in full[:: max(1, len(full) // 4)]:
            feed = random_feed(meta, rng, batch=f[C.RECENT_OBS].shape[0])
            feed[C.OBS], feed[C.ACT] = f[C.RECENT_OBS], f[C.RECENT_ACT]
            if C.PREV_DELTA in feed:  # true previous deltas along the window
                d = f[C.RECENT_NEXT_OBS] - f[C.RECENT_OBS]
                feed[C.PREV_DELTA] = np.concatenate([np.zeros_like(d[:1]), d[:-1]])
            feeds.append(feed)
        return feeds
    for s in steps:
        feed = {k: s.feed[k] for k in C.RECENT_INPUTS}
        for k, v in s.feed.items():
            if k.startswith(C.STATE_IN_PREFIX):
                feed[k] = v
        feeds.append(feed)
    return feeds
