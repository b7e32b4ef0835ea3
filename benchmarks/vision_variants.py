"""Variants of the shipped vision DiverseDistill, one seed, on validation, beside CA-MKD.

Why: in vision the method with equal teacher weights and its best baseline (CA-MKD, same transfer
images, same KD weight) sat within noise of each other. Before a variant of the method is believed
to separate them it must first win on validation at one seed (then gap.py measures it over 5 seeds
on test: ``benchmarks/results/gap.json``); this script
trains each variant exactly as ``gap.py`` trains the shipped method (same data, teachers, budget;
a variant adds config overrides) and records what each one measured, so "what was tried" is a
file, not a sentence.

Reproduce (after ``make demo``; ~7 minutes per run on 2 cores, one run per variant plus the two
references; ``--reuse`` reads runs whose config matches, e.g. gap.py's own under runs/gap_vision):
    .venv/bin/python benchmarks/vision_variants.py --out runs/gap_vision --reuse train.epochs=8 \\
        --variant 'kd_equal_weights=committee.losses=["task","kd","answer","align","gate"];committee.weights.kd=3' \\
        --variant 'confidence_temperature_1=committee.loss_options={confidence_kd: {confidence_temperature: 1.0}}' \\
        --variant 'confidence_temperature_0_25=committee.loss_options={confidence_kd: {confidence_temperature: 0.25}}' \\
        --variant 'confidence_temperature_0_05=committee.loss_options={confidence_kd: {confidence_temperature: 0.05}}' \\
        --variant 'confidence_kd_without_qa=committee.losses=["task","confidence_kd"]'

(The variants of the earlier, equal-weight config -- gate, answer head, KD temperature, answer_kd,
align and answer weights -- are in ``benchmarks/results/vision_variants_equal_kd/``, written by this
script when that config was the shipped one.)

Writes ``benchmarks/results/vision_variants.json``. Selection reads validation only; test top-1
is recorded beside it and read by no decision.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gap import SHIPPED, VisionBench  # noqa: E402
from provenance import provenance  # noqa: E402

BASELINE = "camkd"  # the best vision baseline on validation in gap.json


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value;key=value`` -> (NAME, [overrides]); ';' separates overrides (a JSON list may hold commas)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"variant '{text}': expected NAME=key=value[;key=value]")
    return name, [o for o in rest.split(";") if o]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-dir", default="runs/vision_demo")
    parser.add_argument("--out", default="runs/vision_variants")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], help="NAME=key=value[;key=value], repeatable")
    parser.add_argument("--reuse", action="store_true", help="read runs whose metrics.json exists (with the same config)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every run (e.g. train.epochs=8)")
    args = parser.parse_args()
    names = [n for n, _ in args.variant]
    if len(set(names)) != len(names) or {SHIPPED, BASELINE} & set(names):
        parser.error(f"variant names must be distinct and differ from {SHIPPED} and {BASELINE}")
    args.draws = 0  # VisionBench's paired bootstrap is not used here
    bench = VisionBench(args)

    def measured(name: str, config: str, extra: list[str]) -> dict[str, Any]:
        m = bench.distill(name, config, args.seed, extra)
        return {"val": m["val"]["top1"], "test": m["test"]["top1"], "best_epoch": m["best_epoch"], "epochs_run": len(m["history"])}

    references = {SHIPPED: measured(SHIPPED, SHIPPED, []), BASELINE: measured(BASELINE, BASELINE, [])}
    shipped_val = references[SHIPPED]["val"]
    variants = {}
    for name, extra in args.variant:
        r = measured(name, SHIPPED, extra)
        variants[name] = {"overrides": extra, **r, "val_minus_shipped": r["val"] - shipped_val}
    print(f"\nseed {args.seed}, validation top-1 (test beside it, not used to choose):")
    for name, r in {**references, **variants}.items():
        delta = f"  {r['val_minus_shipped']:+.4f} vs shipped" if "val_minus_shipped" in r else ""
        print(f"  {name:<24} val {r['val']:.4f}  test {r['test']:.4f}  best epoch {r['best_epoch']} of {r['epochs_run']}{delta}")
    payload = {
        "seed": args.seed, "shipped": SHIPPED, "baseline": BASELINE, "overrides": args.overrides,
        "metric": "top-1 (validation: 5,000 held-out training images; test: the official 10,000)",
        "references": references, "variants": variants,
        "command": "python benchmarks/vision_variants.py " + shlex.join(sys.argv[1:]),
        "provenance": provenance(sorted(m.parent for m in Path(args.out).rglob("metrics.json"))),
    }
    path = Path(args.results) / "vision_variants.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
