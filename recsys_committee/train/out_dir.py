"""A run's output folder: refused when it holds anything, unless ``--overwrite``.

Why: ``train``/``distill`` into a folder with an earlier run would mix the two (an old
metrics.json next to a new config.yaml; a Ray Train run even resumes the old run's checkpoint
from ``OUT/ray``). So a non-empty OUT is refused before anything is read or written, and with
``--overwrite`` the previous run's files (only the names a run writes, listed here) are removed
once the new run's inputs validated, just before its config.yaml is written: a run that fails
on its data or teachers leaves the old results as they were.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from recsys_committee.errors import UserError

MODEL_FILE = "model.safetensors"
STUDENT_FILE = "student.safetensors"
# Everything a train/distill run writes into OUT (model files: + ".tmp" while written, the
# "<stem>_dcp" shards of a sharded export); model.pt / student.pt are the files of older versions.
RUN_FILES = ("config.yaml", "metrics.json", "curve.png", "checkpoints", "ray", "model.pt", "student.pt", "data_spec.json", "features.json")


class OutputExistsError(UserError):
    """OUT already holds files and ``--overwrite`` was not given."""


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an OUT that is a file, or a folder with anything in it unless ``overwrite``.
    Reads only: nothing in OUT is touched."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file, not a folder")
    if overwrite or not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
        raise OutputExistsError(f"--out {out} is not empty ({shown}); choose a new folder or pass --overwrite to replace that run")


def run_files(model_files: Iterable[str] = (MODEL_FILE, STUDENT_FILE)) -> list[str]:
    names = list(RUN_FILES)
    for name in model_files:
        names += [name, name + ".tmp", Path(name).stem + "_dcp"]
    return names


def clear_run(out: Path, model_files: Iterable[str] = (MODEL_FILE, STUDENT_FILE)) -> list[str]:
    """Remove the previous run's files from OUT (only the names a run writes; anything else
    stays). Returns the names removed."""
    removed = []
    for name in run_files(model_files):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed
