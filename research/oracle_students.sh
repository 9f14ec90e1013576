#!/usr/bin/env bash
# GRU and MLP students of the privileged teacher (the planner on the true simulator) on
# cheetah-cripple, for the seeds given: the GRU run collects round 0 (teacher-only), the MLP
# student of the same seed reuses it (distill.round0). Usage:
#   research/oracle_students.sh OUT SEED [SEED ...]
set -euo pipefail
out=$1; shift
for seed in "$@"; do
  adapt train-policy distill-oracle --set seed="$seed" --out "$out/gru/seed=$seed" \
    $( [ -f "$out/gru/seed=$seed/checkpoint.pt" ] && echo --resume )
  adapt train-policy distill-oracle-mlp --set seed="$seed" \
    --set "distill.round0='$out/gru/seed=$seed/data/round_000.npz'" \
    --out "$out/mlp/seed=$seed" $( [ -f "$out/mlp/seed=$seed/checkpoint.pt" ] && echo --resume )
done
