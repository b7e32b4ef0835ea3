"""The teacher-student gap three ways: how much of it the shipped distillation recovers, against
the best teacher, the LM teacher and a same-inputs ceiling, beside every baseline given the same
transfer rows.

Reproduce (recommendation, MovieLens-100K spec; about an hour on 2 cores):
    .venv/bin/python benchmarks/gap.py --seeds 0 1 2 3 4 --reference-seeds 0 1 2

What it runs, in order (``--reuse`` reads finished runs instead of rerunning them):
  1. references: each expert trained with every reference seed (``OUT/refs/seed<s>/<expert>``);
     the seed-0 experts are the committee's frozen teachers, with a second DIN+DCN (the same
     config at seed 1, ``OUT/refs/seed0/expert_din_dcn_2``). The best teacher is the one with
     the best mean validation AUC; the same-inputs ceiling is the best expert architecture
     trained on exactly the student's inputs (the shipped student reads every input the experts
     read, so those are the expert runs themselves: the script checks the feature sets agree).
     The LM reference is the LM teacher run in ``OUT/refs/lm_teacher`` when one is there (it
     is not trained here: ``recsys-committee cache --config configs/rec/lm_cache.yaml --out
     runs/lm_cache --num-workers 2`` then ``recsys-committee train --config
     configs/rec/lm_teacher.yaml --out OUT/refs/lm_teacher``, ~30 minutes on 2 cores). With it,
     the teacher assistant of TAKD (``ta_kd_lm``) learns from the LM on the labeled rows
     (``OUT/refs/ta/ta_assistant``, the DLRM expert's architecture); without it TAKD is not screened;
  2. the no-KD student (``no_kd``) with every seed, and the student before it read every cheap
     input (``no_kd_basic_inputs``: ids, short history and categorical features only);
  3. a one-seed screen on validation of every baseline and of the shipped method without its
     transfer rows; the best baseline (best validation AUC) and the shipped method then run
     with every seed;
  4. per method: test AUC mean/std over seeds, the share of each gap recovered
     ((mean method - mean no_kd) / (mean reference - mean no_kd); null when the reference is
     less than 2 no-KD seed stds above the no-KD mean), and 95% intervals of the paired
     difference over test rows (``benchmarks/paired_test.py``'s bootstrap) against no-KD and the
     best baseline. Selection reads validation only.

Writes ``benchmarks/results/gap.json`` (its ``rec`` entry; other domains' entries are kept),
``gap_rec.md`` and ``gap_rec_val_curves.png``.

Vision (``--domain vision``, after ``make demo``; ~4 hours on 2 cores with the shipped 6 transfer
images per labeled image): the demo's data and seed-0 teachers (``--teacher-dir
runs/vision_demo``), students trained ``PATIENT_EPOCHS`` (16) cosine epochs, twice the demo's,
no-KD and the shipped method over the seeds, a one-seed validation screen of
average KD and CA-MKD, the best of them over the seeds, and (``--transfer-screen 2 4 6``) the
shipped method with each transfer-set size on validation; the "LM" gap is against the foundation
model; writes the ``vision`` entry of gap.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import provenance  # noqa: E402
from report import gap, mean_std, paired_bootstrap, plot_val_curves, reusable_metrics  # noqa: E402

from recsys_committee.metrics.binary import auc  # noqa: E402
from recsys_committee.rec_domain import load_data, load_trained_model, predict, run_distill, run_train  # noqa: E402
from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.demo import SECOND_DIN_DCN  # noqa: E402

EXPERTS = {"dlrm": "expert_dlrm", "din_dcn": "expert_din_dcn"}
# teacher-assistant KD (Mirzadeh et al. 2020): LM -> an expert-sized assistant (ta_assistant_lm.yaml)
# -> the student (ta_kd_lm.yaml); screened when the LM reference is there
TAKD = "ta_kd_lm"
BASELINES = ["logit_kd_dlrm", "logit_kd_din_dcn", "feature_kd_dlrm", "feature_kd_din_dcn", "avg_kd", "avg_kd_din_dcn", "camkd", TAKD]
SHIPPED = "diverse_distill"
# the student before it read every input (ids, short history, categorical features; no user_dropout,
# which came later and, with no history or statistics to fall back on, only costs this student)
BASIC_INPUTS = ["model.params.inputs=basic", "model.params.hidden=[864, 256]", "model.params.dense_hidden=[]", "model.params.user_dropout=0"]
CONFIGS = ROOT / "configs" / "rec"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self._data: dict[str, Any] = {}
        self.scores: dict[tuple[str, int], torch.Tensor] = {}

    def data(self, cfg: Any) -> Any:
        key = str(cfg.data)
        if key not in self._data:
            self._data[key] = load_data(cfg.data)
        return self._data[key]

    def run(self, kind: str, config: str, run_dir: Path, seed: int, extra: list[str]) -> dict[str, Any]:
        cfg = load_config(CONFIGS / f"{config}.yaml", [f"seed={seed}", "train.progress=false", *self.args.overrides, *extra])
        metrics = reusable_metrics(run_dir, cfg) if self.args.reuse else None
        start = time.perf_counter()
        if metrics is None:
            runner = run_train if kind == "train" else run_distill
            metrics = runner(cfg, run_dir, data=self.data(cfg), overwrite=True)
        print(f"{run_dir.name} seed {seed}: val {metrics['val']['auc']:.4f} test {metrics['test']['auc']:.4f} "
              f"best epoch {metrics['best_epoch']} of {len(metrics['history'])} ({time.perf_counter() - start:.0f}s)", flush=True)
        return metrics

    def teacher_dir(self, seed: int) -> Path:
        return self.out / "refs" / f"seed{seed}"

    def distill(self, method: str, config: str, seed: int, extra: list[str] = ()) -> dict[str, Any]:
        # TAKD's teacher is the assistant (train_assistant), every other method's the seed-0 experts
        teachers = self.out / "refs" / "ta" if config == TAKD else self.teacher_dir(self.args.reference_seeds[0])
        return self.run("distill", config, self.out / f"{method}-seed{seed}", seed, [f"teacher_dir={teachers}", *extra])

    def train_assistant(self, lm_dir: Path) -> dict[str, Any]:
        """TAKD's step 1: the LM reference's logits (and the labels) distilled into the assistant,
        on the labeled rows only (the LM's feature cache covers no transfer row); its step 2, the
        student distilling from the assistant, gets the transfer rows as every baseline does."""
        # the config's LM entry (kind, tap), pointed at this reference's checkpoint and feature cache
        lm_params = load_config(lm_dir / "config.yaml").model.params
        lm = {**load_config(CONFIGS / "ta_assistant_lm.yaml").teachers[0], "cache": lm_params["feature_cache"],
              "checkpoint": str(lm_dir / "model.safetensors")}
        return self.run("distill", "ta_assistant_lm", self.out / "refs" / "ta" / "ta_assistant", self.args.reference_seeds[0],
                        ["data.transfer_per_row=0", "teachers=" + json.dumps([lm])])

    def test_scores(self, method: str, seed: int) -> torch.Tensor:
        if (method, seed) not in self.scores:
            run = self.out / f"{method}-seed{seed}"
            cfg = load_config(run / "config.yaml")
            data = self.data(cfg)
            self.scores[(method, seed)] = predict(load_trained_model(run / "student.safetensors", data), data.test, cfg.train.eval_batch_size)
        return self.scores[(method, seed)]

    def ci_rows(self, a: str, b: str, seeds: list[int]) -> list[float]:
        labels = None
        pairs = []
        for seed in seeds:
            pairs.append((self.test_scores(a, seed), self.test_scores(b, seed)))
            run = self.out / f"{a}-seed{seed}"
            labels = self.data(load_config(run / "config.yaml")).test.labels
        return paired_bootstrap(auc, pairs, labels, draws=self.args.draws)["ci95"]


def summary(runs: list[dict[str, Any]], metric: str = "auc") -> dict[str, Any]:
    test, val = [r["test"][metric] for r in runs], [r["val"][metric] for r in runs]
    steady = [h for r in runs for h in r["history"] if h.get("steady_batches")]
    step_ms = 1000 * sum(h["steady_seconds"] for h in steady) / sum(h["steady_batches"] for h in steady) if steady else None
    t = runs[0].get("transfer") or {}
    return {
        "test_mean": statistics.mean(test), "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
        "val_mean": statistics.mean(val), "test_per_seed": test, "val_per_seed": val,
        "epochs_run": [len(r["history"]) for r in runs], "best_epoch": [r["best_epoch"] for r in runs],
        "step_ms": step_ms, "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
        "transfer_rows_per_labeled_row": t.get("per_labeled_row", 0.0),
        "student_params": runs[0].get("student_params") or runs[0].get("params"),
    }


def same_inputs(bench: Bench) -> tuple[bool, str]:
    """Does the shipped student read exactly the experts' inputs? Then the expert runs are the ceiling."""
    from recsys_committee.models import build_model

    cfg = load_config(CONFIGS / "student.yaml", list(bench.args.overrides))
    data = bench.data(cfg)
    student = build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)
    layout = data.table.layout
    expert_inputs = set(layout.student) | set(layout.expert_extra) | set(layout.sequence)
    student_inputs = set(student.embeddings.features) | {"item_id"}
    reads_dense = getattr(student.bottom, "out_dim", 0) > 0 or data.num_dense == 0
    ok = student_inputs == expert_inputs and reads_dense
    return ok, (f"the student reads {sorted(student_inputs)} and the dense vector: the experts' inputs exactly, so the ceiling is the "
                "best expert architecture's own runs" if ok else f"the student reads {sorted(student_inputs)}, the experts {sorted(expert_inputs)}")


VISION_BASELINES = ["avg_kd", "camkd"]  # the multi-teacher baselines (CA-MKD was the best one of the earlier 9-method screen)


# Students train until their validation curves have flattened. The demo's 8 cosine epochs (its
# 15-minute budget) stop them early: best epochs 5-7 of 8, still rising when the rate anneals to 0;
# at 16 the best epochs are 10-15 and the last four sit within ~0.003 (benchmarks/README.md).
PATIENT_EPOCHS = 16


class VisionBench(Bench):
    """The demo's data and teachers (``vision_committee/demo.py``): teachers trained once on 8,000
    images (``--teacher-dir``, e.g. ``make demo``'s runs/vision_demo), students on 2,000 images with
    the teachers run live, for ``PATIENT_EPOCHS`` cosine epochs (not the demo's 8); transfer images
    from the distillation configs."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        from vision_committee.demo import GATE_WARMUP, STUDENT_BUDGET

        base = load_config(ROOT / "configs" / "vision" / "distill_base.yaml")
        live = json.dumps([{**t, "cached": False} for t in base.teachers])
        self.student_budget = [*STUDENT_BUDGET, f"train.epochs={PATIENT_EPOCHS}", *GATE_WARMUP, f"teacher_dir={args.teacher_dir}",
                               "teachers=" + live]

    def student_epochs(self) -> int:
        """The epochs every student runs, overrides included (what the protocol line reports)."""
        return load_config(ROOT / "configs" / "vision" / f"{SHIPPED}.yaml", [*self.student_budget, *self.args.overrides]).train.epochs

    def data(self, cfg: Any) -> Any:
        from vision_committee.domain import load_vision_data

        key = str(cfg.data)
        if key not in self._data:
            self._data[key] = load_vision_data(cfg)
        return self._data[key]

    def distill(self, method: str, config: str, seed: int, extra: list[str] = ()) -> dict[str, Any]:
        from vision_committee.domain import run_vision_distill

        cfg = load_config(ROOT / "configs" / "vision" / f"{config}.yaml", [f"seed={seed}", "train.progress=false", *self.student_budget, *self.args.overrides, *extra])
        run_dir = self.out / f"{method}-seed{seed}"
        metrics = reusable_metrics(run_dir, cfg) if self.args.reuse else None
        start = time.perf_counter()
        if metrics is None:
            metrics = run_vision_distill(cfg, run_dir, data=self.data(cfg), overwrite=True)
        print(f"{run_dir.name}: val {metrics['val']['top1']:.4f} test {metrics['test']['top1']:.4f} best epoch {metrics['best_epoch']} "
              f"of {len(metrics['history'])} ({time.perf_counter() - start:.0f}s)", flush=True)
        return metrics

    def ci_rows(self, a: str, b: str, seeds: list[int]) -> list[float]:
        from paired_test import vision_scores, weighted_top1

        pairs, labels = [], None
        for seed in seeds:
            (pa, labels), (pb, _) = vision_scores(self.out / f"{a}-seed{seed}"), vision_scores(self.out / f"{b}-seed{seed}")
            pairs.append((pa, pb))
        return paired_bootstrap(weighted_top1, pairs, labels, draws=self.args.draws)["ci95"]


def vision_main(args: argparse.Namespace) -> dict[str, Any]:
    bench = VisionBench(args)
    teachers = {n: json.loads((Path(args.teacher_dir) / n / "metrics.json").read_text()) for n in ("foundation", "expert_wide", "expert_deep")}
    best_teacher = max(teachers, key=lambda n: teachers[n]["val"]["top1"])
    no_kd = [bench.distill("no_kd", "no_kd", s) for s in args.seeds]
    screen = {m: bench.distill(m, m, args.screen_seed) for m in VISION_BASELINES}
    screen["diverse_distill_no_transfer"] = bench.distill("diverse_distill_no_transfer", SHIPPED, args.screen_seed, ["committee.transfer=false"])
    best_baseline = max(VISION_BASELINES, key=lambda m: screen[m]["val"]["top1"])
    methods = {SHIPPED: [bench.distill(SHIPPED, SHIPPED, s) for s in args.seeds], best_baseline: [bench.distill(best_baseline, best_baseline, s) for s in args.seeds]}
    # how many transfer images per labeled one: the shipped method on validation, one seed each;
    # the shipped share at the screen seed is the shipped run itself, not trained a second time
    shipped_runs = dict(zip(args.seeds, methods[SHIPPED]))
    shipped_share = methods[SHIPPED][0]["transfer"]["per_labeled_row"]
    transfer_screen = {p: shipped_runs[args.screen_seed] if p == shipped_share and args.screen_seed in shipped_runs
                       else bench.distill(f"diverse_distill_transfer{p}", SHIPPED, args.screen_seed, [f"data.transfer_per_row={p}"])
                       for p in args.transfer_screen}
    for m, r in screen.items():
        methods.setdefault(m, [r])
    base = summary(no_kd, "top1")
    foundation = teachers["foundation"]["test"]["top1"]
    references = {"best_teacher": best_teacher, "best_teacher_test": teachers[best_teacher]["test"]["top1"], "lm_test": foundation,
                  "lm_is": "the foundation model (ImageNet MobileNetV2, fine-tuned)", "ceiling_test": None,
                  "ceiling_why": "recommendation only", "teachers_seed": 0,
                  "teachers": {n: {"test": t["test"]["top1"], "val": t["val"]["top1"]} for n, t in teachers.items()}}
    return {
        "shipped": SHIPPED, "metric": "test top-1 (Fashion-MNIST, official 10,000 test images)",
        "protocol": f"make demo's teachers (8,000 images x 3 epochs, seed 0); students 2,000 images x {bench.student_epochs()} cosine epochs, "
                    f"{shipped_share:g} transfer images per labeled image",
        "overrides": args.overrides,
        "seeds": args.seeds, "screen_seed": args.screen_seed,
        "no_kd": {k: base[k] for k in ("test_mean", "test_std", "val_mean", "test_per_seed", "epochs_run", "best_epoch", "student_params")},
        "references": references, "best_baseline": best_baseline, "screen_val": {m: r["val"]["top1"] for m, r in screen.items()},
        "transfer_screen_val": {str(p): r["val"]["top1"] for p, r in transfer_screen.items()},
        "methods": method_entries(bench, methods, base, references, foundation, best_baseline, args.seeds, "top1"),
        "command": "python benchmarks/gap.py " + shlex.join(sys.argv[1:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=["rec", "vision"], default="rec")
    parser.add_argument("--teacher-dir", default="runs/vision_demo", help="vision: the trained foundation / expert_wide / expert_deep (make demo's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--reference-seeds", type=int, nargs="+", default=[0, 1, 2], help="expert seeds; the first one's experts are the teachers")
    parser.add_argument("--screen-seed", type=int, default=0)
    parser.add_argument("--transfer-screen", type=int, nargs="*", default=[],
                        help="vision: also run the shipped method with each of these transfer images per labeled image (screen seed, validation)")
    parser.add_argument("--baselines", nargs="+", default=BASELINES)
    parser.add_argument("--out", default="runs/gap")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true", help="read runs whose metrics.json exists (with the same config) instead of rerunning")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every run (e.g. data.transfer_per_row=1)")
    args = parser.parse_args()
    if args.domain == "vision":
        vision = vision_main(args)
        path = Path(args.results) / "gap.json"
        payload = json.loads(path.read_text()) if path.exists() else {}
        vision["provenance"] = provenance(sorted(m.parent for m in Path(args.out).rglob("metrics.json")))
        payload["vision"] = vision
        path.write_text(json.dumps(payload, indent=2))
        print(json.dumps({m: {k: e[k] for k in ("test_mean", "test_std", "gap_vs_best_teacher", "gap_vs_lm") if k in e} for m, e in vision["methods"].items()}, indent=1))
        return 0
    bench = Bench(args)

    # 1. references
    ref_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in EXPERTS}
    for seed in args.reference_seeds:
        for name, config in EXPERTS.items():
            ref_runs[name].append(bench.run("train", config, bench.teacher_dir(seed) / config, seed, []))
    refs = {name: summary(runs) for name, runs in ref_runs.items()}
    folder, config, offset = SECOND_DIN_DCN  # the committee's second DIN+DCN, into the first reference seed's folder
    first = args.reference_seeds[0]
    member, twin = bench.teacher_dir(first) / folder, bench.teacher_dir(first + offset) / config
    if first + offset in args.reference_seeds and not member.exists():  # that seed's reference is this model: copy, not retrain
        shutil.copytree(twin, member)
    bench.run("train", config, member, first + offset, [])
    best_teacher = max(refs, key=lambda n: refs[n]["val_mean"])
    lm_metrics = Path(args.out) / "refs" / "lm_teacher" / "metrics.json"
    lm_run = json.loads(lm_metrics.read_text()) if lm_metrics.exists() else None
    lm_test = lm_run["test"]["auc"] if lm_run is not None else None
    ceiling_ok, ceiling_why = same_inputs(bench)
    baselines, assistant = list(args.baselines), None
    if TAKD in baselines:
        if lm_run is None:
            print(f"{TAKD}: no LM reference in {lm_metrics.parent}, so no teacher assistant: not screened", flush=True)
            baselines.remove(TAKD)
        else:
            assistant = bench.train_assistant(lm_metrics.parent)

    # 2. no-KD, before and after the student read every input
    no_kd = [bench.distill("no_kd", "no_kd", s) for s in args.seeds]
    no_kd_basic = [bench.distill("no_kd_basic_inputs", "no_kd", s, BASIC_INPUTS) for s in args.seeds]

    # 3. screen on validation, then every seed for the shipped method and the best baseline
    screen = {m: bench.distill(m, m, args.screen_seed) for m in baselines}
    screen["diverse_distill_no_transfer"] = bench.distill("diverse_distill_no_transfer", SHIPPED, args.screen_seed, ["committee.transfer=false"])
    best_baseline = max(baselines, key=lambda m: screen[m]["val"]["auc"])
    methods: dict[str, list[dict[str, Any]]] = {SHIPPED: [bench.distill(SHIPPED, SHIPPED, s) for s in args.seeds],
                                                best_baseline: [bench.distill(best_baseline, best_baseline, s) for s in args.seeds]}
    for m, r in screen.items():
        methods.setdefault(m, [r])

    base = summary(no_kd)
    references = {"best_teacher": best_teacher, "best_teacher_test": refs[best_teacher]["test_mean"], "lm_test": lm_test,
                  "ceiling_test": refs[best_teacher]["test_mean"] if ceiling_ok else None, "ceiling_why": ceiling_why,
                  "teachers": {n: {k: r[k] for k in ("test_mean", "test_std", "val_mean", "test_per_seed")} for n, r in refs.items()}}
    if assistant is not None:
        references["ta_assistant"] = {"test": assistant["test"]["auc"], "val": assistant["val"]["auc"], "seed": args.reference_seeds[0]}
    if lm_test is None:
        references["lm_why"] = "no LM teacher was trained for this run (OUT/refs/lm_teacher/metrics.json)"
    else:  # which LM recipe the reference is (the head on the frozen encoder, or fine-tuned layers)
        lm_params = load_config(lm_metrics.parent / "config.yaml").model.params
        references["lm_is"] = (f"lm_teacher (MiniLM), finetune: {lm_params.get('finetune')}, trained on the labeled rows "
                               f"({lm_metrics.parent}); seed {lm_run.get('seed', 0)}")
    out_methods = method_entries(bench, methods, base, references, lm_test, best_baseline, args.seeds)
    rec = {
        "shipped": SHIPPED, "metric": "test AUC (ML-100K spec, temporal 80/10/10)", "seeds": args.seeds, "screen_seed": args.screen_seed,
        "no_kd": {k: base[k] for k in ("test_mean", "test_std", "val_mean", "test_per_seed", "epochs_run", "best_epoch", "student_params")},
        "no_kd_basic_inputs": {k: summary(no_kd_basic)[k] for k in ("test_mean", "test_std", "val_mean", "test_per_seed", "student_params")},
        "references": references, "best_baseline": best_baseline,
        "screen_val": {m: r["val"]["auc"] for m, r in screen.items()},
        "methods": out_methods,
        "command": "python benchmarks/gap.py " + shlex.join(sys.argv[1:]),
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "gap.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    rec["provenance"] = provenance(sorted(m.parent for m in Path(args.out).rglob("metrics.json")))
    payload["rec"] = rec
    path.write_text(json.dumps(payload, indent=2))
    table = markdown(rec)
    (results / "gap_rec.md").write_text(table)
    plot_val_curves({"no_kd": [r["history"] for r in no_kd], **{m: [r["history"] for r in runs] for m, runs in methods.items() if len(runs) > 1}},
                    "val_auc", results / "gap_rec_val_curves.png", "MovieLens-100K: validation AUC per epoch (mean over seeds)")
    print("\n" + table)
    return 0


def method_entries(bench: Any, methods: dict[str, list[dict[str, Any]]], base: dict[str, Any], references: dict[str, Any],
                   lm_test: Optional[float], best_baseline: str, seeds: list[int], metric: str = "auc") -> dict[str, Any]:
    """gap.json's per-method entries: seed statistics, the three gaps, paired test-row intervals."""
    out = {}
    for m, runs in methods.items():
        s = summary(runs, metric)
        entry = {k: s[k] for k in ("test_mean", "test_std", "val_mean", "test_per_seed", "epochs_run", "best_epoch", "step_ms",
                                   "epoch_seconds", "transfer_rows_per_labeled_row")}
        entry["seeds"] = [r["seed"] for r in runs]
        for key, ref, label in (("gap_vs_best_teacher", references["best_teacher_test"], "best teacher"), ("gap_vs_lm", lm_test, "LM / foundation teacher"),
                                ("gap_vs_ceiling", references["ceiling_test"], "same-inputs ceiling")):
            entry[key], why = gap(s["test_mean"], base["test_mean"], base["test_std"], ref, label)
            if why:
                entry[f"{key}_why"] = why
        if len(runs) == len(seeds):
            entry["vs_no_kd_ci_rows"] = bench.ci_rows(m, "no_kd", seeds)
            if m != best_baseline:
                entry["vs_best_baseline_ci_rows"] = bench.ci_rows(m, best_baseline, seeds)
        out[m] = entry
    return out


def _pct(x: Optional[float]) -> str:
    return "null" if x is None else f"{100 * x:.0f}%"


def markdown(rec: dict[str, Any]) -> str:
    r = rec["references"]
    lines = [
        f"No-KD student: test AUC {rec['no_kd']['test_mean']:.4f} ± {rec['no_kd']['test_std']:.4f} ({rec['no_kd']['student_params']:,} parameters); "
        f"before it read every input: {rec['no_kd_basic_inputs']['test_mean']:.4f} ± {rec['no_kd_basic_inputs']['test_std']:.4f}.",
        f"Best teacher (validation): {r['best_teacher']} {r['best_teacher_test']:.4f}; LM {r['lm_test'] if r['lm_test'] is not None else 'not run'}; "
        f"same-inputs ceiling {r['ceiling_test'] if r['ceiling_test'] is not None else 'null'}.",
        "",
        "| method | seeds | test AUC | gap vs best teacher | gap vs ceiling | vs no-KD, test rows 95% | vs best baseline, test rows 95% | epochs (best) | transfer / labeled | ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, e in rec["methods"].items():
        ci = lambda k: "" if k not in e else f"[{e[k][0]:+.4f}, {e[k][1]:+.4f}]"  # noqa: E731
        lines.append(f"| {m}{' (shipped)' if m == rec['shipped'] else ''}{' (best baseline)' if m == rec['best_baseline'] else ''} | {len(e['seeds'])} | "
                     f"{e['test_mean']:.4f} ± {e['test_std']:.4f} | {_pct(e['gap_vs_best_teacher'])} | {_pct(e['gap_vs_ceiling'])} | {ci('vs_no_kd_ci_rows')} | "
                     f"{ci('vs_best_baseline_ci_rows')} | {max(e['epochs_run'])} ({max(e['best_epoch'])}) | {e['transfer_rows_per_labeled_row']:.2f} | "
                     f"{'' if e['step_ms'] is None else format(e['step_ms'], '.1f')} |")
    return "\n".join(lines) + f"\n\n{rec['command']}\n"


if __name__ == "__main__":
    raise SystemExit(main())
