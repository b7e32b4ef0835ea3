"""Training throughput of the sharded student on synthetic scale data: 1 vs 2 workers.

Reproduce:
    python benchmarks/cluster_scaling.py --rows 1000000 --users 1000000 --items 100000 --steps 60
Writes Zipf interactions with MovieLens' schema (data/synthetic, parquet), reads them through the
real pipeline (validated reader, no-leakage histories, KJT batches), then in 1 and in 2 gloo
processes (one thread each: one core per worker) shards the student's tables with TorchRec's
planner (DMP) and times forward + backward + fused/AdamW updates. Prints samples/s side by side,
the ratio, peak resident memory per worker and the plan the planner chose for the 1M-row user
table. Writes benchmarks/results/cluster_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(rank: int, world: int, root: str, steps: int, batch_size: int, warmup: int) -> dict:
    import torch
    import torch.nn.functional as F

    from recsys_committee.data.logs.movielens import load_movielens
    from recsys_committee.models import build_model, count_params
    from recsys_committee.train.config import OptimConfig, RunConfig
    from recsys_committee.train.distributed import DistContext, describe_plan
    from recsys_committee.rec_domain import REC
    from recsys_committee.train.distributed import Launch
    from recsys_committee.train.sharded import setup_sharded

    torch.manual_seed(0)
    start = time.perf_counter()
    data = load_movielens(root, "ml-synth")
    load_seconds = time.perf_counter() - start
    cfg = RunConfig(optim=OptimConfig())
    model = build_model("student", data.cardinalities, data.num_dense, data=data)
    params = count_params(model)
    ctx = DistContext.from_process_group()
    setup = setup_sharded(model, model, list(model.parameters()), REC.sparse_parameters(model), lambda key: False, cfg, Launch(ctx), Path(f"/tmp/cluster_scaling_{world}"))
    generator = torch.Generator().manual_seed(0)
    batches = data.train.batches(batch_size, shuffle=True, generator=generator, rows=ctx.train_rows)
    timed = 0.0
    for i in range(warmup + steps):
        batch = next(batches)
        ctx.barrier()
        t0 = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(setup.model(batch).logits, batch.labels)
        setup.optimizers.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        setup.optimizers.optimizer.step()
        ctx.barrier()
        if i >= warmup:
            timed += time.perf_counter() - t0
    return {
        "rank": rank,
        "world": world,
        "train_rows": len(data.train),
        "params": params,
        "samples_per_s": world * batch_size * steps / timed,
        "step_ms": 1000 * timed / steps,
        "load_seconds": load_seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "plan": describe_plan(setup.model),
        "cardinalities": {k: int(v) for k, v in data.cardinalities.items()},
    }


def rss(ranks: list[dict]) -> str:
    return ", ".join(f"{r['peak_rss_gib']:.2f}" for r in ranks)


def main() -> int:
    from recsys_committee.data.logs.synthetic import SyntheticSpec, write_synthetic
    from local_group import run_local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2048, help="rows per worker per step")
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args()

    spec = SyntheticSpec(rows=args.rows, users=args.users, items=args.items, chunk_rows=min(args.rows, 1_000_000))
    start = time.perf_counter()
    write_synthetic(args.root, spec)
    print(f"synthetic set: {args.rows:,} rows, {args.users:,} users, {args.items:,} items written in {time.perf_counter() - start:.0f}s", flush=True)
    results = {}
    for world in (1, 2):
        ranks = run_local(worker, world, args.root, args.steps, args.batch_size, args.warmup)
        results[world] = ranks
        print(f"{world} worker(s): {ranks[0]['samples_per_s']:,.0f} samples/s, {ranks[0]['step_ms']:.1f} ms/step, "
              f"peak RSS per worker {rss(ranks)} GiB", flush=True)
    ratio = results[2][0]["samples_per_s"] / results[1][0]["samples_per_s"]
    command = "python benchmarks/cluster_scaling.py " + " ".join(sys.argv[1:])
    user_plan = {path: tables["t_user_id"] for path, tables in results[2][0]["plan"].items() if "t_user_id" in tables}
    payload = {"command": command, "spec": spec.__dict__, "ratio_2_over_1": ratio, "user_table_plan_2_workers": user_plan,
               "runs": {str(w): r for w, r in results.items()}}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / "cluster_scaling.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"\n{command}")
    print(f"| workers | samples/s | ms/step | peak RSS per worker (GiB) |\n|---|---|---|---|")
    for w, ranks in results.items():
        print(f"| {w} | {ranks[0]['samples_per_s']:,.0f} | {ranks[0]['step_ms']:.1f} | {rss(ranks)} |")
    print(f"2 / 1 workers: {ratio:.2f}x samples/s")
    print(f"user table ({results[2][0]['cardinalities']['user_id']:,} rows), planner's choice at 2 workers: {user_plan}")
    print(f"full plan at 2 workers: {json.dumps(results[2][0]['plan'], indent=1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
