"""What a long run of :func:`export.runtime.loop.run` looks like over time: per-step latencies
in fixed storage (:class:`LatencyLog`), one :class:`Timeline` row per window (latency,
misses, memory, the robot's condition and speed), the memory growth of the run and the
``timeline.png`` plot.

numpy only; matplotlib is imported by :func:`write_plot` alone (a robot's environment may
lack it).
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Per-step latencies
# --------------------------------------------------------------------------------------------


class LatencyLog:
    """Per-step latencies in seconds, in one preallocated float64 array.

    :meth:`reserve` allocates room for a run's ticks before the robot starts and writes every
    page (so the pages are resident then, not faulted in one by one during the run); appending
    then allocates nothing, whatever the run's length. Past its capacity (a session stepped
    outside :func:`~export.runtime.loop.run`) the array doubles.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._buf = np.full(max(1, int(capacity)), np.nan)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, seconds: float) -> None:
        if self._n == len(self._buf):
            self.reserve(2 * self._n)
        self._buf[self._n] = seconds
        self._n += 1

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` values in all (the stored ones kept)."""
        if capacity > len(self._buf):
            buf = np.full(int(capacity), np.nan)  # written, hence resident, now
            buf[:self._n] = self._buf[:self._n]
            self._buf = buf

    def clear(self) -> None:
        self._n = 0

    def values(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A view of the stored latencies ``[start:stop]`` (seconds)."""
        end = self._n if stop is None else min(stop, self._n)
        return self._buf[start:end]


# --------------------------------------------------------------------------------------------
# Process memory
# --------------------------------------------------------------------------------------------

#: How :func:`process_memory_mb` measures: the current resident set from /proc/self/statm
#: (Linux), else the peak resident set from ``resource.getrusage`` (which can only grow, so a
#: flat peak still means flat memory), else nothing.
if os.path.exists("/proc/self/statm"):
    MEMORY_SOURCE = "rss (/proc/self/statm)"
else:
    try:
        import resource  # noqa: F401  (not on Windows)

        MEMORY_SOURCE = "peak rss (resource.getrusage)"
    except ImportError:
        MEMORY_SOURCE = "none"

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_memory_mb() -> float | None:
    """This process's memory in MB, measured as :data:`MEMORY_SOURCE` says (None: unknown)."""
    if MEMORY_SOURCE.startswith("rss"):
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    if MEMORY_SOURCE.startswith("peak"):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
    return None


# --------------------------------------------------------------------------------------------
# The timeline
# --------------------------------------------------------------------------------------------


def _ms(a: np.ndarray, q: float | None) -> float | None:
    if not len(a):
        return None
    return float((a.max() if q is None else np.percentile(a, q)) * 1e3)


class Timeline:
    """One row per window of ``window_ticks`` ticks, closed by :meth:`close` in idle time.

    A row: ``t_s`` (the run's clock at the window's end: ticks / rate), ``wall_s``, ``steps``,
    the session's step latency ``p50_ms`` / ``p99_ms`` / ``max_ms`` in the window,
    ``deadline_misses`` and ``overruns`` in the window, ``memory_mb`` (:func:`process_memory_mb`
    at the window's end) and, from the robot's ``metrics()`` when it has them, ``condition``,
    ``speed`` and ``distance`` at the window's end, ``mean_speed`` over the window (change of
    ``distance`` over change of ``sim_time``) and ``flipped`` (the share of the window's
    control steps with the torso upside down, from ``flipped_steps`` / ``sim_steps``) and
    ``tilted`` (tilted beyond 60°, from ``tilted_steps``), then the items of ``extra`` (a
    robot's own per-window figures, e.g. a DDS robot's added latency and faults).
    """

    def __init__(self, window_ticks: int, rate_hz: float) -> None:
        self.window_ticks, self.rate_hz = window_ticks, rate_hz
        self.rows: list[dict[str, Any]] = []
        self._start = 0
        self._misses = self._overruns = 0
        self._flipped = self._tilted = self._sim_steps = 0
        self._distance = self._sim_time = 0.0
        # numpy's first percentile costs ~8 ms (lazy set-up): pay it now, before the robot
        # starts, not in the idle time of the first window's last tick.
        _ms(np.zeros(4), 50)
        process_memory_mb()

    def due(self, ticks: int) -> bool:
        """Whether ``ticks`` completed ticks end a window."""
        return ticks - self._start >= self.window_ticks

    def close(self, ticks: int, wall_s: float, latencies: LatencyLog, misses: int,
              overruns: int, metrics: Mapping[str, Any] | None,
              extra: Mapping[str, Any] | None = None) -> None:
        """Append the row of the window ending after ``ticks`` ticks (counters: run totals)."""
        if ticks <= self._start:
            return
        lat = latencies.values(self._start, ticks)
        row: dict[str, Any] = {
            "t_s": ticks / self.rate_hz, "wall_s": wall_s, "steps": ticks - self._start,
            "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99), "max_ms": _ms(lat, None),
            "deadline_misses": misses - self._misses, "overruns": overruns - self._overruns,
            "memory_mb": process_memory_mb(),
        }
        m = metrics or {}
        for key in ("condition", "speed", "distance"):
            row[key] = m.get(key)
        row["mean_speed"] = row["flipped"] = row["tilted"] = None
        if "distance" in m and "sim_time" in m:
            dt = float(m["sim_time"]) - self._sim_time
            row["mean_speed"] = (float(m["distance"]) - self._distance) / dt if dt > 0 else None
            self._distance, self._sim_time = float(m["distance"]), float(m["sim_time"])
        if "flipped_steps" in m and "sim_steps" in m:
            steps = int(m["sim_steps"]) - self._sim_steps
            flipped = int(m["flipped_steps"]) - self._flipped
            row["flipped"] = flipped / steps if steps > 0 else 0.0
            if "tilted_steps" in m:
                tilted = int(m["tilted_steps"]) - self._tilted
                row["tilted"] = tilted / steps if steps > 0 else 0.0
                self._tilted = int(m["tilted_steps"])
            self._flipped, self._sim_steps = int(m["flipped_steps"]), int(m["sim_steps"])
        row.update(extra or {})
        self.rows.append(row)
        self._start, self._misses, self._overruns = ticks, misses, overruns


def memory_growth(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The last window's memory against the first window's (which follows the warm-up: the
    session warms up before the robot starts), in MB and %; None with fewer than two windows
    or no measurement."""
    mem = [r["memory_mb"] for r in rows if r.get("memory_mb") is not None]
    if len(mem) < 2:
        return {"first_mb": mem[0] if mem else None, "last_mb": mem[-1] if mem else None,
                "growth_mb": None, "growth_pct": None}
    first, last = mem[0], mem[-1]
    return {"first_mb": first, "last_mb": last, "growth_mb": last - first,
            "growth_pct": 100.0 * (last - first) / first if first > 0 else math.nan}


# --------------------------------------------------------------------------------------------
# The plot
# --------------------------------------------------------------------------------------------


def write_plot(path: str | Path, rows: Sequence[Mapping[str, Any]], deadline_ms: float,
               switches: Sequence[tuple[float, str]] = (), title: str = "") -> None:
    """``timeline.png``: latency p50/p99/max per window with the deadline (and a DDS robot's
    added latency, state stamped -> command written, when the rows have it), misses per window,
    memory, speed and the flipped / tilted shares over time, the condition switches marked on
    every panel.

    Raises ImportError when matplotlib is missing (the caller says so and goes on).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r["t_s"] for r in rows], float)

    def col(key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)

    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    ax = axes[0]
    for key, style in (("max_ms", ":"), ("p99_ms", "-"), ("p50_ms", "-")):
        ax.plot(t, col(key), style, marker=".", label=key.replace("_ms", ""))
    if any(r.get("dds_added_p99_ms") is not None for r in rows):  # a dds: robot's hop
        ax.plot(t, col("dds_added_p50_ms"), "--", marker="x", label="DDS added p50")
        ax.plot(t, col("dds_added_p99_ms"), "--", marker="x", label="DDS added p99")
    ax.axhline(deadline_ms, color="red", lw=1, label=f"deadline {deadline_ms:g} ms")
    ax.set_ylabel("step latency (ms)")
    ax.legend(loc="center left", fontsize=8, ncol=4)
    start = np.r_[0.0, t[:-1]]  # each window's bar spans its ticks
    axes[1].bar(start, col("deadline_misses"), width=t - start, align="edge",
                label="deadline misses", edgecolor="white")
    axes[1].plot(t, col("overruns"), "k.", label="overruns (at the window's end)")
    axes[1].set_ylabel("per window")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, col("memory_mb"), marker=".")
    axes[2].set_ylabel(f"memory (MB)\n{MEMORY_SOURCE}", fontsize=8)
    axes[3].plot(t, col("mean_speed"), marker=".", label="mean over the window")
    axes[3].plot(t, col("speed"), ".", color="grey", label="at the window's end")
    axes[3].set_ylabel("speed (m/s)")
    axes[3].legend(loc="upper left", fontsize=8)
    shares = axes[3].twinx()  # on its back or its nose is not running, whatever the speed
    shares.plot(t, 100 * col("flipped"), "r:", marker="x", label="flipped %")
    shares.plot(t, 100 * col("tilted"), "m:", marker="+", label="tilted > 60° %")
    shares.set_ylim(-2, 102)
    shares.set_ylabel("share of the window (%)")
    shares.legend(loc="upper right", fontsize=8)
    axes[3].set_xlabel("time (s), at the end of each window")
    for ts, label in switches:
        for a in axes:
            a.axvline(ts, color="grey", ls="--", lw=1)
        axes[3].annotate(label, (ts, 0.02), xycoords=("data", "axes fraction"),
                         rotation=90, va="bottom", ha="right", fontsize=8)
    if title:  # a long schedule would run off the figure: wrapped
        fig.suptitle("\n".join(textwrap.fill(line, 110) for line in title.splitlines()),
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
