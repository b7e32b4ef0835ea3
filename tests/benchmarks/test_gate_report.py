"""gate_report.py reads the gate runs and paired tests it is pointed at, and chooses the shipped gate
on validation only: a gate that is better on test but worse on validation is not chosen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(runs: Path, method: str, seed: int, val: float, test: float, run: int, dense: int = 1000) -> None:
    folder = runs / f"{method}-seed{seed}"
    folder.mkdir(parents=True)
    metrics = {"val": {"top1": val}, "test": {"top1": test}, "teacher_forwards": {"run": run, "dense": dense}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def _paired(results: Path, a: str, b: str, relative: float) -> None:
    results.mkdir(parents=True, exist_ok=True)
    payload = {"relative": relative, "ci95": [-0.001, 0.002], "seed_ci95": [-0.003, 0.004]}
    (results / f"paired_vision_{a}_vs_{b}.json").write_text(json.dumps(payload))


def test_the_shipped_gate_is_chosen_on_validation_and_the_other_domain_is_kept(tmp_path: Path) -> None:
    runs, results, out = tmp_path / "runs", tmp_path / "results", tmp_path / "gate.json"
    for seed in (0, 1):
        _run(runs, "diverse_distill_dense", seed, val=0.90, test=0.88, run=1000)
        _run(runs, "diverse_distill_random", seed, val=0.91, test=0.87, run=700)  # best on validation
        _run(runs, "diverse_distill_value", seed, val=0.89, test=0.89, run=700)  # best on test: not chosen
        _run(runs, "diverse_distill_sampled", seed, val=0.95, test=0.95, run=800)  # skips 20% < the 0.3 budget: not eligible
        _run(runs, "diverse_distill_importance", seed, val=0.96, test=0.96, run=500)  # built before the fix: not eligible
    for method in ("diverse_distill_random", "diverse_distill_value", "diverse_distill_sampled", "diverse_distill_importance"):
        _paired(results, method, "diverse_distill_dense", relative=-0.001)
    _paired(results, "diverse_distill_value", "diverse_distill_random", relative=0.01)
    out.write_text(json.dumps({"rec": {"shipped": "random"}, "vision": None, "command": "old"}))
    done = subprocess.run([sys.executable, "benchmarks/gate_report.py", "--domain", "vision", "--seeds", "0", "1", "--budget", "0.3", str(runs), str(results),
                           "--out", str(out), "--old-build", "importance"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    payload = json.loads(out.read_text())
    assert payload["rec"] == {"shipped": "random"} and "command" not in payload
    vision = payload["vision"]
    assert vision["shipped"] == "random" and vision["chosen_on"] == "validation" and vision["shipped_budget"] == "0.3"
    value = vision["gates"]["value"]["budgets"]["0.3"]
    assert abs(value["skipped"] - 0.3) < 1e-12 and value["test_mean"] == 0.89 and "vs_random_ci_rows" in value
    assert abs(vision["gates"]["random"]["budgets"]["0.3"]["val_rel_diff_vs_dense"] - 0.01 / 0.90) < 1e-12
    assert "vs_random_ci_rows" not in vision["gates"]["random"]["budgets"]["0.3"]
    assert vision["gates"]["importance"]["budgets"]["0.3"]["built_before_gate_rng_fix"] is True
    assert "built_before_gate_rng_fix" not in value


def test_no_runs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "benchmarks/gate_report.py", "--budget", "0.3", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "g.json")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no (gate, budget)" in done.stderr
    assert not (tmp_path / "g.json").exists()


def test_the_shipped_configs_are_the_gates_gate_json_chose() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gate_report import SETTINGS

    from recsys_committee.committee import GateConfig
    from recsys_committee.train.config import load_config

    payload = json.loads((ROOT / "benchmarks/results/gate.json").read_text())
    checked = 0
    for domain in ("rec", "vision"):
        if payload.get(domain) is None:
            continue
        shipped = payload[domain]["shipped"]
        committee = load_config(ROOT / "configs" / domain / "diverse_distill.yaml").committee
        gate_config = GateConfig(**committee["gate_config"])  # unset keys read as their defaults
        want = SETTINGS[shipped]
        assert committee["gate"] == want["gate"], domain
        for key, value in want.items():
            if key != "gate":
                got = getattr(gate_config, key)
                assert (list(got) if isinstance(got, tuple) else got) == value, (domain, key)
        if want["gate"] != "importance":  # the budget gates run at the shipped budget
            assert gate_config.skip_target == float(payload[domain]["shipped_budget"]), domain
        checked += 1
    assert checked >= 1


def test_a_learned_gate_is_chosen_only_when_it_beats_random_on_validation_beyond_the_seed_noise() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gate_report import choose_on_validation

    def entry(vals):
        return {"budgets": {"0.3": {"skipped": 0.3, "val_mean": sum(vals) / len(vals), "val_per_seed": vals}}}

    random = entry([0.90, 0.91, 0.92])
    noisy = entry([0.93, 0.89, 0.925])  # higher mean, but the paired differences straddle 0
    clear = entry([0.905, 0.915, 0.925])  # +0.005 on every seed
    assert choose_on_validation({"random": random, "value": noisy}, "0.3") == "random"
    assert choose_on_validation({"random": random, "value": noisy, "unic": clear}, "0.3") == "unic"


def test_the_budget_is_a_floor_a_gate_skipping_less_is_not_shipped_however_it_validates() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gate_report import choose_on_validation, ship

    def entry(skipped, vals, vs_random=None):
        e = {"skipped": skipped, "val_mean": sum(vals) / len(vals), "val_per_seed": vals}
        if vs_random:
            e["vs_random_ci_rows"] = vs_random
        return {"budgets": {"0.3": e}}

    gates = {
        "random": entry(0.2998, [0.95, 0.95, 0.95]),  # a Bernoulli draw that fell short of 30%
        "random_exact": entry(0.3008, [0.90, 0.91, 0.92]),
        "unic": entry(0.35, [0.905, 0.915, 0.925], vs_random=[-0.003, -0.001]),  # beats it on validation, loses on test
    }
    assert choose_on_validation(gates, "0.3") == "unic"
    assert ship(gates, "0.3", "unic") == "random_exact"
    gates["unic"]["budgets"]["0.3"]["vs_random_ci_rows"] = [0.0001, 0.0003]
    assert ship(gates, "0.3", "unic") == "unic"
    del gates["unic"]
    assert choose_on_validation(gates, "0.3") == "random_exact"
