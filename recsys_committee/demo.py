"""``recsys-committee demo``: the end-to-end run behind ``make demo``.

Trains the student and the domain experts on MovieLens-100K (temporal split), then, when the
committee stage is available, distils the committee into the student, and prints one table.
Why it trains rather than downloads teachers: nothing but package registries is reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys_committee.train.config import load_config
from recsys_committee.rec_domain import load_data, run_distill, run_train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "rec"
TRAIN_STAGES = ["student", "expert_dlrm", "expert_din_dcn"]
DISTILL_STAGES = ["no_kd", "diverse_distill_dense", "diverse_distill"]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'model':<34} {'params':>10} {'test AUC':>9} {'logloss':>8} {'GAUC':>7} {'cold AUC':>9} {'warm AUC':>9} {'teacher fwd':>12}"
    lines = [header, "-" * len(header)]
    for r in rows:
        t = r["test"]
        lines.append(
            f"{r['name']:<34} {r['params']:>10,} {t['auc']:>9.4f} {t['logloss']:>8.4f} {t.get('gauc', float('nan')):>7.4f} "
            f"{t.get('cold', {}).get('auc', float('nan')):>9.4f} {t.get('warm', {}).get('auc', float('nan')):>9.4f} {r.get('forwards', ''):>12}"
        )
    return "\n".join(lines)


def run_demo(out: Path, seed: int = 0, overrides: list[str] = ()) -> list[dict[str, Any]]:
    rows = []
    data = None
    for name in TRAIN_STAGES:
        cfg = load_config(CONFIG_DIR / f"{name}.yaml", [f"seed={seed}", *overrides])
        data = data or load_data(cfg.data)
        metrics = run_train(cfg, out / name, data=data, overwrite=True)  # `make demo` again replaces its runs
        rows.append({"name": name, "params": metrics["params"], "test": metrics["test"]})
    for name in DISTILL_STAGES:
        cfg = load_config(CONFIG_DIR / f"{name}.yaml", [f"seed={seed}", f"teacher_dir={out}", *overrides])
        metrics = run_distill(cfg, out / name, data=data, overwrite=True)
        f = metrics["teacher_forwards"]
        forwards = f"{100 * (1 - f['run'] / f['dense']):.0f}% skipped" if f["dense"] else "-"
        rows.append({"name": f"student <- {name}", "params": metrics["student_params"], "test": metrics["test"], "forwards": forwards})
    print("\nMovieLens-100K, global temporal split 80/10/10, label rating >= 4, best-validation epoch.")
    print("Rows 1-3 train alone; 'student <- X' distils the frozen experts into the same student with method X:")
    print(format_table(rows))
    print(f"\n(runs, metrics.json and learning curves under {out}/)")
    return rows
