"""How plain TorchRec itself, and our streaming student without Ray, scale from 1 to 2 ranks on
this machine: the reference for the streaming student's 2-workers / 1-worker ratio under Ray
(benchmarks/scale.py).

The same EBC + low-rank cross + MLP + head as scale.py's plain-TorchRec arm, DMP-sharded, FBGEMM's
fused row-wise Adagrad, AdamW on the dense part, gloo on loopback, one thread per rank, each
rank's batches read from the prepared dataset beforehand (no reading in the timed loop, no Ray).
Two loops: the plain one (forward, backward, step) and TorchRec's ``TrainPipelineSparseDist``
(the next batch's input distribution during this step); and, third, our streaming student
(``run_train`` on the same ranks: reading the prepared shards, our loop) with no Ray. 1 and 2 ranks, ``--repeats`` rounds
interleaved, the median reported; entries ``plain_torchrec_ranks`` of ``benchmarks/results/scale.json``
(other entries kept).

With ``--ray``, the same streaming student under Ray Train's ``TorchTrainer`` (1 and 2 workers,
scale.py's ``train_student`` runs) in the same run, rounds interleaved with the no-Ray ones, so
"2 workers / 1 under Ray" is set against "2 ranks / 1 without Ray" measured minutes apart, not
sessions apart; entries ``train_student`` at that size are replaced.

Reproduce: ``.venv/bin/python benchmarks/torchrec_ranks.py --dataset runs/scale/1m/dataset``
(after benchmarks/scale.py prepared it; a few minutes). At 10M with Ray, the default skew:
``.venv/bin/python benchmarks/torchrec_ranks.py --dataset runs/scale/10m/dataset-default --steps 300 --ray``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402
from scale import _size, plain_torchrec_student, train_run  # noqa: E402  (the same plain-TorchRec student and Ray runs as scale.py's)
WARMUP = 10  # steps left out of the rate, as the training loop's steady throughput


def rank_main(rank: int, world: int, port: int, dataset: str, steps: int, batch: int, repeats: int, out: str) -> None:
    os.environ.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torchrec.datasets.utils import Batch
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.rec_domain import run_train
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import DistContext, Launch, quiet_library_logs

    torch.set_num_threads(1)
    quiet_library_logs()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    cfg = load_config(ROOT / "configs/rec/student.yaml", [])
    params = cfg.model.params
    data = open_prepared(dataset)
    plain, feats = plain_torchrec_student(data, params)
    cached = []
    for b in data.train.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(0)):
        cached.append(Batch(dense_features=torch.zeros(batch, 1), sparse_features=b.kjt(feats), labels=b.labels))
        if len(cached) == steps:
            break

    class WithLoss(torch.nn.Module):
        """(loss, logits) of a torchrec ``Batch``: the model interface TrainPipelineSparseDist drives."""

        def __init__(self) -> None:
            super().__init__()
            self.model = copy.deepcopy(plain)  # the same initial weights in every build

        def forward(self, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(b.sparse_features)
            return F.binary_cross_entropy_with_logits(logits, b.labels), logits

    def build() -> tuple[Any, Any]:
        module = WithLoss()
        apply_optimizer_in_backward(RowWiseAdagrad, module.model.ebc.parameters(), {"lr": cfg.optim.embedding_lr})
        model = DistributedModelParallel(module, device=torch.device("cpu"))
        return model, torch.optim.AdamW([p for n, p in model.named_parameters() if "ebc" not in n], lr=cfg.optim.lr)

    def loop() -> float:
        model, adam = build()
        for i, b in enumerate(cached):
            if i == WARMUP:
                dist.barrier()
                start = time.perf_counter()
            loss, _ = model(b)
            adam.zero_grad()
            loss.backward()
            adam.step()
        dist.barrier()
        return (len(cached) - WARMUP) * batch * world / (time.perf_counter() - start)

    def pipelined() -> float:
        model, adam = build()
        pipeline = TrainPipelineSparseDist(model, adam, torch.device("cpu"))
        batches = iter(cached)
        for _ in range(WARMUP):
            pipeline.progress(batches)
        dist.barrier()
        start, n = time.perf_counter(), 0
        while True:
            try:
                pipeline.progress(batches)
            except StopIteration:
                break
            n += 1
        dist.barrier()
        return n * batch * world / (time.perf_counter() - start)

    def ours() -> float:
        """Our streaming student (``run_train``: the prepared reader, RecBatch, our loop with the
        input distributed ahead) on the same plain gloo ranks: the no-Ray twin of scale.py's run."""
        run_cfg = load_config(ROOT / "configs/rec/student.yaml", [
            "train.epochs=1", f"train.max_steps_per_epoch={steps}", f"train.batch_size={batch}", "train.progress=false"])
        folder = Path(out).parent / f"ours-{world}-ranks"
        m = run_train(run_cfg, folder, data=data, launch=Launch(DistContext.from_process_group(), report=lambda path, state: None, out_prepared=True),
                      overwrite=True)
        h = m["history"][0]
        rates["our_streaming_student_preemptions_per_s"].append(h.get("steady_preemptions_per_s"))
        return h["steady_batches"] * batch * world / h["steady_seconds"]

    rates: dict[str, list[float]] = {"loop": [], "train_pipeline_sparse_dist": [], "our_streaming_student": [],
                                     "our_streaming_student_preemptions_per_s": []}  # rank 0's training thread, per round
    for _ in range(repeats):
        rates["loop"].append(loop())
        rates["train_pipeline_sparse_dist"].append(pipelined())
        rates["our_streaming_student"].append(ours())
    if rank == 0:
        Path(out).write_text(json.dumps(rates))
    dist.destroy_process_group()


def run(world: int, args: argparse.Namespace, out: Path, repeats: int) -> dict[str, list[float]]:
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(rank_main, args=(world, port, args.dataset, args.steps, args.batch_size, repeats, str(out)), nprocs=world)
    return json.loads(out.read_text())


def ray_entry(runs: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The median round's figures of one worker count under Ray, every round's samples/s."""
    ranked = sorted(runs, key=lambda e: e["samples_per_s"])
    return {**ranked[len(ranked) // 2], "overlap_input_dist": True, "rounds": [e["samples_per_s"] for e in runs],
            "peak_rss_gib_per_worker": [max(e["peak_rss_gib_per_worker"][i] for e in runs) for i in range(workers)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a prepared dataset (recsys-committee prepare)")
    parser.add_argument("--steps", type=int, default=194, help="batches per rank (1M rows: 194 full batches of 2,048 per rank at 2 ranks)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    parser.add_argument("--ray", action="store_true", help="also the streaming student under Ray Train (1 and 2 workers), rounds interleaved")
    args = parser.parse_args(argv)
    manifest = json.loads((Path(args.dataset) / "manifest.json").read_text())
    rows = sum(manifest["rows"].values())
    scratch = Path(args.dataset).parent / "ranks" / "rates.json"
    for world in (1, 2):
        (scratch.parent / f"ours-{world}-ranks").mkdir(parents=True, exist_ok=True)
    entries = []
    # one round of every setting at a time (1 rank, 2 ranks, then Ray's 1 and 2 workers): a slow
    # minute of a shared machine lands on every setting alike, not on whichever ran then
    rounds: list[dict[int, dict[str, list[float]]]] = []
    ray_runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(args.repeats):
        rounds.append({world: run(world, args, scratch, 1) for world in (1, 2)})
        if args.ray:
            for workers in (1, 2):
                ray_runs[workers].append(train_run(rows, Path(args.dataset), scratch.parent / f"ray-w{workers}", workers, args.steps, args.batch_size))
    by_world = {world: {k: [v for got in rounds for v in got[world][k]] for k in rounds[0][world]} for world in (1, 2)}
    for world, rates in by_world.items():
        preempted = rates.pop("our_streaming_student_preemptions_per_s")
        for loop, rounds in rates.items():
            median = sorted(rounds)[len(rounds) // 2]
            entries.append({"kind": "plain_torchrec_ranks", "loop": loop, "reads": "the prepared reader" if loop == "our_streaming_student" else "batches in memory",
                            "rows": rows, "workers": world, "samples_per_s": median, "rounds": rounds,
                            "batch_size": args.batch_size, "steps": args.steps, "peak_rss_gib_per_worker": None})
            note = ""
            if loop == "our_streaming_student":
                entries[-1]["preemptions_per_s"] = preempted[rounds.index(median)]  # the median round's
                note = f", training thread preempted {preempted[rounds.index(median)] or 0:,.0f}/s"
            print(f"{world} gloo rank(s), {loop}: {median:,.0f} samples/s (rounds {', '.join(f'{r:,.0f}' for r in rounds)}){note}")
    ratio = {}
    for loop in by_world[1]:
        one, two = (next(e for e in entries if e["workers"] == w and e["loop"] == loop) for w in (1, 2))
        ratio[loop] = two["samples_per_s"] / one["samples_per_s"]
        print(f"{loop}: 2 ranks / 1 = {ratio[loop]:.2f}x")
    print(f"our streaming student / plain TorchRec, 1 -> 2 ranks: {ratio['our_streaming_student']:.2f}x / {ratio['loop']:.2f}x "
          f"= {ratio['our_streaming_student'] / ratio['loop']:.2f} (target >= 1)")
    if args.ray:
        with_ray = [ray_entry(ray_runs[w], w) for w in (1, 2)]
        entries += with_ray
        under_ray = with_ray[1]["samples_per_s"] / with_ray[0]["samples_per_s"]
        for e in with_ray:
            print(f"Ray Train, {e['workers']} worker(s): {e['samples_per_s']:,.0f} samples/s (rounds {', '.join(f'{r:,.0f}' for r in e['rounds'])}), "
                  f"training thread preempted {e['preemptions_per_s'] or 0:,.0f}/s")
        print(f"2 workers / 1 under Ray: {under_ray:.2f}x = {under_ray / ratio['our_streaming_student']:.2f} of the no-Ray ratio (target >= 0.95)")
    path = Path(args.results)
    replaced = {"plain_torchrec_ranks"} | ({"train_student"} if args.ray else set())
    kept = [r for r in json.loads(path.read_text()) if not (r.get("kind") in replaced and _size(r) == _size({"rows": rows}))] if path.is_file() else []
    measured_at = provenance()
    path.write_text(json.dumps(kept + [{**e, "provenance": measured_at} for e in entries], indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
