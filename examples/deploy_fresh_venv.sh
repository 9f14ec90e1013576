#!/usr/bin/env bash
# Export a trained controller, deploy it from a fresh virtual environment that holds only numpy,
# onnxruntime and mujoco (plus this project's code, installed without dependencies), drive the
# simulated cheetah with its held-out back thigh disabled in real time, and compare the returns
# with the torch controller's on the same seeds.
#
#   bash examples/deploy_fresh_venv.sh CHECKPOINT [OUT]     (main venv: .venv, or $PY)
#
# EXPORT_ARGS (default "--deploy-preset --precision int8": the planner measured to fit 100 Hz on
# one core, docs/export.md) are passed to `adapt export`; SEEDS (5), DURATION (5 s), CONDITION.
#
# The runtime venv has no matplotlib: each seed's folder gets report.json (with its timeline)
# and deploy says in one line that it skips timeline.png.
set -euo pipefail
CKPT=${1:?usage: deploy_fresh_venv.sh CHECKPOINT [OUT]}
OUT=${2:-reports/deploy}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-5}
SECONDS_PER_EPISODE=${DURATION:-5}
CONDITION=${CONDITION:-disabled:bthigh}
EXPORT_ARGS=${EXPORT_ARGS:---deploy-preset --precision int8}
mkdir -p "$OUT"

# shellcheck disable=SC2086
"$PY" -m adapt_cli export "$CKPT" --out "$OUT/export" --force $EXPORT_ARGS

VENV="$OUT/venv-runtime"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check numpy onnxruntime "mujoco>=3.2,<4"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps .
"$VENV/bin/python" - <<'PYEOF'
import importlib.util, sys
missing = [m for m in ("torch", "dm_control", "dm_env", "onnx") if importlib.util.find_spec(m)]
print("runtime venv packages beyond numpy/onnxruntime/mujoco:", missing or "none")
sys.exit(1 if missing else 0)
PYEOF

for seed in $(seq 0 $((SEEDS - 1))); do
  "$VENV/bin/adapt" deploy "$OUT/export" --robot sim:cheetah --condition "$CONDITION" \
    --duration "$SECONDS_PER_EPISODE" --seed "$seed" --quiet --out "$OUT/seed$seed"
done

"$PY" - "$CKPT" "$OUT" "$SEEDS" "$SECONDS_PER_EPISODE" "$CONDITION" <<'PYEOF'
import json, sys
import numpy as np
from export.quickstart import torch_returns
ckpt, out, seeds, duration, cond = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
reports = [json.load(open(f"{out}/seed{s}/report.json")) for s in range(seeds)]
steps = reports[0]["report"]["steps"]
onnx = [r["return"] for r in reports]
torch_r = torch_returns(ckpt, cond, list(range(seeds)), steps, runtime_noise=True,
                        export_dir=f"{out}/export")
summary = {
    "condition": cond, "steps": steps, "seeds": seeds, "realtime": reports[0]["realtime"],
    "onnx_returns": onnx, "torch_returns": torch_r,
    "onnx_mean": float(np.mean(onnx)), "torch_mean": float(np.mean(torch_r)),
    "relative_difference": float(abs(np.mean(onnx) - np.mean(torch_r)) / max(abs(np.mean(torch_r)), 1e-9)),
    "speed_m_s": [r["distance"] / r["duration_s"] for r in reports],
    "flipped": [r["report"]["robot"]["flipped_steps"] / max(r["report"]["robot"]["sim_steps"], 1)
                for r in reports],
    "latency_ms_p50": [r["latency_ms"]["p50"] for r in reports],
    "latency_ms_p99": [r["latency_ms"]["p99"] for r in reports],
    "deadline_misses": [r["deadline_misses"] for r in reports],
}
json.dump(summary, open(f"{out}/comparison.json", "w"), indent=2)
print(json.dumps(summary))
PYEOF
