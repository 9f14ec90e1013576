#!/usr/bin/env bash
# Set up adaptive-control on a fresh machine: system libraries for offscreen rendering, then a
# virtual environment in .venv with the package and its development extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# Offscreen rendering (videos, `adapt sims render`) uses OSMesa on machines without a GPU.
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null
  else
    echo "setup: libOSMesa not found; install Debian's libosmesa6 for offscreen rendering" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
# torch==2.13.0 first: the local CPU wheel satisfies it, so no CUDA build is downloaded.
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
echo "setup: ok ($(.venv/bin/python -c 'import torch, mujoco; print("torch", torch.__version__, "mujoco", mujoco.__version__)'))"
