"""The top_k LM from its token cache against the whole encoder, on real rows, and its speed.

Reproduce (after `train --config configs/rec/lm_teacher_topk.yaml`):
    .venv/bin/python benchmarks/lm_token_cache_check.py --checkpoint runs/teachers_lm/lm_teacher/model.safetensors \\
        --token-cache runs/lm_tokens --rows 2048

On the first --rows validation rows, with the trained weights: logits through the fp16 token
cache (fp32 compute, and the shipped bf16 autocast) against all six layers run live in fp32
with the lower four frozen, max |logit difference| and the AUC of each; then training rows/s
(forward + backward of the two top layers and the head, batch 128) in fp32 and bf16 from the
cache, and with the lower layers run live every step (no cache). Writes benchmarks/results/lm_token_cache.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from recsys_committee.metrics.binary import auc
from recsys_committee.models.lm.cache import attach_token_cache
from recsys_committee.models.lm.checkpoint import load_lm_weights
from recsys_committee.models.lm.model import build_lm_model
from recsys_committee.rec_domain import load_data
from recsys_committee.train.config import load_config
from recsys_committee.lm_cache_command import TEXT_PARAMS


def logits_of(model, split, rows: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(split.batch(rows[i : i + batch])).logits for i in range(0, rows.numel(), batch)])


def train_rows_per_second(model, split, rows: torch.Tensor, steps: int, batch: int = 128) -> float:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    b = split.batch(rows[:batch])
    torch.nn.functional.binary_cross_entropy_with_logits(model(b).logits, b.labels).backward()  # warm-up
    start = time.perf_counter()
    for step in range(steps):
        b = split.batch(rows[(step * batch) % rows.numel() :][:batch])
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.binary_cross_entropy_with_logits(model(b).logits, b.labels).backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/rec/lm_teacher_topk.yaml")
    parser.add_argument("--checkpoint", default="runs/teachers_lm/lm_teacher/model.safetensors")
    parser.add_argument("--token-cache", default="runs/lm_tokens")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results/lm_token_cache.json")
    args = parser.parse_args()
    cfg = load_config(args.config, ["train.progress=false"])
    params = cfg.model.params
    data = load_data(cfg.data)
    model = build_lm_model(data, data.raw, **{k: params[k] for k in TEXT_PARAMS if k in params})
    load_lm_weights(model, args.checkpoint)
    split = data.val
    rows = torch.arange(min(args.rows, len(split)))
    labels = split.batch(rows).labels
    live = logits_of(model, split, rows)  # all six layers, fp32
    live_speed = train_rows_per_second(model, split, rows, max(args.steps // 2, 1))  # the lower four run (frozen) every step
    load_lm_weights(model, args.checkpoint)  # undo those steps
    start = time.perf_counter()
    attach_token_cache(model, data.table, args.token_cache, progress=False)
    load_seconds = time.perf_counter() - start
    results = {"rows": int(rows.numel()), "token_cache_load_seconds": load_seconds, "live_fp32_auc": auc(torch.sigmoid(live), labels),
               "train_rows_per_second_live_fp32": live_speed}
    for mode in (None, "bf16"):
        model.autocast = mode
        cached = logits_of(model, split, rows)
        name = mode or "fp32"
        results[f"cache_{name}_max_abs_logit_diff"] = float((cached - live).abs().max())
        results[f"cache_{name}_auc"] = auc(torch.sigmoid(cached), labels)
        results[f"train_rows_per_second_{name}"] = train_rows_per_second(model, split, rows, args.steps)
    results["command"] = "benchmarks/lm_token_cache_check.py " + shlex.join(sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
