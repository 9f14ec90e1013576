#!/usr/bin/env bash
# Distilled recurrent (GRU) vs feed-forward (MLP) students of one adaptive-MPC teacher, over
# several training seeds, on a family's held-out conditions (docs/results.md, "Distilled
# policies"). Runs that already have a checkpoint are kept, so a killed sweep picks up where it
# stopped.
#
#   FAMILY=cheetah-cripple TEACHER=runs/teacher/checkpoint.pt \
#     bash research/distill_comparison.sh OUT [--set distill.KEY=VALUE ...]
#
# Extra arguments go to every `adapt train-policy` (e.g. the labelling planner:
# --set distill.teacher_planner.name=mppi --set distill.teacher_planner.num_candidates=256
# --set distill.teacher_planner.lambda_=0.3). SEEDS (default "0 1 2"), JOBS (parallel runs, default 2),
# EPISODES (held-out evaluation episodes per run, default 20), DURATION (seconds per episode,
# default 500 control steps: 10 for the quadruped's 20 ms, 5 for the cheetah's 10 ms).
set -euo pipefail
OUT=${1:?usage: FAMILY=... TEACHER=... $0 OUT [--set KEY=VALUE ...]}
shift
FAMILY=${FAMILY:?set FAMILY}
TEACHER=${TEACHER:?set TEACHER to an adapt train checkpoint of FAMILY}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
EPISODES=${EPISODES:-20}
case "$FAMILY" in quadruped*) DURATION=${DURATION:-10} ;; *) DURATION=${DURATION:-5} ;; esac
ADAPT=${ADAPT:-adapt}
mkdir -p "$OUT"

jobs_list() {
  for seed in $SEEDS; do
    for preset in distill distill-mlp; do
      echo "$preset $seed"
    done
  done
}

train_one() {  # preset seed; EXTRA holds the extra --set arguments
  local preset=$1 seed=$2 arch=gru resume=()
  [ "$preset" = distill-mlp ] && arch=mlp
  local dir="$OUT/$arch-s$seed"
  [ -d "$dir" ] && resume=(--resume)  # a finished run resumes to nothing
  # shellcheck disable=SC2086  # EXTRA is a list of words
  $ADAPT train-policy "$preset" --set "family='$FAMILY'" --set "distill.teacher='$TEACHER'" \
    --set "seed=$seed" $EXTRA --out "$dir" --quiet "${resume[@]}" > "$dir.log" 2>&1
  echo "$arch seed $seed: $(tail -n 1 "$dir.log")"
}
export -f train_one
export OUT FAMILY TEACHER ADAPT
export EXTRA="$*"

jobs_list | xargs -P "$JOBS" -L 1 bash -c 'train_one "$0" "$1"'

$ADAPT eval-policy "$OUT"/gru-s*/ "$OUT"/mlp-s*/ --teacher "$TEACHER" --episodes "$EPISODES" \
  --duration "$DURATION" --out "$OUT/eval.json"
