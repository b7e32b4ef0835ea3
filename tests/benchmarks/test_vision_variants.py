"""vision_variants.py: a variant is a name plus overrides of the shipped config, and every variant
the results file records is one the shipped config accepts (so its command can be rerun)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from vision_variants import parse_variant  # noqa: E402

from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.train.runner import committee_config  # noqa: E402


def test_a_variant_is_a_name_and_semicolon_separated_overrides() -> None:
    assert parse_variant("gate_dense=committee.gate=dense") == ("gate_dense", ["committee.gate=dense"])
    name, overrides = parse_variant('answer_kd=committee.losses=["task","kd"];committee.weights.answer_kd=0.5')
    assert name == "answer_kd"
    assert overrides == ['committee.losses=["task","kd"]', "committee.weights.answer_kd=0.5"]  # the list's comma stays
    for bad in ("gate_dense", "=committee.gate=dense", "gate_dense="):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=key=value"):
            parse_variant(bad)


def test_the_recorded_variants_are_configs_the_shipped_method_accepts() -> None:
    path = ROOT / "benchmarks" / "results" / "vision_variants.json"
    recorded = json.loads(path.read_text())
    assert recorded["variants"], "the results file records no variant"
    for name, variant in recorded["variants"].items():
        cfg = load_config(ROOT / "configs" / "vision" / f"{recorded['shipped']}.yaml", [*recorded["overrides"], *variant["overrides"]])
        assert committee_config(cfg).method == "diverse_distill", name  # the committee section parses too
        assert variant["val_minus_shipped"] == pytest.approx(variant["val"] - recorded["references"][recorded["shipped"]]["val"])
