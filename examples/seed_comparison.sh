#!/usr/bin/env bash
# GrBAL against MB, MB+DE, the oracle and the random floor over training seeds, on one family:
# healthy, the held-out conditions fixed, and the failure at 3 s; then mean, 95 % confidence
# intervals over training seeds and paired differences (research/seed_summary.py).
#
#   bash examples/seed_comparison.sh [OUT]   (default OUT=reports/seeds)
#
# SEEDS=0-4 FAMILY=cheetah-cripple DURATION=20 (seconds) EVAL_SEEDS=2 PRESET=small; resumable
# (adapt sweep, and each evaluation is skipped once its report exists). The oracle and the random
# floor do not depend on the training seed: they are evaluated once, on the same episodes.
set -euo pipefail
OUT=${1:-reports/seeds}
SEEDS=${SEEDS:-0-4}
FAMILY=${FAMILY:-cheetah-cripple}
DURATION=${DURATION:-20}
EVAL_SEEDS=${EVAL_SEEDS:-2}
PRESET=${PRESET:-small}
ADAPT=${ADAPT:-adapt}
PYTHON=${PYTHON:-python}
SCENARIOS=healthy,fixed,switch
$ADAPT sweep "$PRESET" --seeds "$SEEDS" --set "family='$FAMILY'" --set learner=grbal,mb \
  --set threads=1 --workers 2 --quiet --out "$OUT"
runs=("$OUT"/learner=grbal,seed=*)
if [ ! -f "$OUT/eval-baselines/results.json" ]; then
  $ADAPT eval --family "$FAMILY" --scenarios "$SCENARIOS" --seeds "$EVAL_SEEDS" \
    --duration "$DURATION" --workers 2 --overwrite --out "$OUT/eval-baselines" \
    --method "oracle=oracle:${runs[0]}" --method random
fi
reports=()
for run in "${runs[@]}"; do
  seed=${run##*seed=}
  mb="$OUT/learner=mb,seed=$seed"
  report="$OUT/eval-seed$seed"
  if [ ! -f "$report/results.json" ]; then
    $ADAPT eval --family "$FAMILY" --scenarios "$SCENARIOS" --seeds "$EVAL_SEEDS" \
      --duration "$DURATION" --workers 2 --overwrite --out "$report" \
      --method "grbal=$run" --method "mb=$mb" --method "mbde=mbde:$mb"
  fi
  reports+=("$report")
done
$PYTHON research/seed_summary.py "${reports[@]}" --baselines "$OUT/eval-baselines" \
  --pair grbal-mb --pair grbal-mbde --out "$OUT/summary.json"
