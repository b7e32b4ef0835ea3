"""The out-of-core data plane: ``prepare`` gives the in-memory path's features row by row, resumes
after a crash to the same bytes, and the streamed splits give every rank an equal, disjoint share
in an order that a resumed epoch rebuilds exactly."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from recsys_committee.cli import main as cli_main
from recsys_committee.data.prepared.build import PrepareOptions, prepare
from recsys_committee.data.prepared.stream import open_prepared
from recsys_committee.data.logs.spec import load_spec
from recsys_committee.train.distributed import DistContext

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_spec import QUICK, click_log  # noqa: E402

SMALL_BUCKETS = PrepareOptions(bucket_rows=700, chunk_rows=1000, row_group_rows=128, piece_rows=250)  # ~3 time-ordered pieces a bucket


def _whole_split(split) -> "object":
    batch = split.to_batch(split._read(split.units))
    return batch.subset(torch.argsort(batch.example_ids))


def _assert_same_features(mem, prep, src: torch.Tensor) -> None:
    """Every split: the same rows (in-memory position -> source row = prepared example_id) with
    the same labels, users, sparse ids, jagged lists and normalised dense values."""
    assert prep.cardinalities == mem.cardinalities and prep.table.dense_names == mem.table.dense_names
    assert prep.table.layout == mem.table.layout
    for name in ("train", "val", "test"):
        m, p = mem.dataset(name), prep.dataset(name)
        assert len(m) == len(p), name
        mb = m.batch(torch.arange(len(m)))
        mb = mb.subset(torch.argsort(src[mb.example_ids]))
        pb = _whole_split(p)
        assert torch.equal(src[mb.example_ids], pb.example_ids), name
        assert torch.equal(mb.labels, pb.labels) and torch.equal(mb.users, pb.users), name
        assert sorted(mb.sparse) == sorted(pb.sparse), name
        for k, (values, lengths) in mb.sparse.items():
            assert torch.equal(values, pb.sparse[k][0]) and torch.equal(lengths, pb.sparse[k][1]), (name, k)
        assert torch.allclose(mb.dense, pb.dense, atol=1e-5), name


def _assert_same_texts(mem, root: Path, options, in_memory: list[str]) -> None:
    """Every row of every split of the prepared dataset renders the in-memory path's LM text
    (rows matched by source row), read a row group at a time as the LM cache reads them."""
    import pyarrow.parquet as pq

    from recsys_committee.data.prepared.texts import PreparedTexts

    manifest = json.loads((root / "manifest.json").read_text())
    texts = PreparedTexts(root, manifest, options)
    by_source = dict(zip(mem.raw.inter["__src"].to_list(), in_memory))  # the labeled rows come first in the table
    seen = 0
    for split in ("train", "val", "test"):
        for shard in manifest["shards"][split]:
            file = pq.ParquetFile(root / shard["file"])
            for group in range(file.num_row_groups):
                rows = file.read_row_group(group, columns=[*texts.columns, "example_id"])
                for source, text in zip(rows.column("example_id").to_pylist(), texts.render(rows)):
                    assert text == by_source[source], (split, source)
                    seen += 1
    assert seen == mem.raw.inter.height


def test_prepared_movielens_equals_the_in_memory_features(real_data_dir, tmp_path):
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.models.lm.text import TextOptions, render_texts

    spec = load_spec(ROOT / "configs/data/ml-100k.yaml")
    manifest = prepare(spec, tmp_path / "ml", PrepareOptions(bucket_rows=30_000, chunk_rows=40_000, row_group_rows=1024, piece_rows=9_000), log=lambda _: None)
    assert manifest["buckets"] == 4 and manifest["rows"] == {"train": 80_000, "val": 10_000, "test": 10_000}
    mem = load_spec_data(spec)
    _assert_same_features(mem, open_prepared(tmp_path / "ml"), torch.from_numpy(mem.raw.inter["__src"].to_numpy()))
    # the LM teacher's MovieLens texts (the shipped options: 3 titles with ratings, statistics)
    assert manifest["text"]["kind"] == "preset" and sorted(manifest["text"]["files"]) == ["items", "users"]
    options = TextOptions(history_n=3, include_ratings=True, include_stats=True)
    _assert_same_texts(mem, tmp_path / "ml", options, render_texts(mem.table, mem.raw.users, mem.raw.items, options))


def test_prepared_click_log_equals_in_memory_and_resumes_after_a_crash(tmp_path, monkeypatch):
    """String ids, no rating, unseen users in val/test, a list and a dense column; buckets of ~700
    rows. A prepare that dies in its third user bucket, rerun, ends with the same shard bytes as an
    unbroken one (a stale partial file from the crash is never taken for a finished shard)."""
    import recsys_committee.data.prepared.build as prep_mod
    from recsys_committee.data.features.loading import load_spec_data

    spec = load_spec(click_log(tmp_path, rows=3000))
    whole = prepare(spec, tmp_path / "whole", SMALL_BUCKETS, log=lambda _: None)
    assert whole["buckets"] == 5
    mem = load_spec_data(spec)
    _assert_same_features(mem, open_prepared(tmp_path / "whole"), torch.from_numpy(mem.raw.inter["__src"].to_numpy()))

    real = prep_mod.user_bucket

    def dies_at_bucket_2(spec, out, ub, *args):
        if ub == 2:
            (out / "val").mkdir(exist_ok=True)
            (out / "val" / "part-00002.parquet.tmp").write_bytes(b"half a shard")
            raise RuntimeError("worker lost")
        return real(spec, out, ub, *args)

    monkeypatch.setattr(prep_mod, "user_bucket", dies_at_bucket_2)
    with pytest.raises(RuntimeError):
        prepare(spec, tmp_path / "crashed", SMALL_BUCKETS, log=lambda _: None)
    assert not (tmp_path / "crashed" / "manifest.json").exists()
    done_before = {p.name for p in (tmp_path / "crashed" / "buckets").glob("*.json")}
    assert done_before == {"ub-00000.json", "ub-00001.json"}
    monkeypatch.setattr(prep_mod, "user_bucket", real)
    resumed = prepare(spec, tmp_path / "crashed", SMALL_BUCKETS, log=lambda _: None)
    assert resumed["content_hash"] == whole["content_hash"]
    assert resumed["rows"] == whole["rows"]
    assert not list((tmp_path / "crashed").rglob("*.tmp"))


def test_streamed_train_split_is_even_disjoint_and_resumes_exactly(tmp_path):
    spec = load_spec(click_log(tmp_path, rows=3000))
    prepare(spec, tmp_path / "ds", SMALL_BUCKETS, log=lambda _: None)
    train = open_prepared(tmp_path / "ds").train
    ranks = [DistContext(r, 2) for r in range(2)]
    counts = [train.num_batches(64, ctx=c) for c in ranks]
    assert counts[0] == counts[1] and counts[0] * 64 * 2 > 0.9 * len(train)  # little dropped
    ids = [torch.cat([b.example_ids for b in train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(3), ctx=c)]) for c in ranks]
    assert all(i.numel() == counts[0] * 64 for i in ids)
    assert not set(ids[0].tolist()) & set(ids[1].tolist())  # each rank reads only its share

    def epoch(start: int, seed: int = 5) -> list[torch.Tensor]:
        return [b.example_ids for b in train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(seed), start=start, ctx=ranks[0])]

    full, resumed = epoch(0), epoch(7)
    assert len(resumed) == len(full) - 7 and all(torch.equal(a, b) for a, b in zip(full[7:], resumed))
    assert not torch.equal(torch.cat(full), torch.cat(epoch(0, seed=6)))  # another epoch, another order


def test_a_run_streams_a_prepared_dataset_and_scores_like_the_in_memory_features(tmp_path, capsys):
    """prepare -> train on the prepared folder -> ``score --split test`` (which featurises the raw
    rows in memory with the model's saved vocabularies) reproduces the run's test AUC."""
    spec = click_log(tmp_path, rows=3000)
    assert cli_main(["prepare", "--data", str(spec), "--out", str(tmp_path / "ds"), "--bucket-rows", "700", "--row-group-rows", "128"]) == 0
    out = tmp_path / "student"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(tmp_path / "ds"), "--out", str(out),
                     *QUICK, "model.params.hidden=[32,16]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli_main(["score", "--model", str(out), "--split", "test", "--out", str(tmp_path / "preds.parquet")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)


def test_prepare_and_prepared_data_errors(tmp_path, one_error):
    spec = click_log(tmp_path, rows=600)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    one_error(["prepare", "--data", str(spec), "--out", str(tmp_path / "busy")], "not empty")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    assert cli_main(["prepare", "--data", str(spec), "--out", str(tmp_path / "ds")]) == 0
    one_error(["prepare", "--data", str(spec), "--out", str(tmp_path / "ds")], "already holds a prepared dataset", "--overwrite")
    (tmp_path / "empty").mkdir()
    one_error(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *QUICK],
               "manifest.json", "not a prepared dataset")
    shard = next((tmp_path / "ds" / "test").glob("*.parquet"))
    shard.unlink()
    one_error(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "o"), *QUICK],
               shard.name, "missing")
    no_time = tmp_path / "no_time.yaml"
    no_time.write_text(spec.read_text().replace("time: ts, ", ""))
    one_error(["prepare", "--data", str(no_time), "--out", str(tmp_path / "nt")], "columns.time")
    bad_text = tmp_path / "bad_text.yaml"
    bad_text.write_text(spec.read_text() + '\ntext: {item: "{no_such_column}"}\n')
    one_error(["prepare", "--data", str(bad_text), "--out", str(tmp_path / "bt")], "no_such_column", "text.item")


def test_time_pieces_cover_every_row_once_and_never_split_a_second():
    import numpy as np

    from recsys_committee.data.prepared.build import time_pieces

    times = np.array([1, 1, 1, 2, 3, 3, 3, 3, 4, 5, 5, 6])
    pieces = time_pieces(times, 2)
    assert pieces == [(0, 3), (3, 8), (8, 11), (11, 12)]  # 2 rows each, grown to the end of the cut second
    for start, end in pieces[1:]:
        assert times[start] != times[start - 1]  # a cut falls only where the time changes
    assert time_pieces(times, 100) == [(0, 12)] and time_pieces(times[:0], 5) == []


def test_a_skewed_parquet_log_prepared_in_pieces_equals_the_in_memory_features(tmp_path):
    """The generator's default skew (one user holds ~12% of the rows, one item ~20%), read from
    parquet, in item and user pieces far smaller than the hot keys: the carried statistics and
    histories give the in-memory features row by row."""
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.synthetic import SyntheticSpec, write_spec, write_synthetic

    from recsys_committee.models.lm.templates import render_template_texts
    from recsys_committee.models.lm.text import TextOptions

    write_synthetic(tmp_path, SyntheticSpec(rows=6_000, users=300, items=200, chunk_rows=2_000, seed=5))
    spec = load_spec(write_spec(tmp_path, text=True))  # the users table joined too
    # an item text that changes from row to row: a past item is listed with its LAST row's text
    spec = dataclasses.replace(spec, text={**spec.text, "item": spec.text["item"] + " @{timestamp}"})
    manifest = prepare(spec, tmp_path / "ds", PrepareOptions(bucket_rows=2_000, chunk_rows=1_500, row_group_rows=256, piece_rows=150), log=lambda _: None)
    assert manifest["buckets"] == 3
    mem = load_spec_data(spec)
    users = mem.raw.inter["user_id"].value_counts()["count"]
    assert users.max() > 5 * 150  # the hottest user spans several pieces
    _assert_same_features(mem, open_prepared(tmp_path / "ds"), torch.from_numpy(mem.raw.inter["__src"].to_numpy()))
    assert manifest["text"]["kind"] == "templates"
    options = TextOptions(history_n=3)
    _assert_same_texts(mem, tmp_path / "ds", options, render_template_texts(mem.table, mem.raw.inter, spec.text, options.history_n))
