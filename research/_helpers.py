"""Helpers shared by the research diagnostics (not part of the installed package).

The scripts run with this folder on ``sys.path`` (``python research/label_noise.py ...``), so
they import it as ``from _helpers import ...``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

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
