"""Helpers shared by the research diagnostics (not part of the installed package).

The scripts run with this folder on ``sys.path`` (``python research/label_noise.py ...``), so
they import it as ``from _helpers import ...``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def teacher_draws(teacher, obs: np.ndarray,
                  generators: Sequence[torch.Generator]) -> list[np.ndarray]:
    """The teacher's action at ``obs`` from one copy of it per generator: the same history,
    adapted model and warm start, each with that generator as its planner noise. The teacher
    itself is left as it was (diagnostics of its label noise: research/label_noise.py)."""
    draws = []
    for generator in generators:
        twin = copy.deepcopy(teacher)
        twin.generator = generator
        draws.append(twin(obs))
    return draws


def ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and the half-width of its 95 % t interval (nan for one value), and n."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = (float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
            if len(x) > 1 else float("nan"))
    return {"mean": float(x.mean()), "ci95": half, "n": len(x)}


def reference_returns(report: str | Path, scenario: str, seed: int) -> tuple[float, float]:
    """The random floor's and the oracle's returns of one episode of an ``adapt eval``
    report (which must hold both methods)."""
    eps = json.loads((Path(report) / "results.json").read_text())["episodes"]
    ret = {e["method"]: e["ret"] for e in eps if e["scenario"] == scenario and e["seed"] == seed}
    return ret["random"], ret["oracle"]


def onnx_episode(export_dir: str | Path, schedule: Any, steps: int, seed: int
                 ) -> dict[str, float]:
    """One episode of an exported controller in ONNX Runtime (the torch-free session, its
    noise seeded with ``seed``), in ``AdaptEnv`` seeded alike: return, mean speed and the
    share of steps flipped."""
    from adaptive_control.evaluation.episodes import flipped_share
    from export.runtime import artifacts as C
    from export.runtime.session import ControllerSession
    from sims.env import AdaptEnv
    from sims.episode import run_episode
    from sims.registry import get_robot

    robot = get_robot(C.read_manifest(Path(export_dir))["robot"])
    session = ControllerSession(export_dir, robot=robot.name, threads=1, seed=seed)
    env = AdaptEnv(robot, schedule, episode_steps=steps, seed=seed)
    rec = run_episode(env, session.step)
    session.close()
    return {"return": float(np.sum(rec.rewards)), "speed": float(np.mean(rec.speeds)),
            "flipped": flipped_share(rec.upright)}


def write_result(out: str | Path | None, result: dict[str, Any], last_line: dict[str, Any]
                 ) -> None:
    """``result`` as JSON at ``out`` (if given), then ``last_line`` as the printed JSON line."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
    print(json.dumps(last_line))
