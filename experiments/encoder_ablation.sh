#!/usr/bin/env bash
# Encoder ablation on ap2ap_wrench (paper Table II / Fig. 4): the same quick budget for each
# encoder, rotations of the first goal up to 180 degrees, success at d_t < 2 cm.
#   bash experiments/encoder_ablation.sh [OUT_ROOT] [SEEDS...]
set -euo pipefail
out=${1:-runs/ablation}
shift || true
seeds=("${@:-0}")
for seed in "${seeds[@]}"; do
  for encoder in paired decoupled mlp; do
    run="$out/${encoder}_s${seed}"
    if [[ -f "$run/eval.json" ]]; then echo "done: $run"; continue; fi
    dex4d train teacher --env ap2ap_wrench --encoder "$encoder" --preset quick --seed "$seed" \
      --out "$run" --no-progress
  done
done
python "$(dirname "$0")/summarize_runs.py" "$out"/*
