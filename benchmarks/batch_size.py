"""Steps per epoch: validation and test AUC of the best expert (DIN+DCN), the no-KD student and
the student taught by that expert (logit KD) at several batch sizes, side by side.

Why: every recommendation model here peaks in its first epoch and then overfits (the one-epoch
pattern of ID-embedding CTR models), so a second epoch is no way to teach longer; the number of
updates within that first epoch is. This measures what the shipped batch size (512) leaves on
the table for each model, and whether a teacher trained with more steps gives distillation more
to transfer (the share of the teacher-student gap logit KD recovers at each batch size).

Reproduce (each run through the CLI as a user would, 2 at a time; ~25 minutes per spec on 2 cores):
    .venv/bin/python benchmarks/batch_size.py --values 512 128 64 --seeds 0 1 2
    .venv/bin/python benchmarks/batch_size.py --data configs/data/ml-100k-interactions.yaml --values 512 128 64 --seeds 0 1 2
Runs land in ``--out`` (finished ones are read, not rerun); writes
``benchmarks/results/batch_size_<spec>.json`` and ``batch_size_<spec>.png`` (``sweep.py`` runs
it). The teacher of the KD run with seed s is the expert trained with seed s at the same batch
size. Choices read validation; test is reported beside it.
"""

from __future__ import annotations

from sweep import Sweep, main

BATCH_SIZE = Sweep(key="train.batch_size", name="batch_size", label="bs", values=(512, 128, 64), cast=int, log_x=True,
                   axis="batch size (rows per update)")

if __name__ == "__main__":
    raise SystemExit(main(BATCH_SIZE, __doc__, "batch_size.py"))
