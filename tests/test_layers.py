"""The layers hold: data flows sims -> adaptive_control -> policies -> export, and only the
command line (adapt_cli) sits on top; file_errors, below sims, imports none of them. The
contracts live in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("file_errors", "sims", "adaptive_control", "policies", "export", "adapt_cli")


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter, a dev dependency) is not installed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and "KEPT" in res.stdout


def test_the_contracts_state_the_layers_without_exemptions():
    """One layers contract, top to bottom, over every package; no contract ignores an import."""
    linter = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert sorted(linter["root_packages"]) == sorted(PACKAGES)
    layers = [c for c in linter["contracts"] if c["type"] == "layers"]
    assert [c["layers"] for c in layers] == [
        ["adapt_cli", "export", "policies", "adaptive_control", "sims", "file_errors"]]
    assert not [c["name"] for c in linter["contracts"] if c.get("ignore_imports")]


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
    from blocked_imports import assert_script_prints_ok, blocking_prelude

    script = blocking_prelude("torch", "dm_env", "dm_control", "onnx", "onnxscript", "ray") + (
        "from adapt_cli import build_parser\n"
        "build_parser().parse_args(['deploy', 'somewhere', '--robot', 'sim:cheetah'])\n"
        "assert not any(m.split('.')[0] in BLOCKED for m in sys.modules), 'blocked import'\n"
        "print('ok')\n")
    assert_script_prints_ok(script)


def test_dm_control_is_an_optional_extra_that_no_code_imports():
    """No Python file of the repository imports dm_control; the core dependencies leave it out
    and hold mujoco below 4, and the [dmcontrol] extra pins it, as the README states."""
    imports = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if any(part.startswith(".") for part in rel.parts):  # .venv, .git
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(n.split(".")[0] == "dm_control" for n in names):
                imports.append(f"{rel}:{node.lineno}")
    assert not imports, f"dm_control is an optional extra, imported at {imports}"

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core, extras = project["dependencies"], project["optional-dependencies"]

    def pins_dm_control(deps: list[str]) -> bool:
        return any(d.replace("-", "_").lower().startswith("dm_control") for d in deps)

    assert not pins_dm_control(core)
    assert [k for k, deps in extras.items() if pins_dm_control(deps)] == ["dmcontrol"]
    (dm_control,) = extras["dmcontrol"]
    (mujoco,) = [d for d in core if d.startswith("mujoco")]
    assert "==" in dm_control and mujoco.endswith(",<4")
    readme = (ROOT / "README.md").read_text()
    for statement in (f"`{mujoco}`", f"`{dm_control}`", "'adaptive-control[dmcontrol]'"):
        assert statement in readme, statement
