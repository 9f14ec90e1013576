"""Export a trained policy to an ONNX deploy folder that ``adapt deploy`` runs without torch.

``export_policy(checkpoint, out_dir)`` writes

* ``policy.onnx`` — one control step, the hidden state as input and output:
  ``(obs [1, obs_dim], prev_action [1, act_dim], prev_reward [1, 1], hidden [1, H])
  -> (action [1, act_dim], hidden_out [1, H])``, float32. The observation and reward
  normalisers and the action bounds are baked in; the action is the deterministic
  (tanh-squashed) mean. ``metadata_props`` (JSON values, as every graph of
  :mod:`export.runtime.artifacts`) record the robot, family, method, sizes, hidden size, control
  timestep and action bounds.
* ``reward.onnx`` — ``sims.rewards.task_reward(robot)`` traced as a graph
  ``(obs, act, next_obs) -> reward``: the previous reward the policy reads, computed on the
  robot's computer with the simulator's own arithmetic (no copy of the formula to drift).
* ``manifest.json`` — ``kind: "policy"``, robot, control timestep, sizes, hidden size, action
  bounds, both graphs' interfaces, the per-step protocol and the parity figures.

Then, unless ``verify=False``, it checks ONNX Runtime against torch: the policy graph on random
inputs, the reward graph on random transitions, and the deploy runtime itself
(:class:`export.runtime.policy.PolicySession`: both graphs with its previous-action and
previous-reward bookkeeping) against the torch :class:`~policies.evaluate.PolicyController` in
closed loop in the simulator. The folder is assembled in a temporary sibling folder and moved
into place only once that check has passed, so a failed or interrupted export never leaves a
half-written or unchecked folder behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptive_control.checkpoint import load_checkpoint, package_version
from adaptive_control.runs import checkpoint_path
from export.exporter import OPSET, export_graph, export_reward_graph, reward_metadata
from export.graphs.adapters import TensorSpec
from export.parity import PARITY_TOL, max_abs_error, max_parity_error, ort_session, run_session
from export.runtime import artifacts as C
from policies.config import check_action_std
from policies.networks import Policy
from policies.training import policy_from_checkpoint
from sims.atomic import commit_folder, staged_folder
from sims.registry import get_family
from sims.rewards import task_reward
from sims.robots import Robot
from sims.specs import artifact_spec

INPUTS = C.POLICY_INPUTS

_HIDDEN_LAYOUT = {
    "gru": "the GRU state h",
    "lstm": "the LSTM states [h, c] side by side (hidden_size = 2 x the cell size)",
    "mlp": "a 1-wide dummy the feed-forward policy passes through unchanged",
}


@dataclass
class PolicyExport:
    """What :func:`export_policy` wrote: the folder, its files, the manifest and the parity
    figures (max abs error vs torch per graph and check)."""

    out_dir: Path
    files: dict[str, Path]
    manifest: dict[str, Any]
    parity: dict[str, dict[str, float]]

    @property
    def max_error(self) -> float:
        return max_parity_error(self.parity)

    @property
    def policy_path(self) -> Path:
        return self.files["policy"]


def _load(checkpoint: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(checkpoint, dict):
        return checkpoint
    return load_checkpoint(checkpoint_path(checkpoint))


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix == ".onnx":
        # The command used to write a single .onnx file; say so instead of making a folder
        # that looks like a file.
        raise ValueError(f"--out {out}: export-policy writes a deploy folder ({C.POLICY_FILE}, "
                         f"{C.REWARD_FILE}, {C.MANIFEST_FILE}), not a .onnx file: give a "
                         f"folder, e.g. --out {out.with_suffix('')}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: choose a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} already exists and is not empty: choose another "
                              "folder or pass --force")


def _graph_meta(policy: Policy, cfg: Any, robot: Robot) -> dict[str, Any]:
    """Metadata shared by the policy graph and the manifest."""
    import onnx

    return {
        "format": C.FORMAT, "format_version": C.FORMAT_VERSION,
        "robot": robot.name, "family": cfg.family, "method": cfg.method, "arch": cfg.net.arch,
        "package_version": package_version(),
        "obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
        "hidden_size": policy.hidden_dim, "hidden_layout": _HIDDEN_LAYOUT[cfg.net.arch],
        "obs_layout": [{"name": p.name, "start": p.start, "size": p.size}
                       for p in robot.obs_parts],
        "action_low": [float(x) for x in policy.act_low],
        "action_high": [float(x) for x in policy.act_high],
        "control_timestep": robot.control_timestep,
        **artifact_spec(get_family(cfg.family)),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
    }


def _policy_specs(do: int, da: int, hd: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    ins = [TensorSpec(C.OBS, (1, do), "current observation"),
           TensorSpec(C.PREV_ACTION, (1, da), "the action executed at the previous step "
                      "(zeros at the first step of an episode)"),
           TensorSpec(C.PREV_REWARD, (1, 1), "reward.onnx of the previous transition "
                      "(0 at the first step of an episode)"),
           TensorSpec(C.HIDDEN, (1, hd), "hidden_out of the previous step (zeros at reset)")]
    outs = [TensorSpec(C.ACTION, (1, da), "action to apply now (within the action bounds)"),
            TensorSpec(C.HIDDEN_OUT, (1, hd), f"feed back as {C.HIDDEN} next step")]
    return ins, outs


_STEP_DOC = {
    "reset": "hidden, prev_action and prev_reward are zeros at the start of an episode; "
             "nothing else resets them (a mid-run change of the robot is what the hidden "
             "state adapts to)",
    "prev_reward": "reward.onnx(previous obs, action executed after it, current obs); after "
                   "an unusable observation the last known reward is kept",
    "action": "clip action to [action_low, action_high] and execute it; it is the next "
              "step's prev_action",
    "fallback": "on an unusable observation, a failed or late step: repeat the previous action "
                "(or zeros clipped into the bounds); the hidden state is left unchanged",
}


def export_policy(checkpoint: str | Path | dict[str, Any], out_dir: str | Path, *,
                  verify: bool = True, verify_steps: int = 40, seed: int = 0,
                  overwrite: bool = False, action_std: float = 0.0,
                  log: Callable[[str], None] | None = None) -> PolicyExport:
    """Write the deploy folder ``out_dir`` from an `adapt train-policy` checkpoint (a
    ``checkpoint.pt``, its run folder or the loaded dict); see the module docstring.

    An existing non-empty ``out_dir`` is refused unless ``overwrite``. ``verify_steps``
    simulated steps go into the closed-loop check (0: random inputs only). ``action_std``
    (action half-ranges) goes into the manifest: the runtime adds Gaussian noise of that
    standard deviation to the policy's action, as ``PolicyController(action_std=...)`` does.
    """
    say = log or (lambda s: None)
    if verify_steps < 0:
        raise ValueError(f"verify_steps={verify_steps}: allowed an integer >= 0")
    check_action_std(action_std)
    out = Path(out_dir)
    _check_out(out, overwrite)
    policy, cfg = policy_from_checkpoint(_load(checkpoint))
    family = get_family(cfg.family)
    robot = family.robot
    meta = _graph_meta(policy, cfg, robot)
    do, da, hd = policy.obs_dim, policy.act_dim, policy.hidden_dim

    with staged_folder(out) as stage:
        say(f"exporting {C.POLICY_FILE} ({cfg.method}, {cfg.net.arch}, hidden {hd})")
        ins, outs = _policy_specs(do, da, hd)
        graphs = {"policy": export_graph(
            policy.eval(), ins, outs, stage / C.POLICY_FILE, {**meta, "graph": "policy"},
            f"adaptive-control recurrent policy for {robot.name}; see docs/export.md")}
        say(f"exporting {C.REWARD_FILE}")
        graphs["reward"] = export_reward_graph(robot, stage / C.REWARD_FILE,
                                               {"family": cfg.family})
        manifest = {
            **meta, C.KIND: C.KIND_POLICY,
            "files": dict(C.POLICY_GRAPH_FILES),
            "graphs": {role: {"inputs": [s.to_dict() for s in g.inputs],
                              "outputs": [s.to_dict() for s in g.outputs]}
                       for role, g in graphs.items()},
            "state": [{"input": C.HIDDEN, "output": C.HIDDEN_OUT, "shape": [1, hd],
                       "init": "zeros"}],
            "step": _STEP_DOC,
            "reward": reward_metadata(task_reward(robot)),
            C.ACTION_STD: float(action_std),
            "parity_max_abs_error": {}, "parity_tolerance": PARITY_TOL,
        }
        # The runtime check below loads the folder through the manifest, as a robot would.
        (stage / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        parity: dict[str, dict[str, float]] = {}
        if verify:
            say("checking ONNX Runtime against torch"
                + (f" (random inputs and {verify_steps} simulated steps)" if verify_steps
                   else " (random inputs)"))
            parity = verify_policy_export(stage, policy, robot, family.test_conditions[0],
                                          steps=verify_steps, seed=seed)
        manifest["parity_max_abs_error"] = parity
        (stage / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        result = PolicyExport(out, {role: out / g.path.name for role, g in graphs.items()},
                              manifest, parity)
        if verify and not result.max_error <= PARITY_TOL:
            raise RuntimeError(f"policy export parity check failed: max abs error "
                               f"{result.max_error:.3g} > {PARITY_TOL:g}; per graph: "
                               f"{json.dumps(parity)}; {out} was not written")
        commit_folder(stage, out, [*(g.path.name for g in graphs.values()), C.MANIFEST_FILE],
                      stale=[*C.GRAPH_FILES.values(), *C.POLICY_GRAPH_FILES.values()])
    return result


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


def verify_policy_export(out_dir: str | Path, policy: Policy, robot: Robot, condition: Any,
                         steps: int = 40, seed: int = 0, samples: int = 8
                         ) -> dict[str, dict[str, float]]:
    """Max abs error ONNX Runtime vs torch: ``{"policy": {...}, "reward": {...}}``.

    ``random``: each graph on ``samples`` random inputs against ``Policy.forward`` and
    ``TaskReward``. ``recorded``: the deploy runtime (:class:`PolicySession`) stepped side by
    side with the torch :class:`PolicyController` on the same simulated observations for
    ``steps`` steps under ``condition`` — actions and hidden states (policy), previous
    rewards (reward); a step the runtime answered with its fallback counts as infinite error.
    With the manifest's ``action_std`` both add action noise from the noise seed ``seed``.
    """
    from export.runtime.policy import PolicySession
    from export.runtime.sim_robot import SimRobot
    from policies.evaluate import PolicyController

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    reward = task_reward(robot)
    lo, hi = policy.act_low.numpy(), policy.act_high.numpy()
    do, da, hd = policy.obs_dim, policy.act_dim, policy.hidden_dim
    f32 = np.float32
    pol, rew = ort_session(out / C.POLICY_FILE), ort_session(out / C.REWARD_FILE)
    p_err, r_err = [], []
    for _ in range(samples):
        feed = {C.OBS: (2.0 * rng.standard_normal((1, do))).astype(f32),
                C.PREV_ACTION: rng.uniform(lo, hi, (1, da)).astype(f32),
                C.PREV_REWARD: (3.0 * rng.standard_normal((1, 1))).astype(f32),
                C.HIDDEN: rng.uniform(-1.0, 1.0, (1, hd)).astype(f32)}
        with torch.no_grad():
            action, hidden = policy(*(torch.from_numpy(feed[k]) for k in INPUTS))
        p_err.append(max_abs_error(run_session(pol, feed), {C.ACTION: action.numpy(),
                                                             C.HIDDEN_OUT: hidden.numpy()}))
        tr = {C.OBS: (2.0 * rng.standard_normal((1, do))).astype(f32),
              C.ACT: rng.uniform(lo, hi, (1, da)).astype(f32),
              C.NEXT_OBS: (2.0 * rng.standard_normal((1, do))).astype(f32)}
        want = reward(*(tr[k].astype(np.float64) for k in C.REWARD_INPUTS))
        r_err.append(max_abs_error(run_session(rew, tr), {C.REWARD: want}))
    results = {"policy": {"random": max(p_err)}, "reward": {"random": max(r_err)}}
    if steps > 0:
        session = PolicySession(out, robot=robot.name, seed=seed)
        # The folder says how much noise: the torch side follows it, as a robot's runtime would.
        ctrl = PolicyController(policy, reward, action_std=session.action_std, noise_seed=seed)
        sim = SimRobot(robot, condition, seed=seed)
        obs = sim.reset()
        p_rec = r_rec = 0.0
        try:
            for _ in range(steps):
                a_torch = ctrl(obs)
                a_rt = session.step(obs)
                p_rec = max(p_rec, float(np.abs(a_rt - a_torch).max()),
                            float(np.abs(session.hidden - ctrl._hidden.numpy()).max()))
                r_rec = max(r_rec, abs(session.prev_reward - ctrl._prev_rew))
                sim.act(a_torch)  # one trajectory for both, so errors cannot compound
                obs = sim.observe()
        finally:
            session.close()
        if session.counters["graph_actions"] != steps:
            p_rec = math.inf
        results["policy"]["recorded"] = p_rec
        results["reward"]["recorded"] = r_rec
    return results
