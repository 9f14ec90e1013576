"""Adapters: how a learner's adaptation runs inside the graphs — the recent window (and any
carried state) in, a planner predictor out — and which graphs describe it.

:func:`make_adapter` picks the adapter from the learner's
:meth:`~adaptive_control.learners.Learner.adaptation` description; each adapter then names
its dynamics graph and its window graph (``adapt_step.onnx`` or ``encode.onnx``), so the
exporter writes whatever it is handed without looking at learner or adapter types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adaptive_control.learners import Adaptation, Ensemble, EnsemblePredictor, Learner
from export.graphs.cores import (
    AnyParams,
    GainEncoderCore,
    MLPCore,
    MLPPredictorGraph,
    RecurrentCore,
    RecurrentPredictorGraph,
)
from export.graphs.modules import (
    AdaptStepGraph,
    DynamicsGraph,
    EncodeGainsGraph,
    EncodeGraph,
    EnsembleAdaptStepGraph,
    EnsembleDynamicsGraph,
    GainDynamicsGraph,
    RecurrentStepGraph,
    StepWrapper,
)
from export.runtime import artifacts as C

#: The manifest's adaptation ``mode`` of each :data:`~adaptive_control.learners.AdaptationKind`.
MODES = {"none": "none", "gradient": "reset", "online_sgd": "online", "recurrent": "encode",
         "gains": "encode_gains"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    doc: str
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "doc": self.doc}


def recent_specs(m: int, do: int, da: int) -> list[TensorSpec]:
    """The recent-window inputs every adapting graph takes."""
    return [
        TensorSpec(C.RECENT_OBS, (m, do), "observations s_t of the last M transitions, oldest "
                   "first (newest in the last row)"),
        TensorSpec(C.RECENT_ACT, (m, da), "actions a_t applied after each s_t"),
        TensorSpec(C.RECENT_NEXT_OBS, (m, do), "observations s_{t+1} that followed"),
        TensorSpec(C.RECENT_MASK, (m,), "1 for a valid row, 0 for an empty one (ignored; may "
                   "hold any values); all zeros -> the unadapted prior"),
    ]


@dataclass
class GraphDef:
    """A graph to export: the module and its inputs and outputs, in ``forward``'s order.
    An input whose first dimension is ``"N"`` is batched (a dynamic dimension)."""

    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def _obs_act_specs(do: int, da: int) -> list[TensorSpec]:
    return [TensorSpec(C.OBS, ("N", do), "observations"),
            TensorSpec(C.ACT, ("N", da), "actions")]


def _next_obs_spec(do: int) -> TensorSpec:
    return TensorSpec(C.NEXT_OBS, ("N", do), "predicted next observations")


class Adapter(nn.Module):
    """Turns the recent window (and carried state) into a planner predictor."""

    mode: str

    def state_specs(self) -> list[TensorSpec]:
        """Carried state inputs (``state_in.*``; outputs ``state_out.*`` have equal shapes)."""
        return []

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        raise NotImplementedError

    def dynamics_graph(self, do: int, da: int) -> GraphDef:
        """``dynamics.onnx``: the model without the planner (batched over ``N``)."""
        raise NotImplementedError

    def window_graph(self, m: int, do: int, da: int) -> tuple[str, GraphDef] | None:
        """The graph of the adapt step alone, with its role (``adapt_step`` or ``encode``),
        or None when the window is not read."""
        return None


class MLPAdapter(Adapter):
    """``none`` (MB), ``reset`` (GrBAL: SGD from θ* each call) or ``online`` (MB+DE: SGD from
    θ* + carried Δθ, which is returned as the new state). Given the window length ``window``
    the SGD step is recorded for export (:meth:`MLPCore.trace`)."""

    def __init__(self, core: MLPCore, mode: str, window: int | None = None) -> None:
        super().__init__()
        if mode not in ("none", "reset", "online"):
            raise ValueError(f"MLPAdapter.mode={mode!r}: allowed none, reset, online")
        self.core, self.mode = core, mode
        if window is not None and mode != "none":
            core.trace(window, carried=mode == "online",
                       lowrank=mode == "reset" and core.lowrank_exact)

    def state_specs(self) -> list[TensorSpec]:
        if self.mode != "online":
            return []
        return [TensorSpec(C.STATE_IN_PREFIX + n, s,
                           "online change of this weight relative to the trained one; "
                           "zeros at reset")
                for n, s in zip(self.core.param_names, self.core.param_shapes, strict=True)]

    def adapted_params(self, recent: Sequence[Tensor], state: Sequence[Tensor],
                       lowrank: bool = False) -> AnyParams:
        """θ* adapted on the window. ``lowrank`` (where the factored form is exact,
        :attr:`MLPCore.lowrank_exact`) keeps the update of the wide layers as factors (for
        planning); otherwise the weights are materialised."""
        if self.mode == "none":
            return self.core.theta()
        if self.mode == "online":
            return self.core.sgd(recent, state)
        return self.core.sgd(recent, lowrank=lowrank and self.core.lowrank_exact)

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        params = self.adapted_params(recent, state, lowrank=True)
        new_state: list[Tensor] = []
        if self.mode == "online":
            new_state = [p - t for p, t in zip(self.core.to_state_dict_layout(params),
                                               self.core.to_state_dict_layout(self.core.theta()),
                                               strict=True)]
        return MLPPredictorGraph(self.core, params), new_state

    def dynamics_graph(self, do: int, da: int) -> GraphDef:
        return GraphDef(DynamicsGraph(self.core), _obs_act_specs(do, da), [_next_obs_spec(do)])

    def window_graph(self, m: int, do: int, da: int) -> tuple[str, GraphDef] | None:
        if self.mode == "none":
            return None
        core = self.core
        outs = [TensorSpec(C.ADAPTED_PREFIX + n, s, "adapted weight (PyTorch state_dict "
                           "layout) of the plain MLP; adapted action gains are folded into net.0")
                for n, s in zip(core.param_names, core.param_shapes, strict=True)]
        if self.mode == "online":
            outs += [TensorSpec(C.STATE_OUT_PREFIX + n, s, "new online change; feed back as "
                                f"{C.STATE_IN_PREFIX}{n}")
                     for n, s in zip(core.param_names, core.param_shapes, strict=True)]
        return "adapt_step", GraphDef(AdaptStepGraph(self),
                                      recent_specs(m, do, da) + self.state_specs(), outs)


class RecurrentAdapter(Adapter):
    mode = "encode"

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        h, c, last = self.core.encode(*recent)
        return RecurrentPredictorGraph(self.core, h, c, last), []

    def dynamics_graph(self, do: int, da: int) -> GraphDef:
        core = self.core
        hs = core.hidden_size
        ins = [*_obs_act_specs(do, da),
               TensorSpec(C.PREV_DELTA, ("N", do), "previous state change s_t - s_{t-1} (raw "
                          "units; the dataset-mean delta at the start)"),
               TensorSpec(C.HIDDEN, ("N", hs), "RNN hidden state h")]
        outs = [_next_obs_spec(do),
                TensorSpec(C.NEXT_HIDDEN, ("N", hs), "advanced hidden state")]
        if core.is_lstm:
            ins.append(TensorSpec(C.CELL, ("N", hs), "LSTM cell state c"))
            outs.append(TensorSpec(C.NEXT_CELL, ("N", hs), "advanced cell state"))
        return GraphDef(StepWrapper(RecurrentStepGraph(core), core.is_lstm), ins, outs)

    def window_graph(self, m: int, do: int, da: int) -> tuple[str, GraphDef] | None:
        core = self.core
        outs = [TensorSpec(C.CONTEXT_HIDDEN, (core.hidden_size,), "hidden state after the "
                           "window")]
        if core.is_lstm:
            outs.append(TensorSpec(C.CONTEXT_CELL, (core.hidden_size,), "LSTM cell state after "
                                   "the window"))
        outs.append(TensorSpec(C.LAST_DELTA, (do,), "s' - s of the newest valid row (raw "
                               "units); the dataset-mean delta when no row is valid"))
        return "encode", GraphDef(EncodeGraph(core), recent_specs(m, do, da), outs)


class GainAdapter(Adapter):
    """ReBAL with action gains: encode the window into gains, fold them into the MLP."""

    mode = "encode_gains"

    def __init__(self, core: MLPCore, encoder: GainEncoderCore) -> None:
        super().__init__()
        self.core, self.encoder = core, encoder

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        gains = self.encoder.encode(*recent)
        return MLPPredictorGraph(self.core, self.core.fold_gain(self.core.raw_theta(), gains)), []

    def dynamics_graph(self, do: int, da: int) -> GraphDef:
        ins = [*_obs_act_specs(do, da),
               TensorSpec(C.ACTION_GAINS, (da,), "per-motor command gains (encode.onnx's "
                          "output; ones = the unadapted model)")]
        return GraphDef(GainDynamicsGraph(self.core), ins, [_next_obs_spec(do)])

    def window_graph(self, m: int, do: int, da: int) -> tuple[str, GraphDef] | None:
        outs = [TensorSpec(C.ACTION_GAINS, (da,), "per-motor command gains read from the "
                           "window")]
        return "encode", GraphDef(EncodeGainsGraph(self.encoder), recent_specs(m, do, da), outs)


class EnsembleAdapter(Adapter):
    """K members' :class:`MLPAdapter` (one kind: MB, GrBAL or MB+DE), each adapting on the
    same window; the predictor is the library's :class:`EnsemblePredictor` over theirs, so the
    planner rolls every candidate out under each member (member-major rows) and averages the
    returns, as the torch controller does. Every per-member tensor of a graph (dynamics
    predictions, adapted weights, carried state) gets a leading member axis of size K."""

    def __init__(self, members: Sequence[MLPAdapter]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.k = len(members)
        self.mode = members[0].mode

    def state_specs(self) -> list[TensorSpec]:
        return [TensorSpec(s.name, (self.k, *s.shape), s.doc + " (per member)")
                for s in self.members[0].state_specs()]

    def member_state(self, state: Sequence[Tensor], i: int) -> list[Tensor]:
        return [s[i] for s in state]

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        predictors, states = [], []
        for i, member in enumerate(self.members):
            p, s = member.adapt(recent, self.member_state(state, i))
            predictors.append(p)
            states.append(s)
        stacked = [torch.stack(list(t)) for t in zip(*states, strict=True)]
        return EnsemblePredictor(predictors), stacked

    def dynamics_graph(self, do: int, da: int) -> GraphDef:
        return GraphDef(EnsembleDynamicsGraph([m.core for m in self.members]),
                        _obs_act_specs(do, da),
                        [TensorSpec(C.NEXT_OBS, (self.k, "N", do), "predicted next "
                                    "observations, one row block per member")])

    def window_graph(self, m: int, do: int, da: int) -> tuple[str, GraphDef] | None:
        one = self.members[0].window_graph(m, do, da)
        if one is None:
            return None
        role, g = one
        outs = [TensorSpec(s.name, (self.k, *s.shape), s.doc + " (per member)")
                for s in g.outputs]
        return role, GraphDef(EnsembleAdaptStepGraph(self), recent_specs(m, do, da)
                              + self.state_specs(), outs)


def make_adapter(learner: Learner, window: int | None = None) -> Adapter:
    """The adapter of a trained learner, from its :meth:`~Learner.adaptation` description.
    ``window`` (the M of the recent window) records SGD steps for export. An
    :class:`Ensemble` of MLP learners gets an :class:`EnsembleAdapter` (of one member: that
    member's own adapter, so it exports as the plain learner)."""
    if isinstance(learner, Ensemble):
        members = [make_adapter(m, window) for m in learner.members]
        if not all(isinstance(a, MLPAdapter) for a in members):
            raise ValueError(f"ensemble of {type(learner.members[0]).name} learners: the "
                             "export supports ensembles of mb, grbal and mbde members (ReBAL's "
                             "recurrent and gain-encoder adaptation is exported for one model "
                             "only)")
        if len(members) == 1:
            return members[0]
        return EnsembleAdapter(members)  # type: ignore[arg-type]
    ad: Adaptation = learner.adaptation()
    model = learner.model
    if ad.kind == "recurrent":
        return RecurrentAdapter(RecurrentCore(model))
    if ad.kind == "gains":
        assert ad.encoder is not None
        return GainAdapter(MLPCore(model), GainEncoderCore(ad.encoder, model))
    if ad.sgd:
        assert ad.inner_lr is not None
        return MLPAdapter(MLPCore(model, ad.inner_lr, ad.inner_steps, ad.inner_max_norm),
                          MODES[ad.kind], window)
    return MLPAdapter(MLPCore(model), MODES[ad.kind])
