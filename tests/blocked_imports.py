"""Source for subprocess test scripts that must prove a code path never imports a package."""

from __future__ import annotations

import textwrap


def blocking_prelude(*packages: str) -> str:
    """Python source making any import of ``packages`` (top-level names) raise ImportError.

    It defines ``BLOCKED`` (the set), so the script can also assert that none of them is in
    ``sys.modules`` at the end.
    """
    return textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {sorted(packages)!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked import of {{name}}")
                return None
        sys.meta_path.insert(0, Block())
    """)


#: What the robot-side entry point (``python -m export.runtime.cli deploy`` on a simulated
#: robot) never needs: the training stack and the ONNX exporter.
TRAINING = ("torch", "adaptive_control", "policies", "dm_env", "dm_control", "onnx",
            "onnxscript")
#: What the runtime alone (a session and the loop, on the robot's own computer) never needs.
RUNTIME = (*TRAINING, "mujoco", "sims")
