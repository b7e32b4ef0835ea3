"""New users: validation and test AUC of the no-KD student and of the student taught by the
DIN+DCN expert (logit KD) as the student's ``user_dropout`` grows, the expert beside them.

Why: in a temporal split most rows a model is judged on come from users it never trained on
(MovieLens-100K: 85% of validation rows, 86% of test rows), whose id rows never left their random
start. Distillation transfers the teacher's answers on the rows it is taught through whatever the
student fits them with; a student that fits them with the id embeddings of the users it trained
on learns nothing it can use on a new user. ``user_dropout`` hides the id from that share of the
training rows (``recsys_committee/models/student.py``: ``PooledEmbeddings``).

Reproduce (the experts of the batch-size sweep at the shipped batch size, when they are there:
``benchmarks/batch_size.py``; without ``--expert-dir`` they are trained here; ~15 minutes per
spec on 2 cores):
    .venv/bin/python benchmarks/user_dropout.py --values 0.0 0.5 1.0 --seeds 0 1 2 --expert-dir runs/batch_size/ml-100k/bs512
    .venv/bin/python benchmarks/user_dropout.py --data configs/data/ml-100k-interactions.yaml --values 0.0 0.5 1.0 --seeds 0 1 2 --expert-dir runs/batch_size/ml-100k-interactions/bs512
Writes ``benchmarks/results/user_dropout_<spec>.json`` and ``.png`` (``sweep.py`` runs it). The
teacher of the KD run with seed s is the expert of seed s. Choices read validation.
"""

from __future__ import annotations

from sweep import Sweep, main

USER_DROPOUT = Sweep(key="model.params.user_dropout", name="user_dropout", label="ud", values=(0.0, 0.5, 1.0), cast=float,
                     student_only=True, axis="student user_dropout (share of rows without the id)")

if __name__ == "__main__":
    raise SystemExit(main(USER_DROPOUT, __doc__, "user_dropout.py"))
