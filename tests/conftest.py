"""Shared fixtures: the tiny hand-made MovieLens fixture and (when fetched) the real ML-100K."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL_DATA = ROOT / "data" / "ml-100k"


@pytest.fixture
def one_error(capsys):
    """``one_error(argv, *needles)``: the CLI run with ``argv`` exits 2 with exactly one
    ``error:`` line, no traceback, naming every needle (the project's bad-input contract)."""
    from recsys_committee.cli import main as cli_main

    def check(argv: list[str], *needles: str) -> None:
        capsys.readouterr()
        code = cli_main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])

    return check


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A writable copy of the tiny fixture (tests corrupt it)."""
    target = tmp_path / "ml-tiny"
    shutil.copytree(FIXTURES / "ml-tiny", target)
    return target


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA / "ml-100k.inter").exists():
        pytest.skip("real MovieLens-100K not fetched: run `make data` (make test does it)")
    return REAL_DATA


@pytest.fixture(scope="session")
def ml100k(real_data_dir: Path):
    from recsys_committee.data.logs.movielens import load_movielens

    return load_movielens(real_data_dir)


@pytest.fixture(scope="session")
def ml_slice(real_data_dir: Path):
    """The first 20,000 rows in time: a real-data slice small enough for CPU tests."""
    from recsys_committee.data.logs.movielens import load_movielens

    return load_movielens(real_data_dir, max_rows=20_000)
