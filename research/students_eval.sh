#!/usr/bin/env bash
# Held-out evaluation of distilled students against the teacher they learnt from, 20 s
# episodes, healthy / fixed held-out condition / failure at 3 s, per training seed:
#   research/students_eval.sh FAMILY RUNS OUT SEEDS EVAL_SEEDS [ARCH ...]
# RUNS/ARCH/seed=S are `adapt train-policy` runs (ARCH defaults to gru mlp). The teacher (the
# privileged oracle of RUNS/ARCH[0]/seed=S[0], or its GrBAL) and the random floor are evaluated
# once, in OUT/baselines, and serve every seed's score (research/seed_summary.py --baselines).
set -euo pipefail
family=$1; runs=$2; out=$3; seeds=$4; eval_seeds=$5; shift 5
archs=("${@:-gru mlp}"); archs=(${archs[*]})
common=(--family "$family" --decision-steps 1 --scenarios healthy,fixed,switch
        --seeds "$eval_seeds" --duration 20 --workers 1)
first=${seeds%% *}
[ -f "$out/baselines/results.json" ] || adapt eval "${common[@]}" --video \
  --method "oracle=teacher:$runs/${archs[0]}/seed=$first" --method random --out "$out/baselines"
reports=()
for s in $seeds; do
  methods=()
  for a in "${archs[@]}"; do methods+=(--method "$a=$runs/$a/seed=$s"); done
  video=(); [ "$s" = "$first" ] && video=(--video)
  [ -f "$out/seed$s/results.json" ] || adapt eval "${common[@]}" "${video[@]}" "${methods[@]}" \
    --out "$out/seed$s"
  reports+=("$out/seed$s")
done
pairs=(); [ ${#archs[@]} -gt 1 ] && pairs=(--pair "${archs[0]}-${archs[1]}")
python research/seed_summary.py "${reports[@]}" --baselines "$out/baselines" "${pairs[@]}" \
  --out "$out/summary.json"
