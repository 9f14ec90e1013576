#!/usr/bin/env bash
# GrBAL against MB, MB+DE, the oracle and the random floor over training seeds, on one family:
# healthy, the held-out conditions fixed, and the failure at 3 s; then mean, 95 % confidence
# intervals over training seeds and paired differences (research/seed_summary.py).
#
#   bash examples/seed_comparison.sh [OUT]   (default OUT=reports/seeds)
#
# SEEDS=0-4 FAMILY=cheetah-cripple DURATION=20 (seconds) PRESET=small; resumable (adapt sweep, and each
# seed's evaluation is skipped once its report exists).
set -euo pipefail
OUT=${1:-reports/seeds}
SEEDS=${SEEDS:-0-4}
FAMILY=${FAMILY:-cheetah-cripple}
DURATION=${DURATION:-20}
PRESET=${PRESET:-small}
ADAPT=${ADAPT:-adapt}
PYTHON=${PYTHON:-python}
$ADAPT sweep "$PRESET" --seeds "$SEEDS" --set "family='$FAMILY'" --set learner=grbal,mb \
  --set threads=1 --workers 2 --quiet --out "$OUT"
reports=()
for run in "$OUT"/learner=grbal,seed=*; do
  seed=${run##*seed=}
  mb="$OUT/learner=mb,seed=$seed"
  report="$OUT/eval-seed$seed"
  if [ ! -f "$report/results.json" ]; then
    $ADAPT eval --family "$FAMILY" --scenarios healthy,fixed,switch --seeds 1 \
      --duration "$DURATION" --workers 2 --overwrite --out "$report" \
      --method "grbal=$run" --method "mb=$mb" --method "mbde=mbde:$mb" \
      --method "oracle=oracle:$run" --method random
  fi
  reports+=("$report")
done
$PYTHON research/seed_summary.py "${reports[@]}" --pair grbal-mb --pair grbal-mbde \
  --out "$OUT/summary.json"
