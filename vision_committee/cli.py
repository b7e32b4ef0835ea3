"""``python -m vision_committee train|distill --config configs/vision/... --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from recsys_committee.cli_support import add_debug_flag, run_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision_committee", description="Committee distillation for image classifiers (Fashion-MNIST).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("train", "train one classifier (a teacher or the no-KD student)"), ("distill", "distil a committee into the student")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="YAML under configs/vision/")
        p.add_argument("--out", required=True, help="run folder (config.yaml, metrics.json, model.safetensors/student.safetensors, curve.png)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the run already in OUT (without it a non-empty OUT is refused; its files go once the new run's inputs validated)")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides (after the file)")
    demo = sub.add_parser("demo", help="short end-to-end run: train the teachers on a slice, distil, print a table")
    demo.add_argument("--out", default="runs/vision_demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every stage")
    add_debug_flag(parser, sub)
    return parser


def _command(args: argparse.Namespace) -> int:
    from recsys_committee.train.config import load_config

    if args.command == "demo":
        from vision_committee.demo import run_vision_demo

        run_vision_demo(Path(args.out), seed=args.seed, overrides=list(args.overrides))
        return 0
    from vision_committee.domain import run_vision_distill, run_vision_train

    cfg = load_config(args.config, list(args.overrides))
    metrics = (run_vision_train if args.command == "train" else run_vision_distill)(cfg, Path(args.out), overwrite=args.overwrite)
    keys = ("model", "params") if args.command == "train" else ("method", "student_params", "teacher_params", "teacher_forwards")
    summary = {k: metrics[k] for k in keys} | {"best_epoch": metrics["best_epoch"], "epoch_seconds": round(metrics["epoch_seconds"], 1),
                                              "val_top1": metrics["val"]["top1"], "test_top1": metrics["test"]["top1"]}
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(_command, args)
