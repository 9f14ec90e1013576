"""``--switch T=COND``: a schedule of condition changes for a simulated robot (``adapt deploy
--robot sim:NAME`` and ``adapt dds-robot``). Parsing the times needs nothing; the conditions are
parsed against the robot with ``sims`` only when a simulated robot runs."""

from __future__ import annotations

import math
from typing import Any


def parse_switches(values: list[str], duration: float) -> list[tuple[float, str]]:
    """``--switch T=COND`` values as (time, condition text): times > 0, increasing and inside
    the run. The conditions are parsed against the robot by :func:`switch_conditions`."""
    switches: list[tuple[float, str]] = []
    for text in values:
        t_text, sep, cond = text.partition("=")
        try:
            t = float(t_text)
        except ValueError:
            t = math.nan
        if not sep or not cond.strip() or not math.isfinite(t):
            raise ValueError(f"--switch {text!r}: allowed T=COND, a time in seconds and a "
                             "condition (e.g. --switch 600=disabled:bthigh)")
        low = switches[-1][0] if switches else 0.0
        if not low < t < duration:
            after = f"the previous switch's {low:g} s" if switches else "0 s"
            raise ValueError(f"--switch {text!r}: time {t:g} s is not allowed: allowed a time "
                             f"after {after} (times increasing) and before --duration "
                             f"{duration:g} s")
        switches.append((t, cond.strip()))
    return switches


def switch_conditions(switches: list[tuple[float, str]], robot: Any) -> list[tuple[float, Any]]:
    """Each switch's condition parsed and validated against ``robot``."""
    from sims.conditions import parse_condition

    parsed = []
    for t, cond in switches:
        try:
            parsed.append((t, parse_condition(cond, robot)))
        except ValueError as e:
            raise ValueError(f"--switch {f'{t:g}={cond}'!r}: {e}") from e
    return parsed
