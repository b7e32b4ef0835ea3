"""Is a difference between two methods real, or the test set's sampling noise? A paired bootstrap
over the test rows, on the students the reproductions already trained.

Why: the gate's target is "<= 0.1% relative metric loss", and 0.1% of a 0.72 AUC is 0.0007;
the test sets here have 10,000 rows. This prints how small a difference that test set can
resolve, so the report can say "not met", "met" or "cannot tell" rather than read a mean.

Reproduce (after benchmarks/reproduce_rec.py / reproduce_vision.py):
    python benchmarks/paired_test.py --domain rec --runs runs/reproduce_rec
    python benchmarks/paired_test.py --domain vision --runs runs/vision_cosine10
    python benchmarks/paired_test.py --domain vision --runs runs/vision_cosine10 --a diverse_distill_dense --b camkd
Defaults compare DiverseDistill gated (a) with dense (b) over seeds 0 1 2; writes
benchmarks/results/paired_<domain>_<a>_vs_<b>.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import paired_bootstrap  # noqa: E402

from recsys_committee.metrics.binary import auc  # noqa: E402  (the reports' AUC, with row weights)
from recsys_committee.train.config import load_config  # noqa: E402


def weighted_top1(predicted: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> float:
    correct = (predicted == labels).double()
    return float((correct * weights).sum() / weights.sum())


def rec_scores(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(test probabilities, test labels) of the student saved in ``run``."""
    from recsys_committee.rec_domain import predict
    from recsys_committee.rec_domain import load_data, load_trained_model

    cfg = load_config(run / "config.yaml")
    data = _cached(("rec", str(cfg.data)), lambda: load_data(cfg.data))
    student = load_trained_model(run / "student.safetensors", data)
    return predict(student, data.test, cfg.train.eval_batch_size), data.test.labels


def vision_scores(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(test predicted classes, test labels) of the student saved in ``run``."""
    from vision_committee.checkpoint import load_vision_model
    from recsys_committee.train.rows import predict_logits
    from vision_committee.domain import load_vision_data

    cfg = load_config(run / "config.yaml")
    data = _cached(("vision", str(cfg.data)), lambda: load_vision_data(cfg))
    student = load_vision_model(run / "student.safetensors")
    return predict_logits(student, data.test, cfg.train.eval_batch_size).argmax(1), data.test.labels


def _slug(method: str) -> str:
    return method.replace("[", "_").replace("]", "")


_DATA: dict = {}


def _cached(key, load):
    if key not in _DATA:
        _DATA[key] = load()
    return _DATA[key]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=["rec", "vision"], default="rec")
    parser.add_argument("--runs", required=True, help="folder of <method>-seed<s>/ runs (config.yaml, student.safetensors)")
    parser.add_argument("--a", default="diverse_distill", help="method whose difference is reported (a - b)")
    parser.add_argument("--b", default="diverse_distill_dense")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args()

    scores, metric = (rec_scores, auc) if args.domain == "rec" else (vision_scores, weighted_top1)
    runs = Path(args.runs)
    pairs, labels = [], None
    for seed in args.seeds:
        found = []
        for method in (args.a, args.b):
            run = runs / f"{method}-seed{seed}"
            if not (run / "student.safetensors").is_file() or not (run / "config.yaml").is_file():
                parser.error(f"{run}: no student.safetensors/config.yaml (run the reproduction for '{method}' seed {seed} first)")
            s, y = scores(run)
            if labels is not None and not torch.equal(y, labels):
                parser.error(f"{run}: its test labels differ from the other runs' (another data slice?)")
            labels = y
            found.append(s)
        pairs.append((found[0], found[1]))

    result = paired_bootstrap(metric, pairs, labels, draws=args.draws)
    result.update(command="python benchmarks/paired_test.py " + shlex.join(sys.argv[1:]), a=args.a, b=args.b, seeds=args.seeds,
                  metric="test AUC" if args.domain == "rec" else "test top-1")
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / f"paired_{args.domain}_{_slug(args.a)}_vs_{_slug(args.b)}.json").write_text(json.dumps(result, indent=2))

    print(result["command"])
    print(f"{result['metric']}: {args.a} - {args.b} on the same {result['rows']} test rows, seeds {args.seeds}")
    print("per seed: " + ", ".join(f"{d:+.4f}" for d in result["delta_per_seed"]) + f"  (seed std {result['seed_std']:.4f})")
    lo, hi = result["ci95"]
    rlo, rhi = result["relative_ci95"]
    print(f"seed mean {result['delta']:+.4f} ({100 * result['relative']:+.2f}% relative)")
    print(f"  95% interval over test rows (models fixed, {result['draws']} draws): [{lo:+.4f}, {hi:+.4f}] "
          f"([{100 * rlo:+.2f}%, {100 * rhi:+.2f}%])")
    if result["seed_ci95"] is not None:
        slo, shi = result["seed_ci95"]
        print(f"  95% t-interval over training seeds (n={len(args.seeds)}): [{slo:+.4f}, {shi:+.4f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
