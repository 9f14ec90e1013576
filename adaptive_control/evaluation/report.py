"""Evaluation reports: results JSON and CSV, a markdown table, plots and videos, in one folder."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_control.evaluation.episodes import Episode, MethodSpec, Scenario, moving_average
from sims.families import TaskFamily
from sims.specs import spec_document


def _fmt(mean: float, spread: float, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


SCORE_CAPTION = ("score = (R − R_random) / (R_oracle − R_random) from mean returns over the "
                 "same seeds and scenario: 0 is the random floor, 1 the oracle (the planner on "
                 "the true simulator)")
FLIPPED_CAPTION = ("flipped: share of control steps with the torso upside down; tilted: with the "
                   "torso leaning more than 60° from upright (a nose-stand, or flipped)")


def aggregate(episodes: list[Episode], kinds: dict[str, str] | None = None
              ) -> list[dict[str, Any]]:
    """One row per (scenario, method): mean ± std over seeds of each metric, and the
    normalised ``score`` when the methods hold the random floor and one oracle (``kinds``: each
    method's ``describe()['kind']``; without it, the names ``random`` and ``oracle*`` tell)."""
    groups: dict[tuple[str, str], list[Episode]] = defaultdict(list)
    for ep in episodes:
        groups[(ep.scenario, ep.method)].append(ep)
    rows = []
    for (scenario, method), eps in sorted(groups.items()):
        def stat(values: list[float]) -> tuple[float, float]:
            a = np.asarray([v for v in values if v is not None and not math.isnan(v)], float)
            if len(a) == 0:
                return math.nan, math.nan
            return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0

        rec = [ep.recovery_s for ep in eps if ep.switch_step is not None]
        never = sum(r is None for r in rec)
        # NaN: the robot was not moving forward before the switch, nothing to recover to
        undefined = sum(r is not None and math.isnan(r) for r in rec)
        rows.append({
            "scenario": scenario, "method": method, "seeds": len(eps),
            "return": stat([e.ret for e in eps]),
            "speed": stat([e.mean_speed for e in eps]),
            "distance_m": stat([e.distance for e in eps]),
            "pred_error_k": stat([e.pred_error_k for e in eps]),
            "latency_ms": stat([e.latency_ms_p50 for e in eps]),
            "recovery_s": stat([r for r in rec if r is not None]) if rec else (math.nan, math.nan),
            "recovered": (f"{len(rec) - never - undefined}/{len(rec) - undefined}"
                          + (f" ({undefined} n/a)" if undefined else "")) if rec else "",
            "diverged": sum(e.diverged for e in eps),
            "flipped": stat([e.flipped for e in eps]),
            "tilted": stat([e.tilted for e in eps]),
        })
    _add_scores(rows, kinds)
    return rows


def _add_scores(rows: list[dict[str, Any]], kinds: dict[str, str] | None) -> None:
    """``score`` = (R − R_random) / (R_oracle − R_random) per row, from mean returns; nothing
    unless there is exactly one random method and one oracle."""
    methods = {r["method"] for r in rows}
    if kinds is None:
        kinds = {m: "random" if m == "random" else "oracle" if m.startswith("oracle") else ""
                 for m in methods}
    randoms = [m for m in methods if kinds.get(m) == "random"]
    oracles = [m for m in methods if kinds.get(m) == "oracle"]
    if len(randoms) != 1 or len(oracles) != 1:
        return
    mean = {(r["scenario"], r["method"]): r["return"][0] for r in rows}
    for r in rows:
        lo = mean.get((r["scenario"], randoms[0]), math.nan)
        hi = mean.get((r["scenario"], oracles[0]), math.nan)
        span = hi - lo
        r["score"] = (r["return"][0] - lo) / span if span != 0 else math.nan


def episodes_from_results(path: Path) -> tuple[list[Episode], dict[str, Any]]:
    """Rebuild episodes (without joint positions) from a report's results.json."""
    res = json.loads(Path(path).read_text())
    traces = {(t["method"], t["scenario"], t["seed"]): t for t in res["traces"]}
    eps = []
    for e in res["episodes"]:
        t = traces[(e["method"], e["scenario"], e["seed"])]
        pe = [v for v in t["pred_error"] if v is not None]
        e = dict(e, speed=t["speed"], pred_error_t=t["pred_error_t"], pred_error=t["pred_error"])
        e["pred_error_k"] = float(np.median(pe)) if pe else math.nan
        eps.append(Episode(**e))
    return eps, res["meta"]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The summary table; a ``score`` column when the rows have one."""
    scored = bool(rows) and "score" in rows[0]
    lines = ["| scenario | method | return |" + (" score |" if scored else "")
             + " speed (m/s) | distance (m) | flipped | tilted | k-step pred. error | "
             "recovery (s) | recovered | latency p50 (ms) |",
             "|---|---|---|" + ("---|" if scored else "") + "---|---|---|---|---|---|---|---|"]
    for r in rows:
        score = ""
        if scored:
            score = " – |" if math.isnan(r["score"]) else f" {r['score']:.2f} |"
        lines.append(
            f"| {r['scenario']} | {r['method']} | {_fmt(*r['return'])} |{score} "
            f"{_fmt(*r['speed'], digits=2)} | {_fmt(*r['distance_m'])} | "
            f"{_fmt(*r['flipped'], digits=2)} | {_fmt(*r['tilted'], digits=2)} | "
            f"{_fmt(*r['pred_error_k'], digits=3)} | "
            f"{_fmt(*r['recovery_s'], digits=2)} | {r['recovered']} | "
            f"{_fmt(*r['latency_ms'], digits=1)} |")
    return "\n".join(lines)


def table_caption(rows: list[dict[str, Any]]) -> str:
    """What the table's derived columns mean: flipped, and the score's formula when shown."""
    scored = bool(rows) and "score" in rows[0]
    return FLIPPED_CAPTION + ("; " + SCORE_CAPTION if scored else "") + "."


def report_meta(family: TaskFamily, methods: Sequence[MethodSpec], scenarios: Sequence[Scenario],
                seeds: Sequence[int], episode_steps: int, pred_k: int) -> dict[str, Any]:
    """What a report records of its evaluation besides the episodes (results.json's meta)."""
    return {
        "family": family.name, "robot": family.robot.name,
        "spec": spec_document(family),  # `adapt report` rebuilds a spec robot from it
        "methods": [m.describe() for m in methods], "scenarios": [s.name for s in scenarios],
        "schedules": {s.name: [[t, c.to_dict()] for t, c in s.schedule.segments]
                      for s in scenarios},
        "seeds": seeds, "episode_steps": episode_steps, "pred_k": pred_k,
    }


def write_report(out: Path, episodes: list[Episode], meta: dict[str, Any],
                 dt: float, video: bool = True, robot: str | None = None) -> dict[str, Path]:
    """Write results.json, episodes.csv, summary.md, the plots and (optionally) a video."""
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(episodes, {m["name"]: m.get("kind", "") for m in meta.get("methods", [])}
                     or None)
    files = {}
    files["results.json"] = out / "results.json"
    files["results.json"].write_text(json.dumps({
        "meta": meta, "summary": rows,
        "episodes": [e.summary() for e in episodes],
        "traces": [{"method": e.method, "scenario": e.scenario, "seed": e.seed,
                    "speed": e.speed, "pred_error_t": e.pred_error_t,
                    "pred_error": e.pred_error} for e in episodes],
    }, indent=1, default=lambda o: None))
    files["episodes.csv"] = out / "episodes.csv"
    with open(files["episodes.csv"], "w", newline="") as f:
        summaries = [e.summary() for e in episodes]
        w = csv.DictWriter(f, fieldnames=list(summaries[0]))
        w.writeheader()
        w.writerows(summaries)
    files["summary.md"] = out / "summary.md"
    files["summary.md"].write_text(
        f"# Evaluation: {meta.get('family', '')}\n\n"
        f"Mean ± standard deviation over seeds {meta.get('seeds')}; "
        f"{meta.get('episode_steps')} control steps per episode; k = {meta.get('pred_k')}.\n"
        + table_caption(rows) + "\n\n" + markdown_table(rows)
        + "\n\n![return](return_by_method.png)\n\n"
        "![speed](speed_over_time.png)\n\n![prediction error](pred_error_over_time.png)\n")
    files.update(plot_all(out, episodes, dt))
    if video and robot is not None:
        v = render_videos(out, episodes, robot, meta)
        if v is not None:
            files["video"] = v
    return files


def rebuild_report(folder: Path) -> Path:
    """Rewrite a report folder's table and plots from its results.json; returns summary.md."""
    from sims.registry import get_robot, register_document

    eps, meta = episodes_from_results(folder / "results.json")
    register_document(meta.get("spec", ""), str(folder / "results.json"))
    dt = get_robot(meta["robot"]).control_timestep
    write_report(folder, eps, meta, dt, video=False)
    return folder / "summary.md"


def plot_all(out: Path, episodes: list[Episode], dt: float) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    scenarios = sorted({e.scenario for e in episodes})
    methods = sorted({e.method for e in episodes})
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}

    # Return by method, per scenario, with the spread over seeds.
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(scenarios) * len(methods) / 2), 4))
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        means, stds = [], []
        for s in scenarios:
            r = [e.ret for e in episodes if e.method == m and e.scenario == s]
            means.append(np.mean(r) if r else np.nan)
            stds.append(np.std(r, ddof=1) if len(r) > 1 else 0.0)
        x = np.arange(len(scenarios)) + j * width
        ax.bar(x, means, width, yerr=stds, capsize=3, label=m, color=colors[m])
        for s_i, s in enumerate(scenarios):
            eps = [e for e in episodes if e.method == m and e.scenario == s]
            ax.scatter([x[s_i]] * len(eps), [e.ret for e in eps], color="k", s=6, zorder=3)
            if eps:  # a robot on its back or its nose fails whatever its return
                ax.text(x[s_i], 0.02, f"{100 * np.nanmean([e.flipped for e in eps]):.0f}/"
                        f"{100 * np.nanmean([e.tilted for e in eps]):.0f}%",
                        transform=ax.get_xaxis_transform(), ha="center", fontsize=6,
                        zorder=4)
    ax.set_xticks(np.arange(len(scenarios)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels([s.replace(":", "\n", 1) for s in scenarios], fontsize=7)
    ax.set_ylabel("episode return")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    ax.set_title("Return by method (bars: mean ± std over seeds; dots: seeds)\n"
                 "%: steps flipped / tilted > 60°", fontsize=9)
    fig.tight_layout()
    files["return_by_method.png"] = out / "return_by_method.png"
    fig.savefig(files["return_by_method.png"], dpi=110)
    plt.close(fig)

    # Speed over time, one panel per scenario, switch marked.
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(8, 2.4 * len(scenarios)),
                             squeeze=False)
    for ax, s in zip(axes[:, 0], scenarios, strict=True):
        for m in methods:
            eps = [e for e in episodes if e.method == m and e.scenario == s]
            if not eps:
                continue
            n = min(len(e.speed) for e in eps)
            sp = np.mean([moving_average(np.asarray(e.speed[:n]), 25) for e in eps],
                         axis=0)
            ax.plot(np.arange(n) * dt, sp, label=m, color=colors[m], lw=1.2)
            sw = eps[0].switch_step
            if sw is not None:
                ax.axvline(sw * dt, color="r", ls="--", lw=1)
        ax.set_title(s, fontsize=8)
        ax.set_ylabel("speed (m/s)")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(fontsize=7, ncol=len(methods))
    fig.tight_layout()
    files["speed_over_time.png"] = out / "speed_over_time.png"
    fig.savefig(files["speed_over_time.png"], dpi=110)
    plt.close(fig)

    # Prediction error over time (model-based methods).
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(8, 2.4 * len(scenarios)),
                             squeeze=False)
    for ax, s in zip(axes[:, 0], scenarios, strict=True):
        for m in methods:
            eps = [e for e in episodes if e.method == m and e.scenario == s and e.pred_error]
            if not eps:
                continue
            n = min(len(e.pred_error) for e in eps)
            t = np.asarray(eps[0].pred_error_t[:n]) * dt
            ax.plot(t, np.mean([e.pred_error[:n] for e in eps], axis=0), label=m,
                    color=colors[m], lw=1.2)
            sw = eps[0].switch_step
            if sw is not None:
                ax.axvline(sw * dt, color="r", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(s, fontsize=8)
        ax.set_ylabel("k-step error")
    axes[-1, 0].set_xlabel("time (s)")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    files["pred_error_over_time.png"] = out / "pred_error_over_time.png"
    fig.savefig(files["pred_error_over_time.png"], dpi=110)
    plt.close(fig)
    return files


def render_videos(out: Path, episodes: list[Episode], robot_name: str,
                  meta: dict[str, Any], max_videos: int = 2, fps: int = 25) -> Path | None:
    """Replay recorded joint positions of the first seed's episodes into MP4 files."""
    import mujoco

    from sims.conditions import Condition
    from sims.physics import Physics
    from sims.registry import get_robot
    from sims.render import render_frame, save_video

    robot = get_robot(robot_name)
    chosen = [e for e in episodes if e.qpos][:max_videos]
    if not chosen:
        return None
    first = None
    schedules = meta.get("schedules", {})
    for ep in chosen:
        segs = schedules.get(ep.scenario) or [[0.0, {"modifiers": []}]]
        models = [Condition.from_dict(c).build(robot) for _, c in segs]
        phys = Physics(robot, models[0])
        renderer = mujoco.Renderer(models[0], height=240, width=320)
        every = max(1, int(round(1.0 / (fps * robot.control_timestep))))
        frames = []
        current = 0
        for t in range(0, len(ep.qpos), every):
            seg = ep.segment[t] if t < len(ep.segment) else 0
            if seg != current:
                current = seg
                phys = Physics(robot, models[seg])
                renderer.close()
                renderer = mujoco.Renderer(models[seg], height=240, width=320)
            phys.data.qpos[:] = ep.qpos[t]
            mujoco.mj_forward(phys.model, phys.data)
            frames.append(render_frame(phys, renderer=renderer))
        renderer.close()
        name = f"video_{ep.method}_{_slug(ep.scenario)}.mp4"
        path = save_video(frames, out / name, fps=fps)
        first = first or path
    return first


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_")[:60]
