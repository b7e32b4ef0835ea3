"""Shared fixtures: the tiny hand-made MovieLens fixture and (when fetched) the real ML-100K,
Fashion-MNIST and the MobileNetV2 ImageNet weights. A fixture of fetched data skips when it is
absent, and fails under ``make test`` (``DD_REQUIRE_DATA=1``): see ``needs_data``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from local_ray_env import RAY_TEST_ENV
from needs_data import require_files

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL_DATA = ROOT / "data" / "ml-100k"
DATA_ROOT = ROOT / "data"
# the four IDX files torchvision's FashionMNIST reads (download=False)
FASHION_FILES = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")


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
    """The fetched MovieLens-100K (the three files configs/data/ml-100k.yaml reads)."""
    require_files("real MovieLens-100K", *(REAL_DATA / f"ml-100k.{ext}" for ext in ("inter", "user", "item")))
    return REAL_DATA


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    """The data folder holding the fetched Fashion-MNIST (FashionMNIST/raw/*-ubyte)."""
    raw = DATA_ROOT / "FashionMNIST" / "raw"
    require_files("Fashion-MNIST", *(raw / f"{name}-ubyte" for name in FASHION_FILES))
    return DATA_ROOT


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    """The packaged MobileNetV2 ImageNet weights (the foundation model starts from them)."""
    from vision_committee.models import MOBILENET_WEIGHTS

    require_files("MobileNetV2 ImageNet weights", ROOT / MOBILENET_WEIGHTS)
    return ROOT / MOBILENET_WEIGHTS


@pytest.fixture(scope="session")
def ml100k(real_data_dir: Path):
    from recsys_committee.data.logs.movielens import load_movielens

    return load_movielens(real_data_dir)


@pytest.fixture(scope="session")
def ml_slice(real_data_dir: Path):
    """The first 20,000 rows in time: a real-data slice small enough for CPU tests."""
    from recsys_committee.data.logs.movielens import load_movielens

    return load_movielens(real_data_dir, max_rows=20_000)


@pytest.fixture(scope="session")
def small_experts(ml_slice, tmp_path_factory) -> Path:
    """A teacher folder (``teacher_dir``) of the committee's experts, DLRM and two DIN+DCN, each trained for
    8 steps of 256 rows on ``ml_slice``: the committee the distillation tests (in-process, gloo
    ranks, Ray Train) distil from. Trained once per session: every test only reads it."""
    from recsys_committee.rec_domain import run_train
    from recsys_committee.train.config import load_config

    out = tmp_path_factory.mktemp("experts")
    members = (("expert_dlrm", "expert_dlrm", "model.params.top=[64,32]", 0), ("expert_din_dcn", "expert_din_dcn", "model.params.hidden=[64,32]", 0),
               ("expert_din_dcn_2", "expert_din_dcn", "model.params.hidden=[64,32]", 1))
    for folder, config, params, seed in members:
        overrides = ["train.progress=false", "train.batch_size=256", "train.max_steps_per_epoch=8", "train.epochs=1", params, f"seed={seed}"]
        run_train(load_config(ROOT / f"configs/rec/{config}.yaml", overrides), out / folder, data=ml_slice)
    return out


# ----------------------------------------------------------------------------- one local Ray
@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance on 127.0.0.1 for every test that asks for it (started once: a Ray
    start costs seconds of CPU, and its first Ray Train run also starts the cluster-wide helper
    actors later runs reuse). The tests using it run last (``pytest_collection_modifyitems``), so
    it is started once, and no other test runs beside its idle processes. The dashboard stays on:
    Ray Train's placement-group cleaner polls the State API it serves."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in RAY_TEST_ENV.items():
            mp.setenv(k, v)
        # the cluster's processes find this venv's console scripts, as a user's cluster finds the
        # installed package's (`make test` does not activate the venv; `ray job submit` runs
        # `recsys-committee` there)
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        ray.init(
            num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
            object_store_memory=256 * 1024**2, log_to_driver=False, runtime_env={"env_vars": RAY_TEST_ENV},
        )
        try:
            yield ray
        finally:
            ray.shutdown()


def pytest_collection_modifyitems(session, config, items):
    """Tests on the shared local Ray go last, in their collected order (see ``local_ray``)."""
    on_ray = [item for item in items if "local_ray" in getattr(item, "fixturenames", ())]
    if on_ray:
        items[:] = [item for item in items if "local_ray" not in getattr(item, "fixturenames", ())] + on_ray
