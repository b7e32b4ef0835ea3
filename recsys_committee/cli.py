"""``recsys-committee`` (= ``python -m recsys_committee``): train, distill, cache, summarise."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from recsys_committee.cli_support import add_debug_flag, run_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: nothing but registries is reachable


def _load(args: argparse.Namespace):
    """The run config with the cluster flags folded in (they are ``dist.*`` keys, so a YAML file
    or ``dist.num_workers=2`` works as well)."""
    from recsys_committee.train.config import load_config

    flags = []
    if getattr(args, "data", None) is not None:
        flags.append(f"data.spec={Path(args.data).resolve()}")
    if getattr(args, "num_workers", None) is not None:
        flags.append(f"dist.num_workers={args.num_workers}")
    if getattr(args, "use_gpu", False):
        flags.append("dist.use_gpu=true")
    if getattr(args, "storage_path", None) is not None:
        flags.append(f"dist.storage_path={Path(args.storage_path).resolve()}")
    if getattr(args, "teachers", None) is not None:
        flags.append(f"teachers={json.dumps(_teachers_file(args.teachers))}")
    return load_config(args.config, list(args.overrides) + flags)


def _teachers_file(path: str) -> list:
    """The ``teachers:`` list of a YAML file (``configs/rec/teachers/*.yaml``): the committee a
    distillation runs, in place of its config's."""
    from recsys_committee.errors import ConfigError
    from recsys_committee.train.config import load_yaml

    teachers = load_yaml(path).get("teachers")
    if not isinstance(teachers, list) or not teachers:
        raise ConfigError(f"--teachers {path}: the file needs a non-empty 'teachers:' list")
    return teachers


def _run(command: str, args: argparse.Namespace) -> dict:
    """One process unless ``--num-workers`` / ``dist.num_workers`` asks for Ray Train workers
    (``--num-workers 1`` still goes through Ray: sharded path, DCP checkpoints)."""
    cfg = _load(args)
    if args.num_workers is not None or cfg.dist.num_workers > 1 or cfg.dist.use_gpu:
        from recsys_committee.rec_domain import run_with_ray

        return run_with_ray(command, cfg, Path(args.out), overwrite=args.overwrite)
    from recsys_committee.rec_domain import run_distill, run_train

    return (run_train if command == "train" else run_distill)(cfg, Path(args.out), overwrite=args.overwrite)


def _train(args: argparse.Namespace) -> int:
    metrics = _run("train", args)
    print(json.dumps({k: metrics[k] for k in ("model", "params", "best_epoch", "epoch_seconds")} | {"val_auc": metrics["val"]["auc"], "test": {k: metrics["test"][k] for k in ("auc", "logloss", "gauc")}}, indent=2))
    return 0


def _distill(args: argparse.Namespace) -> int:
    m = _run("distill", args)
    summary = {k: m[k] for k in ("method", "student_params", "teacher_params", "teacher_forwards", "best_epoch")}
    summary["test"] = {k: m["test"][k] for k in ("auc", "logloss", "gauc")}
    print(json.dumps(summary, indent=2))
    return 0


def _cache(args: argparse.Namespace) -> int:
    if args.teacher is not None:  # a frozen model over a prepared dataset: distributed batch inference
        from recsys_committee.data.prepared.build import is_prepared
        from recsys_committee.data.prepared.teacher_outputs import build_streamed_cache
        from recsys_committee.errors import UserError

        if args.data is None or not is_prepared(args.data):
            raise UserError(f"cache --teacher needs --data DATASET_DIR (a prepared dataset), got {args.data!r}")
        index = build_streamed_cache(args.data, args.out, args.teacher, args.tap, actors=args.num_workers, batch_size=args.batch_size)
        print(json.dumps({k: index[k] for k in ("rows", "seconds", "examples_per_s", "actors")}, indent=2))
        return 0
    if args.config is None:
        from recsys_committee.errors import UserError

        raise UserError("cache needs --config (the LM teacher's) or --teacher MODEL with --data DATASET_DIR")
    from recsys_committee.data.prepared.build import is_prepared
    from recsys_committee.lm_cache_command import run_cache, run_streamed_cache

    cfg = _load(args)
    if args.data is not None and is_prepared(args.data):  # the LM over a prepared dataset's shards: Ray Data actors
        print(json.dumps(run_streamed_cache(cfg, Path(args.data), Path(args.out), workers=args.num_workers), indent=2))
        return 0
    print(json.dumps(run_cache(cfg, Path(args.out), rebuild=args.rebuild_cache, workers=args.num_workers), indent=2))
    return 0


def _score(args: argparse.Namespace) -> int:
    from recsys_committee.score import run_score

    report = run_score(Path(args.model), Path(args.out), input_path=args.input, history_path=args.history, split=args.split)
    print(json.dumps(report, indent=2, default=float))
    return 0


def _export(args: argparse.Namespace) -> int:
    from recsys_committee.serve.artifact import FUSED_MAX_BATCH, describe, export_artifact

    manifest = export_artifact(Path(args.model), Path(args.out), quantize=args.quantize, overwrite=args.overwrite, fused_tables=args.fused_tables,
                               lookup=args.lookup, fused_max_batch=FUSED_MAX_BATCH if args.fused_max_batch is None else args.fused_max_batch)
    print(json.dumps(describe(manifest, Path(args.out)), indent=2))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from recsys_committee.data.prepared.build import PrepareOptions, prepare_command

    options = PrepareOptions(bucket_rows=args.bucket_rows, chunk_rows=args.chunk_rows, row_group_rows=args.row_group_rows,
                             piece_rows=args.piece_rows, num_workers=args.num_workers, pool_bin_rows=args.pool_bin_rows)
    manifest = prepare_command(Path(args.data), Path(args.out), options, overwrite=args.overwrite)
    print(json.dumps({k: manifest[k] for k in ("rows", "buckets", "content_hash", "prepare_seconds")}, indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from recsys_committee.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, overrides=args.overrides)
    return 0


def _overwrite_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in OUT (without it a non-empty OUT is refused; its files go once the new run's inputs validated)")


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (Ray Train)")
    group.add_argument("--num-workers", type=int, help="train on N Ray Train workers (sharded tables, DCP checkpoints)")
    group.add_argument("--use-gpu", action="store_true", help="one GPU per worker, nccl")
    group.add_argument("--storage-path", help="Ray Train storage for checkpoints (default: OUT/ray)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys-committee", description="Distil a committee of frozen teachers into a small recommender.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model (student, expert, LM teacher)")
    train.add_argument("--config", required=True)
    train.add_argument("--data", help="a data spec YAML (default: configs/data/ml-100k.yaml) or a prepared dataset folder (streamed); replaces the config's data block")
    train.add_argument("--out", required=True)
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    _overwrite_flag(train)
    _cluster_flags(train)
    train.set_defaults(func=_train)
    distill = sub.add_parser("distill", help="distil a committee of trained teachers into the student")
    distill.add_argument("--config", required=True)
    distill.add_argument("--data", help="a data spec YAML (default: configs/data/ml-100k.yaml) or a prepared dataset folder (streamed); replaces the config's data block")
    distill.add_argument("--out", required=True)
    distill.add_argument("--teachers", help="a YAML file whose 'teachers:' list replaces the config's "
                         "(e.g. configs/rec/teachers/experts_lm.yaml: the LM teacher with both experts)")
    distill.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    _overwrite_flag(distill)
    _cluster_flags(distill)
    distill.set_defaults(func=_distill)
    cache = sub.add_parser("cache", help="compute a teacher's tapped features (and logits) once, to disk: the LM teacher (--config), "
                           "or a trained model over a prepared dataset (--teacher, distributed over --num-workers Ray actors)")
    cache.add_argument("--config")
    cache.add_argument("--teacher", help="a trained model file (model.safetensors) to run over every shard of --data DATASET_DIR")
    cache.add_argument("--tap", default="top", help="the module whose output is cached as the teacher's features (with --teacher)")
    cache.add_argument("--num-workers", type=int, default=1, help="Ray Data actors computing the cache (the LM teacher's shards, or --teacher over a prepared dataset)")
    cache.add_argument("--batch-size", type=int, default=4096)
    cache.add_argument("--data", help="a data spec YAML (default: configs/data/ml-100k.yaml) or a prepared dataset folder (streamed); replaces the config's data block")
    cache.add_argument("--out", required=True, help="the cache folder (resumed if a build was interrupted)")
    cache.add_argument("--rebuild-cache", action="store_true", help="discard an existing (stale) cache and rebuild it")
    cache.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    cache.set_defaults(func=_cache)
    score = sub.add_parser("score", help="score raw rows with a trained model directory (train or distill output)")
    score.add_argument("--model", required=True, help="a train/distill output directory, or an artifact folder written by export")
    score.add_argument("--input", help="rows with the training data's columns (parquet, csv, RecBole)")
    score.add_argument("--history", help="earlier rows whose items and outcomes form the scored rows' histories and past stats (not scored)")
    score.add_argument("--split", choices=("train", "val", "test"), help="score this split of the model's own data spec instead of --input")
    score.add_argument("--out", required=True, help="predictions parquet: the input columns + score")
    score.set_defaults(func=_score)
    export = sub.add_parser("export", help="write the trained student as a serving artifact: a TorchScript program (KJT + dense in, probability out) "
                            "that loads with torch + torchrec alone, with its feature order and vocabularies")
    export.add_argument("--model", required=True, help="a train/distill output directory whose model is the student")
    export.add_argument("--out", required=True, help="ARTIFACT_DIR")
    export.add_argument("--quantize", choices=("none", "int8"), default="none", help="int8: embedding tables quantised with TorchRec's inference quantisation")
    export.add_argument("--lookup", choices=("auto", "per-table", "fused"), default="auto",
                        help="fp32 table lookup: auto (default) = TorchRec's fused inference lookup up to --fused-max-batch rows a call "
                        "(lower latency), the per-table training lookup above (more rows/s); per-table / fused = always that one")
    export.add_argument("--fused-max-batch", type=int, help="auto: the largest batch the fused lookup serves (default: serve/artifact.py FUSED_MAX_BATCH)")
    export.add_argument("--fused-tables", action="store_true", help="the same as --lookup fused (int8 tables are always fused)")
    _overwrite_flag(export)
    export.set_defaults(func=_export)
    prep = sub.add_parser("prepare", help="build a data spec's features out of core into a prepared dataset (parquet shards + manifest) that runs stream")
    prep.add_argument("--data", required=True, help="the data spec YAML")
    prep.add_argument("--out", required=True, help="DATASET_DIR (an unfinished prepare there is resumed)")
    prep.add_argument("--num-workers", type=int, default=1, help="run the buckets as N Ray tasks (default: in this process)")
    prep.add_argument("--bucket-rows", type=int, default=500_000, help="rows per user / item bucket on average (sets the bucket count)")
    prep.add_argument("--chunk-rows", type=int, default=500_000, help="source rows read at a time")
    prep.add_argument("--piece-rows", type=int, default=100_000,
                      help="rows of a bucket featurised at a time (bounds memory when one user holds much of a bucket)")
    prep.add_argument("--row-group-rows", type=int, default=4096, help="parquet row group size (the streaming reader's unit)")
    prep.add_argument("--pool-bin-rows", type=int, default=2_000_000,
                      help="transfer.sampled: train rows per time bin of the popularity pool the pairs are drawn from (what a draw holds at once)")
    _overwrite_flag(prep)
    prep.set_defaults(func=_prepare)
    demo = sub.add_parser("demo", help="end-to-end run on MovieLens-100K, prints the result table")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every stage")
    demo.set_defaults(func=_demo)
    add_debug_flag(parser, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
