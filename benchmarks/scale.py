"""The out-of-core data plane at scale: ``prepare`` and streaming student training on synthetic
Zipf logs of 1M and 10M rows, with 1 and 2 Ray workers, side by side in one run.

Measures (each written as one entry of ``benchmarks/results/scale.json``, a list of runs with
rows, workers, samples_per_s, peak_rss_gib_per_worker):
- ``prepare``: wall time and peak RSS of ``recsys-committee prepare`` (one process), per size;
- ``train_student``: samples/s of the streaming student (Ray Train, DMP, one thread per worker)
  and every worker's peak RSS, 1 and 2 workers, per size; with 2 workers also with the next
  batch's input distribution issued inline (``train.overlap_input_dist=false``) against ahead
  (the default, TorchRec's TrainPipelineSparseDist order); every setting ``--repeats`` times,
  interleaved, the median reported (on 2 cores runs of one setting differ by ~5%);
- ``reader``: how fast the streamed reader alone delivers the same batches (vs the student);
- ``our_loop`` / ``plain_torchrec``: our training loop (``train.loop.fit``, RecBatch, loss
  checks, optimisers, schedule) against a minimal plain-TorchRec loop (the same EBC + cross +
  MLP, fused row-wise Adagrad, the same batches in memory), interleaved in one process.

Reproduce: ``.venv/bin/python benchmarks/scale.py --rows 1000000 10000000``
(the synthetic logs are written to data/scale/ once; about 30 minutes on 2 cores, nothing else
running). ``prepare`` alone at both skews, with whole buckets side by side:
``.venv/bin/python benchmarks/scale.py --rows 1000000 10000000 --prepare-only --whole-buckets``. The cost of the
spec's sampled transfer pairs (prepare without and with 2 per train row, default skew):
``.venv/bin/python benchmarks/scale.py --rows 1000000 --skews default --transfer-only 2``. Entries of other scripts in the results file (scale_drill.py, lm_cache_actors.py) are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402
PY = sys.executable
# a million users and 100k items. "gentle" (Zipf 0.8 / 1.0): the most active user has ~1.3% of
# the rows, the most popular item ~8%; "default" (the generator's own 1.1 / 1.2, closer to real
# logs): the top user ~12%, the top item ~20%. A user bucket holds every row of its users, so
# ``prepare`` featurises it in time-ordered pieces (``--piece-rows``); ``--whole-buckets`` also runs
# the same code with one piece per bucket, side by side.
SKEWS = {"gentle": {"user_zipf": 0.8, "item_zipf": 1.0}, "default": {"user_zipf": 1.1, "item_zipf": 1.2}}
SYNTHETIC = ["--users", "1000000", "--items", "100000"]
WHOLE_BUCKET = 10**12  # --piece-rows that never cuts a bucket
OWN_KINDS = {"prepare", "prepare_transfer", "train_student", "reader", "our_loop", "plain_torchrec", "plain_torchrec_in_memory"}  # this script's entries of the results file
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS GiB of the process, output) of a command, peak RSS = the kernel high-water mark VmHWM, read every 0.1 s."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    peak = [0]

    def poll() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                rss = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
                peak[0] = max(peak[0], int(rss.split()[1]) * 1024)
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return time.perf_counter() - start, peak[0] / 2**30, out


def size_tag(rows: int) -> str:
    """1m, 10m, 500k: the folder name of a log size."""
    return f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"


def log_folder(tag: str, skew: str) -> str:
    """Where the synthetic log of that size and skew is written (the gentle one keeps the bare tag)."""
    return tag if skew == "gentle" else f"{tag}-{skew}"


def synthetic(rows: int, root: Path, skew: str = "gentle") -> Path:
    spec = root / "ml-synth.yaml"
    if not spec.is_file():
        zipf = SKEWS[skew]
        subprocess.run([PY, "-m", "recsys_committee.data.logs.synthetic", "--out", str(root), "--rows", str(rows), *SYNTHETIC,
                        "--user-zipf", str(zipf["user_zipf"]), "--item-zipf", str(zipf["item_zipf"])], check=True, cwd=ROOT)
    return spec


def prepare_run(rows: int, spec: Path, out: Path, skew: str = "gentle", piece_rows: int | None = None) -> dict[str, Any]:
    pieces = [] if piece_rows is None else ["--piece-rows", str(piece_rows)]
    seconds, peak, _ = measured([PY, "-m", "recsys_committee", "prepare", "--data", str(spec), "--out", str(out), "--overwrite", *pieces])
    manifest = json.loads((out / "manifest.json").read_text())
    n = sum(manifest["rows"].values())
    used = manifest["options"]["piece_rows"]
    label = "whole buckets" if used >= WHOLE_BUCKET else f"pieces of {used:,}"
    print(f"prepare {rows:,}, {skew} skew, {label}: {seconds:.1f}s, peak RSS {peak:.2f} GiB ({n:,} rows, {manifest['buckets']} buckets)", flush=True)
    return {"kind": "prepare", "rows": n, "size": rows, "workers": 1, "samples_per_s": n / seconds, "peak_rss_gib_per_worker": [peak],
            "prepare_s": seconds, "prepare_peak_rss_gib": peak, "buckets": manifest["buckets"], "skew": SKEWS[skew],
            "piece_rows": None if used >= WHOLE_BUCKET else used}


def prepare_runs(rows: int, data_root: Path, out: Path, skews: list[str], whole: bool) -> tuple[list[dict[str, Any]], Path]:
    """``prepare`` of a log of ``rows`` at every skew (with the default pieces, and whole buckets
    too if ``whole``); returns the entries and the first skew's dataset (the one trained on)."""
    tag = size_tag(rows)
    entries, first = [], None
    for skew in skews:
        spec = synthetic(rows, data_root / log_folder(tag, skew), skew)
        dataset = out / tag / ("dataset" if skew == skews[0] else f"dataset-{skew}")
        if whole:
            entries.append(prepare_run(rows, spec, dataset, skew, WHOLE_BUCKET))
        entries.append(prepare_run(rows, spec, dataset, skew))
        first = first or dataset
    return entries, first


def transfer_runs(rows: int, data_root: Path, out: Path, skew: str, per_row: int) -> list[dict[str, Any]]:
    """``prepare`` of one log as its spec stands and with ``transfer: {sampled: {per_row}}``
    appended, one after the other (kind ``prepare_transfer``): what drawing and featurising the
    sampled pairs out of core costs in time and peak memory."""
    tag = size_tag(rows)
    spec = synthetic(rows, data_root / log_folder(tag, skew), skew)
    with_pairs = spec.with_name(f"ml-synth-transfer{per_row}.yaml")
    with_pairs.write_text(spec.read_text() + f"transfer: {{sampled: {{per_row: {per_row}, seed: 0}}}}\n")
    entries = []
    for n_pairs, path in ((0, spec), (per_row, with_pairs)):
        dataset = out / tag / f"dataset-transfer{n_pairs}"
        seconds, peak, _ = measured([PY, "-m", "recsys_committee", "prepare", "--data", str(path), "--out", str(dataset), "--overwrite"])
        manifest = json.loads((dataset / "manifest.json").read_text())
        labeled = sum(manifest["rows"][k] for k in ("train", "val", "test"))
        pairs = manifest["rows"].get("transfer", 0)
        print(f"prepare {rows:,}, {skew} skew, {n_pairs} sampled pair(s) per train row: {seconds:.1f}s, peak RSS {peak:.2f} GiB "
              f"({labeled:,} labeled rows, {pairs:,} transfer rows)", flush=True)
        entries.append({"kind": "prepare_transfer", "rows": labeled, "size": rows, "workers": 1, "transfer_per_row": n_pairs, "transfer_rows": pairs,
                        "prepare_s": seconds, "prepare_peak_rss_gib": peak, "peak_rss_gib_per_worker": [peak], "samples_per_s": labeled / seconds,
                        "skew": SKEWS[skew], "buckets": manifest["buckets"]})
        shutil.rmtree(dataset, ignore_errors=True)
    return entries


def train_run(rows: int, dataset: Path, out: Path, workers: int, steps: int, batch: int, overlap: bool = True) -> dict[str, Any]:
    cmd = [PY, "-m", "recsys_committee", "train", "--config", "configs/rec/student.yaml", "--data", str(dataset), "--out", str(out), "--overwrite",
           "--num-workers", str(workers), "train.epochs=1", f"train.max_steps_per_epoch={steps}", f"train.batch_size={batch}", "train.progress=false",
           f"train.overlap_input_dist={str(overlap).lower()}"]
    seconds, _, _ = measured(cmd, ONE_THREAD)
    entry = train_entry(rows, out, workers, batch)
    print(f"train student {rows:,} rows, {workers} worker(s), input distribution {'ahead' if overlap else 'inline'}: {entry['samples_per_s']:,.0f} samples/s, "
          f"peak RSS/worker {max(entry['peak_rss_gib_per_worker']):.2f} GiB, test AUC {entry['test_auc']:.4f}, "
          f"training thread preempted {entry['preemptions_per_s'] or 0:,.0f}/s ({seconds:.0f}s)", flush=True)
    return entry


def train_entry(rows: int, out: Path, workers: int, batch: int) -> dict[str, Any]:
    """What a streaming student run measured (its metrics.json): steps actually run (every rank
    runs the same number of full batches of its share, capped at ``max_steps_per_epoch``)."""
    m = json.loads((out / "metrics.json").read_text())
    h = m["history"][0]
    return {"kind": "train_student", "rows": rows, "workers": workers,
            "samples_per_s": h["steady_batches"] * batch * workers / h["steady_seconds"],  # after the first 10 batches' one-off costs
            "peak_rss_gib_per_worker": m["peak_rss_gib_per_rank"], "samples_per_s_whole_epoch": h["step"] * batch * workers / h["seconds"],
            "steps": h["step"], "batch_size": batch, "train_seconds": h["seconds"], "test_auc": m["test"]["auc"],
            "prefetched_steps": m.get("prefetched_steps"),
            "preemptions_per_s": h.get("steady_preemptions_per_s")}  # rank 0's training thread: the core taken from it


def train_runs(rows: int, dataset: Path, out: Path, workers: list[int], steps: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    """Every worker count with the input distribution issued ahead (the default), and the largest
    count with it inline too (TorchRec's TrainPipelineSparseDist order against none), ``repeats``
    rounds interleaved; an entry per setting: the median run's figures, every round's samples/s."""
    settings = [(w, True) for w in workers] + ([(max(workers), False)] if max(workers) > 1 else [])
    done: dict[tuple[int, bool], list[dict[str, Any]]] = {s: [] for s in settings}
    for r in range(repeats):
        for w, overlap in settings:
            tag = f"student-w{w}" + ("" if overlap else "-inline")
            done[(w, overlap)].append(train_run(rows, dataset, out / tag, w, steps, batch, overlap))
    entries = []
    for (w, overlap), runs in done.items():
        ranked = sorted(runs, key=lambda e: e["samples_per_s"])
        median = ranked[len(ranked) // 2]
        entries.append({**median, "overlap_input_dist": overlap, "rounds": [e["samples_per_s"] for e in runs],
                        "peak_rss_gib_per_worker": [max(e["peak_rss_gib_per_worker"][i] for e in runs) for i in range(w)]})
    return entries


def plain_torchrec_student(data: Any, params: dict[str, Any]) -> tuple[Any, list[str]]:
    """The student as a minimal plain-TorchRec module (unsharded): an ``EmbeddingBagCollection``
    with the student's tables, low-rank cross, MLP and head; ``forward(kjt) -> logits``. Returns
    it and the feature order its pooled embeddings are concatenated in."""
    import torch
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
    from torchrec.modules.crossnet import LowRankCrossNet
    from torchrec.modules.mlp import MLP

    from recsys_committee.models import build_model

    student = build_model("student", data.cardinalities, data.num_dense, data=data, **params)
    feats = student.embeddings.features
    tables = [EmbeddingBagConfig(name=t.name, embedding_dim=t.embedding_dim, num_embeddings=t.num_embeddings, feature_names=t.feature_names, pooling=t.pooling)
              for t in student.embeddings.ebc.embedding_bag_configs()]
    dim = len(feats) * params["embedding_dim"]

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ebc = EmbeddingBagCollection(tables=tables)
            self.dense = torch.nn.Sequential(LowRankCrossNet(dim, params["cross_layers"], params["cross_rank"]),
                                             MLP(dim, params["hidden"]), torch.nn.Linear(params["hidden"][-1], 1))

        def forward(self, kjt: Any) -> torch.Tensor:
            pooled = self.ebc(kjt)
            return self.dense(torch.cat([pooled[f] for f in feats], 1)).squeeze(-1)

    return Plain(), feats


def loop_comparison(dataset: Path, rows: int, steps: int, batch: int, out: Path, repeats: int = 3) -> list[dict[str, Any]]:
    """In this process, one thread, both sharded by DMP (world size 1, gloo) so both tables get
    FBGEMM's fused row-wise Adagrad: the reader alone; our whole streaming student run
    (``run_train``: reader, RecBatch, the loop with its checks, optimisers and schedule); and a
    minimal plain-TorchRec loop (the same EBC + cross + MLP + head) over the same batches already
    in memory (so the plain loop pays no reading: a conservative comparison)."""
    import resource

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.rec_domain import run_train
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import DistContext, Launch, quiet_library_logs
    from recsys_committee.train.loop import WARMUP_BATCHES

    torch.set_num_threads(1)
    quiet_library_logs()
    if not dist.is_initialized():
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    data = open_prepared(dataset)
    overrides = ["train.epochs=1", f"train.max_steps_per_epoch={steps}", f"train.batch_size={batch}", "train.progress=false"]
    cfg = load_config(ROOT / "configs/rec/student.yaml", overrides)

    start = time.perf_counter()
    cached = []
    for b in data.train.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(0)):
        cached.append(b)
        if len(cached) == steps:
            break
    reader_rate = len(cached) * batch / (time.perf_counter() - start)

    def ours(i: int) -> float:
        m = run_train(cfg, out / f"ours-{i}", data=data, launch=Launch(ctx=DistContext(0, 1), report=lambda path, state: None), overwrite=True)
        return m["history"][0]["steady_batches"] * batch / m["history"][0]["steady_seconds"]

    def plain(streamed: bool = False) -> float:
        module, feats = plain_torchrec_student(data, cfg.model.params)
        apply_optimizer_in_backward(RowWiseAdagrad, module.ebc.parameters(), {"lr": cfg.optim.embedding_lr})
        model = DistributedModelParallel(module, device=torch.device("cpu"))
        adam = torch.optim.AdamW([p for n, p in model.named_parameters() if "ebc" not in n], lr=cfg.optim.lr)
        def stream():
            if not streamed:
                yield from ((b.kjt(feats), b.labels) for b in cached)
                return
            for i, b in enumerate(data.train.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(1))):
                if i == steps:
                    return
                yield b.kjt(feats), b.labels

        for i, (kjt, labels) in enumerate(stream()):
            if i == WARMUP_BATCHES:
                start = time.perf_counter()  # as our loop's steady rate: after the first 10 batches
            loss = F.binary_cross_entropy_with_logits(model(kjt), labels)
            adam.zero_grad()
            loss.backward()
            adam.step()
        return (steps - WARMUP_BATCHES) * batch / (time.perf_counter() - start)

    rounds = [(ours(i), plain(), plain(streamed=True)) for i in range(repeats)]  # interleaved; the median of each
    our_rate, plain_rate, plain_streamed = (sorted(r[k] for r in rounds)[len(rounds) // 2] for k in range(3))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"reader {reader_rate:,.0f} samples/s; our streaming student {our_rate:,.0f}; plain TorchRec on the same reader {plain_streamed:,.0f} "
          f"(ours/plain {our_rate / plain_streamed:.2f}); plain TorchRec on batches in memory {plain_rate:,.0f}", flush=True)
    base = {"rows": rows, "workers": 1, "batch_size": batch, "steps": steps, "peak_rss_gib_per_worker": [rss]}
    return [{"kind": "reader", "samples_per_s": reader_rate, **base}, {"kind": "our_loop", "samples_per_s": our_rate, "rounds": [r[0] for r in rounds], **base},
            {"kind": "plain_torchrec", "samples_per_s": plain_streamed, "reads": "the same streamed reader", "rounds": [r[2] for r in rounds], **base},
            {"kind": "plain_torchrec_in_memory", "samples_per_s": plain_rate, "reads": "batches already in memory", "rounds": [r[1] for r in rounds], **base}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--data-root", default="data/scale")
    parser.add_argument("--out", default="runs/scale")
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    parser.add_argument("--steps", type=int, default=300, help="training steps per worker in each timed run")
    parser.add_argument("--batch-size", type=int, default=2048, help="rows per worker per step")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every timed setting, interleaved (the median is reported)")
    parser.add_argument("--skews", nargs="+", choices=sorted(SKEWS), default=["gentle", "default"],
                        help="synthetic skews prepared (training runs read the first one's dataset)")
    parser.add_argument("--whole-buckets", action="store_true", help="also prepare with one piece per bucket (prepare before --piece-rows)")
    parser.add_argument("--prepare-only", action="store_true", help="only the prepare entries")
    parser.add_argument("--transfer-only", type=int, metavar="PER_ROW",
                        help="only prepare the first --skews log without and with PER_ROW sampled transfer pairs per train row (kind prepare_transfer)")
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    out = Path(args.out)
    for rows in args.rows:
        tag = size_tag(rows)
        if args.transfer_only is not None:
            runs += transfer_runs(rows, Path(args.data_root), out, args.skews[0], args.transfer_only)
            continue
        entries, dataset = prepare_runs(rows, Path(args.data_root), out, args.skews, args.whole_buckets)
        runs += entries
        if args.prepare_only:
            continue
        rows_prepared = next(e["rows"] for e in entries if e["skew"] == SKEWS[args.skews[0]])  # the dataset trained on
        runs += train_runs(rows_prepared, dataset, out / tag, args.workers, args.steps, args.batch_size, args.repeats)
        runs += loop_comparison(dataset, rows_prepared, args.steps, args.batch_size, out / tag, args.repeats)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    # replaced: this script's kinds that this run measured, at the sizes it ran; entries of other
    # kinds or sizes, and other scripts' (scale_drill, lm_cache_actors, torchrec_ranks), are kept
    rerun = {(r["kind"], _size(r)) for r in runs}
    kept = [r for r in json.loads(path.read_text()) if r.get("kind") not in OWN_KINDS or (r["kind"], _size(r)) not in rerun] if path.is_file() else []
    measured_at = provenance()  # the commit and command line every entry of this run was measured with
    path.write_text(json.dumps([{**r, "provenance": measured_at} for r in runs] + kept, indent=2))
    print(f"wrote {args.results}")
    summarise(runs)
    return 0


def _size(entry: dict[str, Any]) -> int:
    """The log size an entry was run at (prepared row counts fall a few rows short of it)."""
    return int(entry.get("size") or round(entry["rows"], -4))


def summarise(runs: list[dict[str, Any]]) -> None:
    """The targets as ratios of what this run measured."""
    by = lambda kind, **kw: [r for r in runs if r["kind"] == kind and all(r.get(k) == v for k, v in kw.items())]  # noqa: E731
    sizes = sorted({_size(r) for r in by("prepare")})
    for name, skew in SKEWS.items():
        pieces = sorted((r for r in by("prepare", skew=skew) if r["piece_rows"] is not None), key=_size)
        whole = {_size(r): r for r in by("prepare", skew=skew, piece_rows=None)}
        for r in pieces:
            base = whole.get(_size(r))
            vs = f"; whole buckets {base['prepare_s']:.1f}s, {base['prepare_peak_rss_gib']:.2f} GiB" if base else ""
            print(f"prepare {_size(r):,} rows, {name} skew ({skew['user_zipf']}/{skew['item_zipf']}): {r['prepare_s']:.1f}s "
                  f"({r['prepare_s'] / r['rows'] * 1e6:.2f} us/row), peak RSS {r['prepare_peak_rss_gib']:.2f} GiB{vs}")
        if len(pieces) >= 2:
            small, big = pieces[0], pieces[-1]
            print(f"prepare peak RSS, {name} skew: {big['prepare_peak_rss_gib']:.2f} / {small['prepare_peak_rss_gib']:.2f} GiB = "
                  f"{big['prepare_peak_rss_gib'] / small['prepare_peak_rss_gib']:.2f}x (targets: <= 1.5 GiB, <= 1.2x)")
    for size in sorted({_size(r) for r in by("prepare_transfer")}):
        plain = [r for r in by("prepare_transfer", transfer_per_row=0) if _size(r) == size]
        for r in (r for r in by("prepare_transfer") if _size(r) == size and r["transfer_per_row"]):
            if plain:
                print(f"prepare {size:,} rows with {r['transfer_per_row']} sampled pairs per train row ({r['transfer_rows']:,}): "
                      f"{r['prepare_s'] / plain[0]['prepare_s']:.2f}x the time, {r['prepare_peak_rss_gib'] / plain[0]['prepare_peak_rss_gib']:.2f}x the peak RSS")
    at = lambda kind, size, **kw: [r for r in by(kind, **kw) if _size(r) == size]  # noqa: E731
    if len(sizes) >= 2:
        for w in sorted({r["workers"] for r in by("train_student")}):
            a, b = at("train_student", sizes[0], workers=w), at("train_student", sizes[-1], workers=w)
            if a and b:
                ra, rb = max(a[0]["peak_rss_gib_per_worker"]), max(b[0]["peak_rss_gib_per_worker"])
                print(f"student peak RSS/worker, {w} worker(s): {rb:.2f} / {ra:.2f} GiB = {rb / ra:.2f}x (target <= 1.2x, <= 3 GiB)")
    for rows in sizes:
        one, two = at("train_student", rows, workers=1), at("train_student", rows, workers=2)
        one = [r for r in one if r.get("overlap_input_dist", True)]
        inline = [r for r in two if r.get("overlap_input_dist") is False]
        two = [r for r in two if r.get("overlap_input_dist", True)]
        if one and two:
            print(f"{rows:,} rows: 2 workers / 1 = {two[0]['samples_per_s'] / one[0]['samples_per_s']:.2f}x samples/s (target >= 1.6x)")
        if two and inline:
            print(f"{rows:,} rows, 2 workers: input distribution ahead / inline = {two[0]['samples_per_s'] / inline[0]['samples_per_s']:.2f}x samples/s")
        reader, ours, plain = at("reader", rows), at("our_loop", rows), at("plain_torchrec", rows)
        in_memory = at("plain_torchrec_in_memory", rows)
        if reader and one:
            print(f"{rows:,} rows: reader / streaming student (1 worker) = {reader[0]['samples_per_s'] / one[0]['samples_per_s']:.1f}x (target >= 5x)")
        if ours and plain:
            print(f"{rows:,} rows: our loop / plain TorchRec (same reader) = {ours[0]['samples_per_s'] / plain[0]['samples_per_s']:.2f}x (target >= 0.9x)")
        if ours and in_memory:
            print(f"{rows:,} rows: our loop / plain TorchRec on in-memory batches = {ours[0]['samples_per_s'] / in_memory[0]['samples_per_s']:.2f}x")

if __name__ == "__main__":
    raise SystemExit(main())
