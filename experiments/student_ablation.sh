#!/usr/bin/env bash
# Student ablations on ap2ap_wrench (paper Table II): the same quick DAgger budget and masking
# for each variant, distilled from one teacher. STEPS (default: the preset's 300k) sets the
# environment steps of every run.
#   STEPS=150000 bash experiments/student_ablation.sh TEACHER_RUN [OUT_ROOT] [SEEDS...]
set -euo pipefail
teacher=${1:?usage: student_ablation.sh TEACHER_RUN [OUT_ROOT] [SEEDS...]}
out=${2:-runs/student_ablation}
shift 2 || shift $#
seeds=("${@:-0}")
declare -A flags=(
  [full]=""
  [no_attention]="--arch mlp"
  [no_world_model]="--no-world-model"
  [decoupled]="--encoder decoupled"
  [mlp_points]="--encoder mlp"
)
for seed in "${seeds[@]}"; do
  for variant in full no_attention no_world_model decoupled mlp_points; do
    run="$out/${variant}_s${seed}"
    if [[ -f "$run/eval.json" ]]; then echo "done: $run"; continue; fi
    # shellcheck disable=SC2086
    dex4d train student --teacher "$teacher" --env ap2ap_wrench --preset quick --seed "$seed" \
      ${flags[$variant]} ${STEPS:+--steps "$STEPS"} --out "$run" --no-progress
  done
done
python "$(dirname "$0")/summarize_runs.py" "$out"/*
