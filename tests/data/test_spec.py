"""The data spec: MovieLens through configs/data/ml-100k.yaml gives the built-in reader's
features, a click log of another shape trains and distils through a spec alone, and every bad
input is one line naming the file, column or key (exit code 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from recsys_committee.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # movielens_reference
QUICK = ["train.progress=false", "train.batch_size=128", "train.epochs=1", "train.max_steps_per_epoch=4"]


def test_movielens_spec_reproduces_the_builtin_features(real_data_dir):
    from movielens_reference import build_features, read_movielens  # the built-in reader the spec replaced

    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.spec import load_spec

    new = load_spec_data(load_spec(ROOT / "configs/data/ml-100k.yaml", {"transfer": None}))  # the labeled rows alone
    old = SimpleNamespace(table=build_features(read_movielens(real_data_dir)))
    assert new.table.num_rows == old.table.num_rows
    for name in ("example_id", "user_id", "item_id", "age_bucket", "gender", "occupation", "year_bucket", "label", *old.table.dense_names):
        assert np.array_equal(new.table.frame[name].to_numpy(), old.table.frame[name].to_numpy()), name
    for name, (values, offsets) in old.table.jagged.items():
        assert torch.equal(new.table.jagged[name][0], values) and torch.equal(new.table.jagged[name][1], offsets), name
    # zip prefixes: the spec builds vocabularies on the train split only (the built-in reader used
    # every user); the same prefixes get one id each, and a prefix never seen in train is id 0
    pairs = pl.DataFrame({"new": new.table.frame["zip_prefix"], "old": old.table.frame["zip_prefix"]}).unique()
    seen = pairs.filter(pl.col("new") > 0)
    assert seen["new"].n_unique() == seen.height == seen["old"].n_unique()
    assert new.table.layout.student == old.table.layout.student


def click_log(root: Path, rows: int = 3000, seed: int = 0) -> Path:
    """A click log unlike MovieLens: string ids, other names, a 0/1 label, no rating, no user
    table, a list column and a dense column in the item table."""
    rng = np.random.default_rng(seed)
    users = np.array([f"u{i:03d}" for i in range(150)])
    items = np.array([f"sku-{i}" for i in range(80)])
    taste = rng.normal(size=(150, 3))
    quality = rng.normal(size=(80, 3))
    u, i = rng.integers(0, 150, rows), rng.integers(0, 80, rows)
    clicked = ((taste[u] * quality[i]).sum(1) + rng.normal(0, 0.5, rows) > 0).astype(np.int64)
    pl.DataFrame({"visitor": users[u], "product": items[i], "ts": np.sort(rng.integers(1_600_000_000, 1_600_500_000, rows)),
                  "clicked": clicked, "device": rng.choice(["ios", "android", "web"], rows)}).write_parquet(root / "clicks.parquet")
    tags = ["|".join(rng.choice(["red", "blue", "sale", "new", "eco"], rng.integers(1, 3), replace=False)) for _ in items]
    pl.DataFrame({"product": items, "tags": tags, "price": rng.uniform(5, 50, 80).round(2)}).write_csv(root / "products.csv")
    spec = root / "clicks.yaml"
    spec.write_text(f"""
source: {{interactions: {root}/clicks.parquet, items: {root}/products.csv}}
columns: {{user: visitor, item: product, time: ts, label: clicked}}
features:
  categorical: [device]
  multi_valued: {{tags: "|"}}
  dense: [price]
  derived: {{history: {{length: 10}}, history_long: {{length: 20}}, user_stats: {{}}, item_stats: {{}}}}
split: {{kind: temporal, fractions: [0.8, 0.1, 0.1]}}
""")
    return spec


def test_a_click_log_of_another_shape_trains_and_distils_through_a_spec(tmp_path, capsys):
    spec = click_log(tmp_path)
    small = ["model.params.hidden=[32,16]"]
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(spec), "--out", str(tmp_path / "student"), *QUICK, *small]) == 0
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/expert_din_dcn.yaml"), "--data", str(spec), "--out", str(tmp_path / "experts/expert_din_dcn"),
                     *QUICK, "model.params.hidden=[32,16]"]) == 0
    teachers = json.dumps([{"name": "din_dcn", "kind": "rec_model", "checkpoint": str(tmp_path / "experts/expert_din_dcn/model.safetensors"), "tap": "mlp"}])
    code = cli_main(["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--data", str(spec), "--out", str(tmp_path / "dd"),
                     *QUICK, *small, f"teachers={teachers}", "committee.gate_config.warmup_steps=1"])
    assert code == 0, capsys.readouterr().err
    expert = json.loads((tmp_path / "experts/expert_din_dcn/metrics.json").read_text())
    assert expert["dropped_features"] == {"expert_extra": ["history_liked", "history_disliked"], "sequence": ["history_long_rating"]}  # no rating
    dd = json.loads((tmp_path / "dd/metrics.json").read_text())
    assert dd["teacher_forwards"]["run"] > 0 and 0.0 <= dd["test"]["auc"] <= 1.0
    # the distilled student scores RAW rows on its own: the test rows (their last 10% in time) with
    # the earlier rows as their history reproduce the run's test AUC
    rows = pl.read_parquet(tmp_path / "clicks.parquet").with_row_index("src").sort(["ts", "visitor", "product", "src"])
    n_test = rows.height - int(round(rows.height * 0.8)) - int(round(rows.height * 0.1))
    rows.head(rows.height - n_test).drop("src").write_parquet(tmp_path / "earlier.parquet")
    rows.tail(n_test).drop("src").write_parquet(tmp_path / "test_rows.parquet")
    capsys.readouterr()
    assert cli_main(["score", "--model", str(tmp_path / "dd"), "--input", str(tmp_path / "test_rows.parquet"), "--history", str(tmp_path / "earlier.parquet"),
                     "--out", str(tmp_path / "preds.parquet")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == n_test and report["metrics"]["auc"] == pytest.approx(dd["test"]["auc"], abs=1e-6)
    assert pl.read_parquet(tmp_path / "preds.parquet").columns[-1] == "score"


def _bad(tmp_path: Path, capsys, spec_text: str, *needles: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(spec_text)
    out = tmp_path / "out"
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(spec), "--out", str(out), *QUICK])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def log_dir(tmp_path):
    click_log(tmp_path)
    return tmp_path


BASE = "source: {{interactions: {d}/clicks.parquet{side}}}\ncolumns: {{user: visitor, item: product, time: {time}, label: {label}}}\n{extra}"


def test_a_spec_column_missing_from_the_file(log_dir, capsys):
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="click", extra=""), "no column 'click'", "clicks.parquet", "columns.label")


def test_a_label_that_is_not_0_1(log_dir, capsys):
    pl.read_parquet(log_dir / "clicks.parquet").with_columns(pl.col("clicked") * 3).write_parquet(log_dir / "clicks.parquet")
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="clicked", extra=""), "must be 0/1", "'clicked'")


def test_a_non_numeric_dense_column(log_dir, capsys):
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="clicked", extra="features: {dense: [device]}"), "dense column 'device'", "numeric")


def test_a_time_column_with_nulls(log_dir, capsys):
    frame = pl.read_parquet(log_dir / "clicks.parquet")
    frame.with_columns(pl.when(pl.arange(0, frame.height) == 5).then(None).otherwise(pl.col("ts")).alias("ts")).write_parquet(log_dir / "clicks.parquet")
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="clicked", extra=""), "'ts'", "null")


def test_a_side_table_with_a_duplicated_key(log_dir, capsys):
    items = pl.read_csv(log_dir / "products.csv")
    pl.concat([items, items.head(2)]).write_csv(log_dir / "products.csv")
    _bad(log_dir, capsys, BASE.format(d=log_dir, side=f", items: {log_dir}/products.csv", time="ts", label="clicked", extra=""), "products.csv", "duplicated")


def test_an_empty_split(log_dir, capsys):
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="clicked", extra="split: {fractions: [0.9998, 0.0001, 0.0001]}"), "val split is empty")


def test_a_spec_key_that_does_not_exist(log_dir, capsys):
    _bad(log_dir, capsys, BASE.format(d=log_dir, side="", time="ts", label="clicked", extra="featurs: {dense: [price]}"), "unknown data-spec key 'featurs'", "'features'")


def _split_files(spec_path: Path, out: Path) -> tuple[Path, Path]:
    """The spec's test rows and every earlier row, as raw interaction files (the columns a user has)."""
    from recsys_committee.data.features.featurize import split_rows
    from recsys_committee.data.logs.reader import read_frame, read_rows
    from recsys_committee.data.logs.spec import load_spec

    spec = load_spec(spec_path)
    columns = read_frame(spec.interactions, spec.separator).columns
    rows = read_rows(spec)
    test = split_rows(spec, rows.height).test
    first = int(test.min())
    rows.select(columns)[test.numpy()].write_parquet(out / "test_rows.parquet")
    rows.select(columns).head(first).write_parquet(out / "earlier_rows.parquet")
    return out / "test_rows.parquet", out / "earlier_rows.parquet"


def test_score_reproduces_the_test_auc_from_raw_rows(tmp_path, capsys):
    spec = click_log(tmp_path)
    out = tmp_path / "student"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(spec), "--out", str(out), *QUICK, "model.params.hidden=[32,16]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli_main(["score", "--model", str(out), "--split", "test", "--out", str(tmp_path / "split.parquet")]) == 0
    by_split = json.loads(capsys.readouterr().out)
    assert by_split["metrics"]["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)
    test_rows, earlier = _split_files(spec, tmp_path)
    assert cli_main(["score", "--model", str(out), "--input", str(test_rows), "--history", str(earlier), "--out", str(tmp_path / "raw.parquet")]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["metrics"]["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)  # raw rows featurised as in training
    preds = pl.read_parquet(tmp_path / "raw.parquet")
    assert preds.height == raw["rows"] and {"visitor", "product", "score"} <= set(preds.columns)
    assert set(raw["unseen_ids"]) == {"user_id", "item_id", "device"} and raw["unseen_ids"]["user_id"] >= 0
    # without the earlier rows the histories are shorter: a different (valid) score, not an error
    assert cli_main(["score", "--model", str(out), "--input", str(test_rows), "--out", str(tmp_path / "alone.parquet")]) == 0
    assert not pl.read_parquet(tmp_path / "alone.parquet")["score"].equals(preds["score"])


def test_lm_texts_render_from_the_spec_templates(tmp_path):
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.spec import load_spec
    from recsys_committee.models.lm.templates import TemplateError, render_template_texts

    spec_path = click_log(tmp_path)
    spec_path.write_text(spec_path.read_text() + 'text: {item: "{product} ({tags})", user: "a {device} visitor"}\n')
    data = load_spec_data(load_spec(spec_path))
    texts = render_template_texts(data.table, data.raw.inter, data.spec.text, history_n=2)
    assert len(texts) == data.table.num_rows
    rows = data.raw.inter
    first = texts[0]
    assert first == f"item: {rows['product'][0]} ({rows['tags'][0]}). user: a {rows['device'][0]} visitor. recent: none."
    # a later row lists its user's most recent past items, most recent first
    values, offsets = data.table.jagged["history"]
    row = next(r for r in range(data.table.num_rows) if offsets[r + 1] - offsets[r] >= 2)
    assert " recent: " in texts[row] and texts[row].count("; ") == 1
    with pytest.raises(TemplateError, match="'price_eur'"):
        render_template_texts(data.table, data.raw.inter, {"item": "{price_eur}"}, history_n=0)


def test_an_lm_teacher_on_a_spec_without_text_is_one_clear_error(tmp_path, capsys):
    spec = click_log(tmp_path)
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/lm_teacher.yaml"), "--data", str(spec), "--out", str(tmp_path / "lm"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "has no text: block" in err and "Traceback" not in err, err
