#!/usr/bin/env bash
# The distillation gap on a second data spec (ML-100K's interactions file alone), through the
# CLI as a user would run it: the committee's experts (DLRM and DIN+DCN seed 0, DIN+DCN seed 1), then the no-KD and the distilled student
# over seeds 0 1 2. Prints one line per run; the summary is `python benchmarks/second_spec_report.py`.
#   bash benchmarks/second_spec.sh [OUT=runs/second_spec] [SPEC=configs/data/ml-100k-interactions.yaml] [KEY=VALUE ...]
# Overrides after OUT and SPEC go to every run (the recorded results: optim.fused_adamw=false).
set -euo pipefail
OUT=${1:-runs/second_spec}
SPEC=${2:-configs/data/ml-100k-interactions.yaml}
shift $(( $# < 2 ? $# : 2 ))
RC=".venv/bin/recsys-committee"
for expert in expert_dlrm expert_din_dcn; do
  [ -f "$OUT/teachers/$expert/metrics.json" ] || $RC train --config configs/rec/$expert.yaml --data "$SPEC" --out "$OUT/teachers/$expert" --overwrite train.progress=false "$@"
done
# the committee's second DIN+DCN: the same config, the next seed (configs/rec/distill_base.yaml)
[ -f "$OUT/teachers/expert_din_dcn_2/metrics.json" ] || $RC train --config configs/rec/expert_din_dcn.yaml --data "$SPEC" --out "$OUT/teachers/expert_din_dcn_2" \
  --overwrite seed=1 train.progress=false "$@"
for seed in 0 1 2; do
  for method in no_kd diverse_distill; do
    [ -f "$OUT/$method-seed$seed/metrics.json" ] || $RC distill --config configs/rec/$method.yaml --data "$SPEC" --out "$OUT/$method-seed$seed" --overwrite \
      seed=$seed teacher_dir="$OUT/teachers" train.progress=false "$@"
  done
done
