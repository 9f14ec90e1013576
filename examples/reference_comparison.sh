#!/usr/bin/env bash
# The GrBAL paper's comparison on our sims: GrBAL, ReBAL, MB, MB+DE and a random-action floor on
# held-out cheetah-cripple, cheetah-terrain and quadruped-leg-failure, plus the mid-episode
# failure (healthy for 3 s, then the held-out damage). Small preset (minutes per model on
# 2 cores); set PRESET=paper for the paper's budget.
#
#   bash examples/reference_comparison.sh [OUT]   (default OUT=reports/reference)
#
# EVAL_RAY=HEAD:6379 (or local) runs each evaluation's episodes as Ray tasks on that cluster
# (`adapt eval --ray`, docs/scale-out.md); OUT must then be on a filesystem every node sees.
set -euo pipefail
OUT=${1:-reports/reference}
PRESET=${PRESET:-small}
SEEDS=${SEEDS:-3}
DURATION=${DURATION:-20}
ADAPT=${ADAPT:-adapt}
FAMILIES=${FAMILIES:-"cheetah-cripple cheetah-terrain quadruped-leg-failure"}
EVAL_RAY=${EVAL_RAY:-}
ray=()
[ -n "$EVAL_RAY" ] && ray=(--ray "$EVAL_RAY")
mkdir -p "$OUT/runs"

train() {  # family learner
  local dir="$OUT/runs/$1-$2" extra=()
  # Terrain changes the ground, not the motors: ReBAL keeps its plain GRU context there.
  if [ "$1" = cheetah-terrain ] && [ "$2" = rebal ]; then
    extra=(--set rebal.action_gains=false --set rebal.hidden_size=128 --set rebal.lr=3e-3)
  fi
  if [ -f "$dir/checkpoint.pt" ]; then
    $ADAPT train "$PRESET" --set "family='$1'" --set "learner='$2'" "${extra[@]}" --out "$dir" \
      --resume --quiet
  else
    $ADAPT train "$PRESET" --set "family='$1'" --set "learner='$2'" "${extra[@]}" --out "$dir" \
      --quiet
  fi
}

for family in $FAMILIES; do
  for learner in grbal rebal mb; do
    train "$family" "$learner"
  done
  $ADAPT eval-model "$OUT/runs/$family-grbal" "$OUT/runs/$family-rebal" "$OUT/runs/$family-mb" \
    --out "$OUT/$family-model-error.json"
  scenarios=fixed,switch
  [ "$family" = cheetah-terrain ] && scenarios=fixed
  $ADAPT eval --family "$family" --scenarios "$scenarios" --seeds "$SEEDS" \
    --duration "$DURATION" --video --overwrite --out "$OUT/$family" "${ray[@]}" \
    --method "grbal=$OUT/runs/$family-grbal" --method "rebal=$OUT/runs/$family-rebal" \
    --method "mb=$OUT/runs/$family-mb" --method "mbde=mbde:$OUT/runs/$family-mb" --method random
done
echo "reference comparison written to $OUT"
