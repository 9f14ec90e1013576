"""The layers hold: data flows sims -> adaptive_control -> policies -> export, and only the
command line sits on top. The contracts live in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sims", "adaptive_control", "policies", "export")


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter, a dev dependency) is not installed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and "KEPT" in res.stdout


def test_no_imports_hidden_from_the_layer_check():
    """``importlib.import_module`` across packages would hide an import from the contracts."""
    hidden = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "import_module"):
                    arg = node.args[0] if node.args else None
                    # A package's own lazy attribute loader may import its own submodules.
                    own = isinstance(arg, ast.Subscript) or (
                        isinstance(arg, ast.Constant) and str(arg.value).startswith(pkg + "."))
                    if not own:
                        hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hidden, f"dynamic imports outside the layer check: {hidden}"


def test_the_adapt_command_line_builds_without_the_training_stack():
    """``adapt deploy`` runs on a robot that has only the runtime's dependencies: building the
    whole ``adapt`` parser must import neither torch nor the training packages' heavy modules."""
    from blocked_imports import blocking_prelude

    script = blocking_prelude("torch", "dm_env", "dm_control", "onnx", "onnxscript", "ray") + (
        "from adaptive_control.cli import build_parser\n"
        "build_parser().parse_args(['deploy', 'somewhere', '--robot', 'sim:cheetah'])\n"
        "assert not any(m.split('.')[0] in BLOCKED for m in sys.modules), 'blocked import'\n"
        "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
