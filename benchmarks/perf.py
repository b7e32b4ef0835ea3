"""The cost of distillation, measured side by side in one run (CPU), recommendation or vision.

Reproduce (rec teachers in runs/teachers, from benchmarks/train_models.py; vision teachers in
runs/vision_teachers, from benchmarks/reproduce_vision.py):
    python benchmarks/perf.py --steps 40 --batch-size 512
    python benchmarks/perf.py --domain vision --steps 30 --batch-size 128 --threads 2
Times, on the same batches and the same thread count, interleaved batch by batch, medians over
``--repeats`` whole measurements (3):
  * the student's own training step (forward + backward + optimiser);
  * each frozen teacher's forward on a full batch;
  * the DiverseDistill step (student + gate + routed teachers + QA + losses + backward), dense
    and gated (past the warm-up), and how many teacher-sample forwards the gated one ran;
and prints the overhead ratio  distill step / (student step + the teacher forwards actually
run)  (METHOD target <= 1.15x), gated vs dense step time, and the peak resident memory.
The LM cache-vs-live ratio and the 1-vs-2-worker ratio come from benchmarks/lm_cache_vs_live.py
and benchmarks/cluster_scaling.py (they need their own data); their last results are read back
from benchmarks/results/ if present. Writes benchmarks/results/perf.json (perf_vision.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recsys_committee.committee import Committee  # noqa: E402
from recsys_committee.heap import hold_freed_heap  # noqa: E402
from recsys_committee.models import build_model  # noqa: E402
from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.train.optimizers import build_optimizers  # noqa: E402
from recsys_committee.train.runner import TeacherContext, build_teachers, committee_config  # noqa: E402
from recsys_committee.rec_domain import REC, load_data  # noqa: E402
from provenance import provenance  # noqa: E402


def interleaved(steppers: dict, batches: list, clock: "TeacherRunClock", warmup: int = 2) -> dict[str, tuple[float, float]]:
    """{name: (median seconds of one call, median teacher seconds inside it)}.

    Why interleaved: every batch is run by every stepper in turn (student, each teacher, dense,
    gated), so a slow minute on a shared 2-core machine slows all of them alike instead of
    landing on whichever was being timed then; and the median, so one descheduled step does not
    move a ratio. Measured back to back instead, the same ratio moved by 15% between runs."""
    for i in range(warmup):
        for fn in steppers.values():
            fn(fresh(batches[i]), i)
    steps: dict[str, list[float]] = {n: [] for n in steppers}
    inside: dict[str, list[float]] = {n: [] for n in steppers}
    for i in range(warmup, len(batches)):
        for name, fn in steppers.items():
            batch = fresh(batches[i])
            before = clock.seconds
            start = time.perf_counter()
            fn(batch, i)
            steps[name].append(time.perf_counter() - start)
            inside[name].append(clock.seconds - before)
    return {n: (statistics.median(steps[n]), statistics.median(inside[n])) for n in steppers}


def fresh(batch):
    """The batch as a training step receives it: a new object, with none of the per-batch work
    (KJTs, jagged offsets) that an earlier stepper's call cached on it. Without this, whichever
    stepper ran a batch first paid for its KJT and the later ones (the committee steps) got it free."""
    if dataclasses.is_dataclass(batch) and hasattr(batch, "_kjt_cache"):
        return dataclasses.replace(batch, _kjt_cache={}, _layout={}, _owner={})
    return batch


class TeacherRunClock:
    """Wall time spent inside ``teacher.run`` while installed: the teacher forwards a committee
    step actually ran, on the sub-batches it actually routed (a forward on 268 rows is not
    268/512 of one on 512: fixed per-call costs do not shrink)."""

    def __init__(self, teachers) -> None:
        self.teachers = list(teachers)
        self.seconds = 0.0

    def __enter__(self) -> "TeacherRunClock":
        for t in self.teachers:
            def run(batch, _run=t.run):
                start = time.perf_counter()
                try:
                    return _run(batch)
                finally:
                    self.seconds += time.perf_counter() - start
            t.run = run  # instance attribute shadows the method until __exit__
        return self

    def __exit__(self, *exc) -> None:
        for t in self.teachers:
            del t.run


def committee_costs(student_factory, student_loss, teachers, configs: dict, batches: list, make_opt, rows_per_batch: int) -> dict:
    """Student step, each teacher's forward, and the committee step for each config, timed on
    the same batches; the overhead ratio uses the teacher forwards the committee actually ran."""
    student = student_factory(None)
    opt = make_opt(student)

    def student_step(batch, _):
        loss = student_loss(student(batch).logits, batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steppers = {"student": student_step}
    for t in teachers:
        steppers[f"teacher:{t.name}"] = lambda b, _, t=t: t.run(b)
    committees = {}
    for label, (cfg, step_offset) in configs.items():
        torch.manual_seed(0)
        committee = Committee.build(student_factory(cfg), teachers, batches[0], committee_config(cfg))
        c_opt = make_opt(committee)

        def committee_step(batch, i, committee=committee, c_opt=c_opt, offset=step_offset):
            out = committee(batch, offset + i)  # gated: past the dense warm-up
            c_opt.zero_grad(set_to_none=True)
            out.loss.backward()
            c_opt.step()

        committees[label] = committee
        steppers[label] = committee_step
    with TeacherRunClock(teachers) as clock:  # the teachers are shared by both committees
        timings = interleaved(steppers, batches, clock)
    t_student = timings["student"][0]
    t_teacher = {t.name: timings[f"teacher:{t.name}"][0] for t in teachers}
    result = {}
    for label, committee in committees.items():
        t_step, in_step = timings[label]
        f = committee.teacher_forwards()
        per_teacher_run = {n: c / (len(batches) * rows_per_batch) for n, c in f["per_teacher"].items()}
        teacher_cost = sum(t_teacher[n] * share for n, share in per_teacher_run.items())
        result[label] = {
            "step_s": t_step,
            "forwards_run_share": f["run"] / f["dense"],
            # the full-batch forwards scaled by the share of rows each teacher ran on ...
            "teacher_forward_cost_s": teacher_cost,
            "overhead_ratio": t_step / (t_student + teacher_cost),
            # ... and the teacher forwards timed inside the step, on the sub-batches as routed
            "teacher_run_in_step_s": in_step,
            "overhead_ratio_in_step": t_step / (t_student + in_step),
        }
    return {"student_step_s": t_student, "teacher_forward_s": t_teacher, "committee": result}


def median_costs(repeats: list[dict]) -> dict:
    """Each figure's median over the repeats (fresh student and committees each time), and for
    each overhead ratio its per-repeat values: the spread says how far one run can be trusted."""
    def med(get):
        return statistics.median(get(r) for r in repeats)

    first = repeats[0]
    out = {
        "student_step_s": med(lambda r: r["student_step_s"]),
        "teacher_forward_s": {n: med(lambda r, n=n: r["teacher_forward_s"][n]) for n in first["teacher_forward_s"]},
        "committee": {},
    }
    for label, fields in first["committee"].items():
        out["committee"][label] = {k: med(lambda r, k=k: r["committee"][label][k]) for k in fields}
        for ratio in ("overhead_ratio", "overhead_ratio_in_step"):
            out["committee"][label][ratio + "_repeats"] = [r["committee"][label][ratio] for r in repeats]
    return out


def optimizer_maker(domain, optim_cfg):
    """The optimiser a run would build for a module (fused tables + AdamW), as the runner does."""

    def make(module):
        trainable = module.trainable_parameters() if hasattr(module, "trainable_parameters") else [p for p in module.parameters() if p.requires_grad]
        return build_optimizers(trainable, domain.sparse_parameters(module), optim_cfg).optimizer

    return make


def rec_setup(args) -> tuple:
    """MovieLens-100K, the two experts (runs/teachers), DiverseDistill dense and gated."""
    base = load_config(ROOT / "configs/rec/diverse_distill.yaml", [f"teacher_dir={args.teacher_dir}", "train.progress=false", *args.overrides])
    data = load_data(base.data)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    batches = [data.train.batch(order[i * args.batch_size : (i + 1) * args.batch_size]) for i in range(args.steps + 2)]
    teachers = build_teachers(base.teachers, base.teacher_dir, TeacherContext(data, progress=False))
    configs = {label: (load_config(ROOT / "configs/rec" / name, [f"teacher_dir={args.teacher_dir}", *args.overrides]), offset)
               for label, name, offset in (("dense", "diverse_distill_dense.yaml", 0), ("gated", args.gated_config, 10_000))}

    def factory(cfg):
        cfg = cfg or base
        return build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)

    return factory, F.binary_cross_entropy_with_logits, teachers, configs, batches, base


def vision_setup(args) -> tuple:
    """Fashion-MNIST, the foundation model (cached, as in the reproduction) and the two CNN
    experts (live) from runs/vision_teachers, DiverseDistill dense and gated."""
    from vision_committee.domain import VISION, load_vision_data

    base = load_config(ROOT / "configs/vision/diverse_distill.yaml", [f"teacher_dir={args.teacher_dir}", "train.progress=false", *args.overrides])
    data = load_vision_data(base)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    batches = [data.train.batch(order[i * args.batch_size : (i + 1) * args.batch_size]) for i in range(args.steps + 2)]
    teachers = build_teachers(base.teachers, base.teacher_dir, TeacherContext(data, progress=False))
    configs = {label: (load_config(ROOT / "configs/vision" / name, [f"teacher_dir={args.teacher_dir}", *args.overrides]), offset)
               for label, name, offset in (("dense", "diverse_distill_dense.yaml", 0), ("gated", args.gated_config, 10_000))}
    return lambda cfg: VISION.build_model(cfg or base, data), F.cross_entropy, teachers, configs, batches, base


def _vision_domain():
    from vision_committee.domain import VISION

    return VISION


def _spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=["rec", "vision"], default="rec")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--teacher-dir", help="default: runs/teachers (rec), runs/vision_teachers (vision)")
    parser.add_argument("--repeats", type=int, default=3, help="whole measurements, each on fresh models; medians reported")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--gated-config", default="diverse_distill.yaml", help="the gated arm's config (in configs/<domain>/), e.g. diverse_distill_random.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for the two DiverseDistill configs, e.g. committee.answer_hidden=64")
    args = parser.parse_args()
    args.teacher_dir = args.teacher_dir or ("runs/teachers" if args.domain == "rec" else "runs/vision_teachers")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    factory, loss, teachers, configs, batches, base = (rec_setup if args.domain == "rec" else vision_setup)(args)
    optim_cfg = base.optim
    # the heap as a distillation run holds it (train.hold_heap): every stepper here runs with it
    heap_held = hold_freed_heap() if base.train.hold_heap else False
    make_opt = optimizer_maker(REC if args.domain == "rec" else _vision_domain(), optim_cfg)
    n_rows = args.steps * args.batch_size
    repeats = [committee_costs(factory, loss, teachers, configs, batches, make_opt, args.batch_size)
               for _ in tqdm(range(args.repeats), desc="perf repeats", disable=args.repeats == 1)]
    costs = median_costs(repeats)
    t_student, t_teacher, result = costs["student_step_s"], costs["teacher_forward_s"], costs["committee"]

    previous = {}
    for name in ("cluster_scaling.json", "lm_cache_vs_live.json"):
        path = Path(args.results) / name
        if path.is_file():
            previous[name] = json.loads(path.read_text())
    payload = {
        "command": "python benchmarks/perf.py " + " ".join(sys.argv[1:]),
        "domain": args.domain,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "student_step_s": t_student,
        "teacher_forward_s": t_teacher,
        "committee": result,
        "gated_over_dense_step": result["gated"]["step_s"] / result["dense"]["step_s"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rows_timed": n_rows,
        "repeats": args.repeats,
        "optim": dataclasses.asdict(optim_cfg),  # what the steps were timed with (the fused AdamW or the loop)
        "heap_held": heap_held,  # train.hold_heap: freed memory kept for the next step (recsys_committee/heap.py)
        "provenance": provenance(sorted(p for p in Path(args.teacher_dir).iterdir() if (p / "config.yaml").is_file())),  # the runs in --teacher-dir (the teachers among them)
    }
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / ("perf.json" if args.domain == "rec" else "perf_vision.json")).write_text(json.dumps(payload, indent=2))

    print(payload["command"])
    print(f"batch {args.batch_size}, {args.threads} thread(s), {args.steps} steps per stepper, interleaved; "
          f"medians over {args.repeats} repeat(s); freed heap held between steps: {heap_held}")
    print(f"| what | ms/step | ratio |\n|---|---:|---:|")
    print(f"| student step | {1000 * t_student:.1f} | 1.00 |")
    for n, t in t_teacher.items():
        print(f"| teacher {n} forward (full batch) | {1000 * t:.1f} | {t / t_student:.2f} |")
    for label, r in result.items():
        print(f"| DiverseDistill {label} step (teachers run on {100 * r['forwards_run_share']:.0f}% of sample-slots) | {1000 * r['step_s']:.1f} | "
              f"{r['step_s'] / t_student:.2f} |")
    for label, r in result.items():
        print(f"overhead {label}: step / (student step + teacher forwards run) = {1000 * r['step_s']:.1f} / "
              f"({1000 * t_student:.1f} + {1000 * r['teacher_forward_cost_s']:.1f}) -> {r['overhead_ratio']:.2f}x "
              f"(repeats {_spread(r['overhead_ratio_repeats'])}; target <= 1.15x)")
    for label, r in result.items():
        print(f"overhead {label}, teacher forwards timed inside the step (sub-batches as routed): "
              f"{1000 * r['step_s']:.1f} / ({1000 * t_student:.1f} + {1000 * r['teacher_run_in_step_s']:.1f}) "
              f"-> {r['overhead_ratio_in_step']:.2f}x (repeats {_spread(r['overhead_ratio_in_step_repeats'])})")
    print(f"gated / dense step time: {payload['gated_over_dense_step']:.2f}x")
    print(f"peak RSS: {payload['peak_rss_gib']:.2f} GiB")
    if "cluster_scaling.json" in previous:
        print(f"(from {previous['cluster_scaling.json']['command']}) 2 / 1 workers: {previous['cluster_scaling.json']['ratio_2_over_1']:.2f}x samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
