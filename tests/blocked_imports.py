"""Source for subprocess test scripts that must prove a code path never imports a package."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def assert_script_prints_ok(script: str) -> None:
    """Run ``script`` in a fresh interpreter on this checkout; it must exit 0 printing ``ok``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


#: What the robot-side entry point (``python -m export.runtime.cli deploy`` on a simulated
#: robot) never needs: the training stack and the ONNX exporter.
TRAINING = ("torch", "adaptive_control", "policies", "dm_env", "dm_control", "onnx",
            "onnxscript")
#: What the runtime alone (a session and the loop, on the robot's own computer) never needs.
RUNTIME = (*TRAINING, "mujoco", "sims")


def deploy_without_torch(export_dir: Path, out: Path) -> tuple[dict, str]:
    """``python -m export.runtime.cli deploy EXPORT`` on ``sim:cheetah`` for 0.2 s, as fast as
    it goes, in a process where the training stack and matplotlib cannot be imported (a robot's
    environment); asserts it ran without torch and returns its report.json and its output."""
    import json

    script = blocking_prelude(*TRAINING, "matplotlib") + textwrap.dedent(f"""
        from export.runtime.cli import main
        rc = main(["deploy", {str(export_dir)!r}, "--robot", "sim:cheetah", "--duration", "0.2",
                   "--fast", "--quiet", "--out", {str(out)!r}])
        assert "torch" not in sys.modules
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "report.json").read_text()), proc.stdout
