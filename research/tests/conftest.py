"""Setup for the research diagnostics' tests (not collected by the default ``pytest`` run:
``testpaths = ["tests"]``). Run them explicitly: ``pytest research/tests``.

``MUJOCO_GL`` must be set before anything imports mujoco (OSMesa on a machine without a
display). The diagnostics import their shared ``_helpers`` module from their own folder, which
is on ``sys.path`` when a script runs; here it is put there for the tests that load them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

RESEARCH = Path(__file__).resolve().parents[1]
if str(RESEARCH) not in sys.path:
    sys.path.insert(0, str(RESEARCH))
