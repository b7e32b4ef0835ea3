#!/usr/bin/env bash
# GPU check of the streaming data plane (a few minutes on one GPU): prepare a 1M-row synthetic
# log, train the streaming student and an expert for a few hundred steps on CUDA (Ray Train,
# --use-gpu: nccl, FBGEMM's CUDA kernels), run a gated distillation, and print samples/s.
# Needs the CUDA stack: `pip install -e '.[cuda]'` (fbgemm-gpu instead of fbgemm-gpu-cpu).
# Usage: bash benchmarks/gpu_check.sh [OUT=runs/gpu_check]
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/gpu_check}
STEPS=${STEPS:-300}
BATCH=${BATCH:-4096}
$PY - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
import fbgemm_gpu  # noqa: F401  (the CUDA build: its TBE kernels must load)
print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PYEOF
$PY -m recsys_committee.data.logs.synthetic --out "$OUT/data" --rows 1000000 --users 1000000 --items 100000 --user-zipf 0.8 --item-zipf 1.0
$PY -m recsys_committee prepare --data "$OUT/data/ml-synth.yaml" --out "$OUT/dataset" --overwrite
COMMON=(--data "$OUT/dataset" --overwrite --num-workers 1 --use-gpu train.epochs=1 "train.max_steps_per_epoch=$STEPS" "train.batch_size=$BATCH" train.progress=false)
$PY -m recsys_committee train --config configs/rec/student.yaml --out "$OUT/student" "${COMMON[@]}"
$PY -m recsys_committee train --config configs/rec/expert_dlrm.yaml --out "$OUT/teachers/expert_dlrm" "${COMMON[@]}"
$PY -m recsys_committee distill --config configs/rec/diverse_distill.yaml --out "$OUT/distill" "${COMMON[@]}" \
  "teacher_dir=$OUT/teachers" 'teachers=[{name: dlrm, kind: rec_model, checkpoint: "{teacher_dir}/expert_dlrm/model.safetensors", tap: top}]' \
  committee.gate_config.warmup_steps=50
$PY - "$OUT" "$STEPS" "$BATCH" <<'PYEOF'
import json, sys
out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for run in ("student", "teachers/expert_dlrm", "distill"):
    m = json.load(open(f"{out}/{run}/metrics.json"))
    print(f"{run}: {steps * batch / m['history'][0]['seconds']:,.0f} samples/s on CUDA, test AUC {m['test']['auc']:.4f}")
PYEOF
