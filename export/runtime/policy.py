"""Run an exported recurrent policy with nothing but numpy and onnxruntime.

Like :mod:`export.runtime.session` (whose :class:`~export.runtime.session.SessionBase` step
protocol and :func:`~export.runtime.loop.run` loop it reuses), this module never imports
torch, mujoco or ``sims``::

    session = PolicySession("exports/policy", robot="cheetah")
    session.reset()
    action = session.step(obs)          # one policy step
    report = run(my_robot, session, rate_hz=100, duration_s=30)

A policy deploy folder (``adapt export-policy``) holds ``policy.onnx`` (one step of the
policy: obs, previous action, previous reward, hidden state -> action, next hidden state),
``reward.onnx`` (the task reward of a transition) and ``manifest.json`` (``kind: "policy"``,
robot, sizes, control timestep, action bounds, the graphs' interfaces). Per step the session

* computes the previous reward with ``reward.onnx`` from the previous observation, the action
  executed after it and the current observation — the reward the policy was trained on, in the
  simulator's own arithmetic (the graph is traced from ``sims.rewards.TaskReward``);
* feeds the observation, the previous executed action, that reward and the hidden state to
  ``policy.onnx``, carries ``hidden_out`` to the next step and clips the action into the bounds
  (after adding Gaussian noise when the manifest's ``action_std`` is above 0).

At :meth:`PolicySession.reset` the hidden state, the previous action and the previous reward
are zeros, as in training. Nothing else resets them: a mid-run change of the robot (a motor
failing) is what the hidden state is there to pick up.

Safety is :class:`~export.runtime.session.SessionBase`'s: an unusable observation, a failed or late
step, or a non-finite output executes the safe action and is counted. The hidden state then
stays as it was (the policy never saw that step). The safe action repeats the previous action
(``safe_action="shift"``: a policy's plan is one step long, so shifting it holds the last
action) or is zeros clipped into the bounds (``"zeros"``). After an unusable observation the
transition into the next good one is unknown, so that step keeps the last known reward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.runtime import artifacts as C
from export.runtime.artifacts import (
    ArtifactError,
    artifact_file,
    check_bounds,
    check_io,
    damaged,
    load_metadata,
    read_manifest,
    require,
)
from export.runtime.session import GraphRunner, SessionBase, check_safe_action
from file_errors import missing

__all__ = ["PolicySession", "validate_policy_manifest"]


def _int_field(path: Path, manifest: Mapping[str, Any], key: str) -> int:
    v = manifest[key]
    require(path, isinstance(v, int) and not isinstance(v, bool) and v >= 1,
             f"{key}={v!r}: allowed an integer >= 1")
    return int(v)


def _expected_graphs(do: int, da: int, hd: int) -> dict[str, dict[str, dict[str, list[int]]]]:
    """Graph role -> inputs/outputs -> tensor name -> shape, for these sizes."""
    return {
        "policy": {"inputs": {C.OBS: [1, do], C.PREV_ACTION: [1, da], C.PREV_REWARD: [1, 1],
                              C.HIDDEN: [1, hd]},
                   "outputs": {C.ACTION: [1, da], C.HIDDEN_OUT: [1, hd]}},
        "reward": {"inputs": {C.OBS: [1, do], C.ACT: [1, da], C.NEXT_OBS: [1, do]},
                   "outputs": {C.REWARD: [1]}},
    }


def validate_policy_manifest(path: Path, manifest: Mapping[str, Any],
                             robot: str | None = None) -> None:
    """Check a policy folder's manifest before anything runs: :class:`ArtifactError` naming
    the field, the value found and what is allowed."""
    lacking = [k for k in C.POLICY_MANIFEST_KEYS if k not in manifest]
    if lacking:
        raise damaged(path, "a policy manifest", f"the fields of `adapt export-policy` "
                      f"({C.FORMAT} version {C.FORMAT_VERSION})",
                      missing("field", lacking, manifest))
    require(path, manifest["format"] == C.FORMAT,
             f"format={manifest['format']!r}: allowed {C.FORMAT!r}")
    require(path, manifest["format_version"] == C.FORMAT_VERSION,
             f"format_version={manifest['format_version']!r}: this runtime reads version "
             f"{C.FORMAT_VERSION}; re-export with this package version")
    require(path, manifest[C.KIND] == C.KIND_POLICY,
             f"{C.KIND}={manifest[C.KIND]!r}: allowed {C.KIND_POLICY!r} for a policy folder")
    if robot is not None and manifest["robot"] != robot:
        raise ArtifactError(
            f"{path}: robot={manifest['robot']!r} but the robot to drive is {robot!r}: this "
            f"policy only drives {manifest['robot']!r} (allowed --robot sim:{manifest['robot']}"
            f"); export a policy trained for {robot!r}")
    do, da, hd = (_int_field(path, manifest, k) for k in ("obs_dim", "act_dim", "hidden_size"))
    dt = manifest["control_timestep"]
    require(path, isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0,
             f"control_timestep={dt!r}: allowed a number of seconds > 0")
    check_bounds(path, manifest["action_low"], manifest["action_high"], da)
    layout = manifest["obs_layout"]
    require(path, isinstance(layout, list) and all(isinstance(p, dict) and "name" in p
                                                     for p in layout),
             f"obs_layout={layout!r}: allowed a list of {{name, start, size}} entries")
    std = manifest.get(C.ACTION_STD, 0.0)
    require(path, isinstance(std, (int, float)) and not isinstance(std, bool)
             and math.isfinite(std) and std >= 0,
             f"{C.ACTION_STD}={std!r}: allowed a number >= 0 (action noise in action "
             "half-ranges; 0 = the mean action)")
    files = manifest["files"]
    require(path, files == C.POLICY_GRAPH_FILES,
             f"files={files!r}: allowed {C.POLICY_GRAPH_FILES!r}")
    graphs = manifest["graphs"]
    for role, io in _expected_graphs(do, da, hd).items():
        g = graphs.get(role) if isinstance(graphs, dict) else None
        require(path, isinstance(g, dict) and all(
                     isinstance(g.get(side), list)
                     and all(isinstance(t, dict) and {"name", "shape"} <= set(t)
                             for t in g[side]) for side in io),
                 f"graphs.{role}={g!r}: allowed {{inputs: [...], outputs: [...]}} listing "
                 "each tensor's name and shape")
        assert isinstance(g, dict)
        for side, want in io.items():
            got = {t["name"]: t["shape"] for t in g[side]}
            require(path, got == want,
                     f"graphs.{role}.{side}={got}: allowed {want} for obs_dim={do}, "
                     f"act_dim={da}, hidden_size={hd}")


class PolicySession(SessionBase):
    """One exported recurrent policy, ready to step (see the module docstring).

    Args:
      export_dir: the folder written by ``adapt export-policy``.
      robot: if given, the policy must have been exported for this robot name.
      threads: ONNX Runtime intra-op threads (1 = the latency-predictable default).
      safe_action: "shift" (repeat the previous action; zeros at the start) or "zeros"; what
        an unusable observation executes.
      seed: seed of the action noise, when the manifest's ``action_std`` asks for noise: the
        policy's action plus ``action_std * half_range * N(0, 1)`` drawn from
        ``np.random.default_rng(seed)``, the torch ``PolicyController``'s sequence.
    """

    kind = C.KIND_POLICY

    def __init__(self, export_dir: str | Path, robot: str | None = None, threads: int = 1,
                 safe_action: str = "shift", seed: int = 0) -> None:
        check_safe_action(safe_action)
        folder = Path(export_dir)
        manifest_path = folder / C.MANIFEST_FILE
        self.meta = read_manifest(folder)  # also: no such folder, missing, garbled
        validate_policy_manifest(manifest_path, self.meta, robot)
        meta = self.meta
        self.path = artifact_file(folder, C.POLICY_FILE)
        self._graph = GraphRunner(self.path, threads)
        self._reward_graph = GraphRunner(artifact_file(folder, C.REWARD_FILE), threads)
        for role, runner in (("policy", self._graph), ("reward", self._reward_graph)):
            # The graphs must be the ones the manifest describes: same robot, same interface.
            gmeta = load_metadata(runner.sess, runner.path)
            for key in ("graph", "robot"):
                want = role if key == "graph" else meta["robot"]
                require(runner.path, gmeta.get(key) == want,
                         f"metadata {key}={gmeta.get(key)!r}, expected {want!r} (from "
                         f"{C.MANIFEST_FILE}): the folder mixes files of different exports")
            check_io(runner.path, "input", meta["graphs"][role]["inputs"],
                      runner.sess.get_inputs())
            check_io(runner.path, "output", meta["graphs"][role]["outputs"],
                      runner.sess.get_outputs())
        self.robot_name: str = meta["robot"]
        self.obs_dim: int = meta["obs_dim"]
        self.act_dim: int = meta["act_dim"]
        self.hidden_size: int = meta["hidden_size"]
        self.control_timestep = float(meta["control_timestep"])
        self.low, self.high = check_bounds(manifest_path, meta["action_low"],
                                           meta["action_high"], self.act_dim)
        self.output_names = self._graph.output_names
        self.safe_action_mode = safe_action
        self.action_std = float(meta.get(C.ACTION_STD, 0.0))
        self._noise = np.random.default_rng(seed)
        self._noise_scale = self.action_std * (self.high.astype(np.float64) - self.low) / 2
        self._safe = np.clip(np.zeros(self.act_dim, np.float32), self.low, self.high)
        self._init_stats()
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Start an episode: zero hidden state, previous action and previous reward."""
        self.hidden = np.zeros((1, self.hidden_size), np.float32)
        # Zeros, not clipped into the bounds: the torch PolicyController and training start so.
        self.last_action = np.zeros(self.act_dim, np.float32)  # executed at the previous step
        self.prev_reward = 0.0
        self._prev_obs: np.ndarray | None = None

    def close(self) -> None:
        super().close()
        self._reward_graph.close()

    # ------------------------------------------------------------------ one step, in parts
    def reward(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> float:
        """The task reward of one transition, from ``reward.onnx``."""
        (r,) = self._reward_graph.run({
            C.OBS: np.asarray(obs, np.float32).reshape(1, -1),
            C.ACT: np.asarray(act, np.float32).reshape(1, -1),
            C.NEXT_OBS: np.asarray(next_obs, np.float32).reshape(1, -1)})
        value = float(r.reshape(-1)[0])
        if not math.isfinite(value):
            raise FloatingPointError(f"reward graph returned {value} for a finite transition")
        return value

    def record(self, obs: Any) -> np.ndarray | None:
        """Validate ``obs`` and compute the reward of the transition that ends at it.

        Returns the observation as float32, or None (counted) when it is non-finite or wrongly
        sized; the caller must then execute :meth:`safe_action`.
        """
        bad = self.check_obs(obs)
        if bad is not None:
            self.counters[bad] += 1
            self._prev_obs = None  # the transitions on either side of it are unknown
            return None
        o = np.array(obs, dtype=np.float32)
        prev, self._prev_obs = self._prev_obs, o
        if prev is not None:
            # last_action is what was executed after prev: every step sets it exactly once.
            self.prev_reward = self.reward(prev, self.last_action, o)
        return o

    def make_feed(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The policy graph's inputs for a recorded observation (copies: a caller may hold on
        to a feed while stepping on)."""
        return {C.OBS: obs.reshape(1, -1), C.PREV_ACTION: self.last_action.reshape(1, -1).copy(),
                C.PREV_REWARD: np.array([[self.prev_reward]], np.float32),
                C.HIDDEN: self.hidden}  # replaced on commit, never written in place

    def begin(self, obs: Any) -> dict[str, np.ndarray] | None:
        """:meth:`record` then :meth:`make_feed`; None for an unusable observation."""
        o = self.record(obs)
        return None if o is None else self.make_feed(o)

    def finish(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Commit a graph result: the action to execute (falls back on a non-finite result)."""
        out = dict(zip(self.output_names, outputs, strict=True))
        action, hidden = out[C.ACTION], out[C.HIDDEN_OUT]
        if (action.shape != (1, self.act_dim) or hidden.shape != self.hidden.shape
                or not (np.all(np.isfinite(action)) and np.all(np.isfinite(hidden)))):
            self.counters["bad_outputs"] += 1
            return self.fallback()
        self.hidden = np.array(hidden, dtype=np.float32)
        act = action[0].astype(np.float64)
        if self.action_std:
            act = act + self._noise_scale * self._noise.standard_normal(self.act_dim)
        act = np.clip(act, self.low, self.high).astype(np.float32)
        self.last_action = act
        self.counters["graph_actions"] += 1
        return act.astype(np.float64)

    def fallback(self, prefer_zeros: bool = False) -> np.ndarray:
        """The safe action: the previous action again, or zeros clipped into the bounds when
        ``prefer_zeros``. It is recorded as executed; the hidden state is left as it was."""
        act = self._safe.copy() if prefer_zeros else self.last_action.copy()
        self.last_action = act
        return act.astype(np.float64)

    def warm_up(self, runs: int = 3) -> None:
        """Run both graphs a few times on zeros so the first real step does not pay for ONNX
        Runtime's first-run allocations. Touches no episode state."""
        zeros_obs = np.zeros(self.obs_dim, np.float32)
        zeros_act = np.zeros(self.act_dim, np.float32)
        for _ in range(runs):
            self._reward_graph.run({C.OBS: zeros_obs[None], C.ACT: zeros_act[None],
                                    C.NEXT_OBS: zeros_obs[None]})
            self._graph.run({C.OBS: zeros_obs[None], C.PREV_ACTION: zeros_act[None],
                             C.PREV_REWARD: np.zeros((1, 1), np.float32),
                             C.HIDDEN: np.zeros_like(self.hidden)})
