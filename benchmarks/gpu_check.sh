#!/usr/bin/env bash
# GPU check of the streaming data plane (a few minutes on one GPU): prepare a 1M-row synthetic
# log, train the streaming student and an expert for a few hundred steps on CUDA (Ray Train,
# --use-gpu: nccl, FBGEMM's CUDA kernels), run a gated distillation, and print samples/s; then the
# LM teacher's outputs over a prepared text-bearing log: the Ray Data actors' batch function in
# this process on the GPU (torch + pyarrow + transformers), and `cache --num-workers 1` (the actor
# gets the GPU from Ray).
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
# the LM over prepared shards on the GPU
$PY -m recsys_committee.data.logs.synthetic --out "$OUT/text" --rows 40000 --users 4000 --items 1000
$PY -m recsys_committee prepare --data "$OUT/text/ml-synth-text.yaml" --out "$OUT/text_dataset" --overwrite
LM=(model.params.include_ratings=false model.params.include_stats=false model.params.cache_batch_size=512)
$PY - "$OUT/text_dataset" "${LM[@]}" <<'PYEOF'
import dataclasses, sys, time
import torch
from recsys_committee.data.prepared.stream import open_prepared
from recsys_committee.models.lm.prepared import lm_outputs
from recsys_committee.train.config import load_config
cfg = load_config("configs/rec/lm_cache.yaml", sys.argv[2:])
data = open_prepared(sys.argv[1])
outputs = lm_outputs(data, dataclasses.asdict(cfg), "encoder.layer.3", 512)
rows, start = 0, time.perf_counter()
for unit in data.train.units:
    features, _ = outputs(data.train, unit)
    rows += features.shape[0]
torch.cuda.synchronize()
print(f"LM outputs, the actors' batch function on {torch.cuda.get_device_name(0)}: {rows / (time.perf_counter() - start):,.0f} rows/s over {rows:,} rows")
PYEOF
$PY -m recsys_committee cache --config configs/rec/lm_cache.yaml --data "$OUT/text_dataset" --out "$OUT/lm_cache" --num-workers 1 "${LM[@]}"
