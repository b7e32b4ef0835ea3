"""A trained model loaded for a run (a teacher, a model scored) must have been trained on data of
the run's layout: its vocabulary sizes, features, tables and dense inputs. Otherwise one line
naming the file and the first feature that differs, exit 2 (not an embedding index error)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from recsys_committee.data.logs.movielens import load_movielens
from recsys_committee.rec_domain import REC, check_trained_on, load_trained_model, run_train
from recsys_committee.train.checkpoint import CheckpointError, save_checkpoint
from recsys_committee.train.config import load_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "ml-tiny"
QUICK = ["train.progress=false", "train.batch_size=256", "train.epochs=1", "train.max_steps_per_epoch=2"]
EXPERT = ["model.params.top=[16]", "model.params.embedding_dim=8", "model.params.bottom=[16]"]


def _bigger_copy(target: Path) -> Path:
    """The tiny fixture with two more users and two more items (and rows using them)."""
    shutil.copytree(FIXTURE, target)
    with open(target / "ml-tiny.user", "a") as fh:
        fh.write("4\t30\tF\twriter\t10001\n5\t41\tM\tartist\t10002\n")
    with open(target / "ml-tiny.item", "a") as fh:
        fh.write("5\tHeat\t1995\tAction\n6\tCasino\t1995\tDrama\n")
    with open(target / "ml-tiny.inter", "a") as fh:
        fh.write("4\t5\t4\t110\n5\t6\t3\t130\n4\t6\t5\t210\n5\t5\t2\t350\n")
    return target


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """The tiny data, a bigger copy, and a DLRM expert trained (1 epoch) on the tiny data."""
    root = tmp_path_factory.mktemp("teacher_data")
    small = root / "small"
    shutil.copytree(FIXTURE, small)
    big = _bigger_copy(root / "big")
    cfg = load_config(ROOT / "configs/rec/expert_dlrm.yaml", [f"data.root={small}", "data.name=ml-tiny", *QUICK, *EXPERT])
    run_train(cfg, root / "teachers" / "expert_dlrm")
    return {"small": small, "big": big, "teacher": root / "teachers" / "expert_dlrm" / "model.safetensors"}


def _distill_argv(data_root: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    teachers = json.dumps([{"name": "dlrm", "kind": "rec_model", "checkpoint": str(teacher), "tap": "top"}])
    return ["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--out", str(out), f"data.root={data_root}", "data.name=ml-tiny",
            *QUICK, "model.params.hidden=[16]", f"teachers={teachers}", *extra]


def test_a_teacher_of_other_data_is_one_line_naming_file_and_feature(dirs, tmp_path, one_error):
    """The teacher's user table has 4 rows, the run's ids go to 5: before, an embedding
    'index out of range' traceback (exit 1). A previous run in OUT survives the refusal."""
    out = tmp_path / "d"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    one_error([*_distill_argv(dirs["big"], dirs["teacher"], out), "--overwrite"],
              "teacher 'dlrm'", str(dirs["teacher"]), "other data", "feature 'user_id' has 4 ids in that file, 6 in this run's data")
    assert (out / "metrics.json").read_text() == "{}"


def test_a_model_scored_with_other_data_facts_is_one_line(dirs, tmp_path, one_error):
    """``score``: a model file from a folder of the bigger data put next to the tiny data's facts."""
    big = load_movielens(dirs["big"], "ml-tiny")
    cfg = load_config(ROOT / "configs/rec/expert_dlrm.yaml", EXPERT)
    model_dir = tmp_path / "model"
    shutil.copytree(dirs["teacher"].parent, model_dir)
    save_checkpoint(model_dir / "model.safetensors", REC.model_payload(cfg, big, REC.build_model(cfg, big).state_dict(), 0, {"auc": 0.5}, None))
    one_error(["score", "--model", str(model_dir), "--split", "test", "--out", str(tmp_path / "preds.parquet")],
              str(model_dir / "model.safetensors"), "feature 'user_id' has 6 ids in that file, 4 in this run's data")
    assert not (tmp_path / "preds.parquet").exists()


def test_a_matching_teacher_still_loads(dirs):
    from recsys_committee.committee.teacher import TeacherContext
    from recsys_committee.train.runner import build_teachers

    small = load_movielens(dirs["small"], "ml-tiny")
    [teacher] = build_teachers([{"name": "dlrm", "kind": "rec_model", "checkpoint": str(dirs["teacher"]), "tap": "top"}], context=TeacherContext(data=small))
    assert teacher.name == "dlrm"
    assert load_trained_model(dirs["teacher"], small) is not None


@pytest.fixture
def saved_and_table(tiny_dir):
    """A model file's payload (no weights needed) written for the tiny data, and that data's table."""
    data = load_movielens(tiny_dir, "ml-tiny")
    cfg = load_config(ROOT / "configs/rec/expert_dlrm.yaml", EXPERT)
    return copy.deepcopy(REC.model_payload(cfg, data, {}, 0, {"auc": 0.5}, None)), data.table  # a copy, as a file gives: no dict shared with the table


def _refused(saved: dict, table, *needles: str) -> None:
    with pytest.raises(CheckpointError) as err:
        check_trained_on(saved, table, "teacher file runs/x/model.safetensors")
    message = str(err.value)
    assert message.startswith("teacher file runs/x/model.safetensors was trained on other data: "), message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("delta", [1, -1])
def test_vocabulary_sizes_must_be_equal_both_ways(saved_and_table, delta):
    saved, table = saved_and_table
    check_trained_on(saved, table, "x")  # the data it was written for passes
    n = table.cardinalities["item_id"]
    saved["cardinalities"]["item_id"] = n + delta
    _refused(saved, table, f"feature 'item_id' has {n + delta} ids in that file, {n} in this run's data")


def test_a_feature_missing_on_either_side_is_named(saved_and_table):
    saved, table = saved_and_table
    lacks = copy.deepcopy(saved)
    del lacks["cardinalities"]["genres"]
    _refused(lacks, table, "feature 'genres' is in this run's data, not in that file")
    extra = copy.deepcopy(saved)
    extra["cardinalities"]["history_clicked"] = 7
    _refused(extra, table, "feature 'history_clicked' is in that file, not in this run's data")


def test_tables_roles_and_dense_inputs_are_compared(saved_and_table):
    saved, table = saved_and_table
    own_table = copy.deepcopy(saved)
    del own_table["layout"]["tables"]["history"]
    _refused(own_table, table, "feature 'history' uses table 't_history' in that file, 't_item' in this run's data")
    not_scalar = copy.deepcopy(saved)
    not_scalar["layout"]["scalar"].remove("gender")
    _refused(not_scalar, table, "feature 'gender' is ['student'] in that file's layout, ['student', 'scalar'] in this run's")
    renamed = copy.deepcopy(saved)
    renamed["dense_names"][1] = "other"
    _refused(renamed, table, f"dense feature #1 is 'other' in that file, '{table.dense_names[1]}' in this run's data")
    # a file written before the layout and the dense names were stored: compared on what it has
    old = {k: v for k, v in saved.items() if k not in ("layout", "dense_names")}
    check_trained_on(old, table, "x")
    old["num_dense"] += 1
    _refused(old, table, f"{len(table.dense_names) + 1} dense features in that file, {len(table.dense_names)} in this run's data")
