#!/usr/bin/env bash
# The GrBAL paper's comparison on our sims, over training seeds: GrBAL, ReBAL, MB, MB+DE, the
# oracle (GrBAL's planner on the true simulator) and the random floor on held-out
# cheetah-cripple, cheetah-terrain and quadruped-leg-failure: healthy, the held-out condition
# all episode (fixed) and the failure at 3 s (switch; not for terrain, whose held-out
# conditions are ground shapes). Then mean, 95 % intervals over training seeds and paired
# differences per family, method and scenario, gathered in OUT/summary.json
# (research/seed_summary.py) and plotted in OUT/speed_by_method.png.
#
#   bash examples/reference_comparison.sh [OUT]   (default OUT=reports/reference)
#
# SEEDS=0-4 EVAL_SEEDS=2 DURATION=20 (seconds) PRESET=small; FAMILIES="..." for a subset.
# Resumable: the sweeps resume, and an evaluation is skipped once its report exists. About
# 3 h on 2 cores with the small preset (docs/results.md §2).
# EVAL_RAY=HEAD:6379 (or local) runs each evaluation's episodes as Ray tasks on that cluster
# (`adapt eval --ray`, docs/scale-out.md); OUT must then be on a filesystem every node sees.
set -euo pipefail
OUT=${1:-reports/reference}
PRESET=${PRESET:-small}
SEEDS=${SEEDS:-0-4}
EVAL_SEEDS=${EVAL_SEEDS:-2}
DURATION=${DURATION:-20}
ADAPT=${ADAPT:-adapt}
PYTHON=${PYTHON:-python}
FAMILIES=${FAMILIES:-"cheetah-cripple cheetah-terrain quadruped-leg-failure"}
EVAL_RAY=${EVAL_RAY:-}
where=(--workers 2)
[ -n "$EVAL_RAY" ] && where=(--ray "$EVAL_RAY")

evaluate() {  # report, then adapt eval's --method arguments; skipped once the report exists
  local report=$1
  shift
  [ -f "$report/results.json" ] && return
  $ADAPT eval --family "$family" --scenarios "$scenarios" --seeds "$EVAL_SEEDS" \
    --duration "$DURATION" --overwrite --out "$report" "${where[@]}" "$@"
}

for family in $FAMILIES; do
  scenarios=healthy,fixed,switch
  rebal=()
  if [ "$family" = cheetah-terrain ]; then
    scenarios=healthy,fixed
    # Terrain changes the ground, not the motors: ReBAL keeps its plain GRU context there.
    rebal=(--set rebal.action_gains=false --set rebal.hidden_size=128 --set rebal.lr=3e-3)
  fi
  runs="$OUT/runs/$family"
  $ADAPT sweep "$PRESET" --seeds "$SEEDS" --set "family='$family'" --set learner=grbal,mb \
    --set threads=1 --workers 2 --quiet --out "$runs"
  $ADAPT sweep "$PRESET" --seeds "$SEEDS" --set "family='$family'" --set learner=rebal \
    "${rebal[@]}" --set threads=1 --workers 2 --quiet --out "$runs-rebal"
  grbal=("$runs"/learner=grbal,seed=*)
  evaluate "$OUT/$family/baselines" --method "oracle=oracle:${grbal[0]}" --method random
  reports=()
  for run in "${grbal[@]}"; do
    seed=${run##*seed=}
    mb="$runs/learner=mb,seed=$seed"
    evaluate "$OUT/$family/seed$seed" --method "grbal=$run" --method "rebal=$runs-rebal/seed=$seed" \
      --method "mb=$mb" --method "mbde=mbde:$mb"
    reports+=("$OUT/$family/seed$seed")
  done
  # the models' own k-step prediction error on held-out conditions (first training seed)
  seed=${grbal[0]##*seed=}
  [ -f "$OUT/$family/model-error.json" ] || $ADAPT eval-model "${grbal[0]}" \
    "$runs-rebal/seed=$seed" "$runs/learner=mb,seed=$seed" --out "$OUT/$family/model-error.json"
  $PYTHON research/seed_summary.py "${reports[@]}" --baselines "$OUT/$family/baselines" \
    --pair grbal-mb --pair grbal-mbde --pair rebal-mb --pair rebal-mbde --pair grbal-rebal \
    --out "$OUT/summary.json" --append
done
$PYTHON research/plot_method_speeds.py "$OUT/summary.json" --out "$OUT/speed_by_method.png"
echo "reference comparison written to $OUT (summary: $OUT/summary.json)"
