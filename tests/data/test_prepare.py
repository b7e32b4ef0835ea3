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
    spec.transfer = {}  # its sampled pairs: the click-log tests below (they double this test's time)
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
    one_error(["prepare", "--data", str(spec), "--out", str(tmp_path / "zero"), "--pool-bin-rows", "0"], "--pool-bin-rows", "positive")
    # transfer rows: an unlabeled file without a column the spec's features read is named, with the column
    import polars as pl

    pl.read_parquet(tmp_path / "clicks.parquet").drop("device", "clicked").head(50).write_csv(tmp_path / "no_device.csv")
    bad_transfer = tmp_path / "bad_transfer.yaml"
    bad_transfer.write_text(spec.read_text() + f"transfer: {{unlabeled: {{interactions: {tmp_path}/no_device.csv}}}}\n")
    one_error(["prepare", "--data", str(bad_transfer), "--out", str(tmp_path / "bad_t")], "no_device.csv", "device")


def test_time_pieces_cover_every_row_once_and_never_split_a_second():
    import numpy as np

    from recsys_committee.data.prepared.partitions import time_pieces

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


def _unlabeled_clicks(root: Path, spec_path: Path, rows: int = 900, seed: int = 1, numeric_text_ids: bool = False) -> Path:
    """Impressions without an outcome for the click log (no label column): the spec's
    ``transfer.unlabeled`` source, some of them after the train period (those are dropped).
    ``numeric_text_ids``: the log's ids become digit strings ("12") in its parquet, which the
    impressions csv then reads as numbers."""
    import numpy as np
    import polars as pl

    log = pl.read_parquet(root / "clicks.parquet")
    if numeric_text_ids:
        log = log.with_columns(pl.col("visitor").str.strip_prefix("u").cast(pl.Int64).cast(pl.String),
                               pl.col("product").str.strip_prefix("sku-").cast(pl.Int64).cast(pl.String))
        log.write_parquet(root / "clicks.parquet")
        items = pl.read_csv(root / "products.csv").with_columns(pl.col("product").str.strip_prefix("sku-").cast(pl.Int64).cast(pl.String))
        items.write_csv(root / "products.csv")
    rng = np.random.default_rng(seed)
    lo, hi = int(log["ts"].min()), int(log["ts"].max())
    frame = pl.DataFrame({"visitor": rng.choice(log["visitor"].unique().sort().to_numpy(), rows),
                          "product": rng.choice(log["product"].unique().sort().to_numpy(), rows),
                          "ts": rng.integers(lo, hi, rows), "device": rng.choice(["ios", "android", "web"], rows)})
    frame.unique(subset=["visitor", "product", "ts"], maintain_order=True).write_csv(root / "impressions.csv")
    out = root / "clicks_transfer.yaml"
    out.write_text(spec_path.read_text() + f"transfer: {{unlabeled: {{interactions: {root}/impressions.csv}}}}\n")
    return out


def _in_time_user_item_order(batch, times):
    """The batch's rows in (time, user, item) order: how transfer rows are matched across paths
    (their ids differ: the in-memory path numbers them after filtering, prepare as it reads them)."""
    import numpy as np

    order = np.lexsort((batch.sparse["item_id"][0].numpy(), batch.users.numpy(), np.asarray(times)))
    return batch.subset(torch.from_numpy(order))


@pytest.mark.parametrize("numeric_text_ids", [False, True], ids=["text_ids", "digit_ids_read_as_numbers"])
def test_prepared_unlabeled_transfer_rows_equal_the_in_memory_ones_and_stream_with_the_train_split(tmp_path, numeric_text_ids):
    """Transfer rows on the out-of-core path: every unlabeled row of the train period, featurised
    past-only at its time in pieces (carried statistics, history tails that hold labeled rows
    only), with the in-memory path's features; they touch no labeled row's features, and a
    distillation's train split streams them with the labeled rows. Ids the impressions file types
    otherwise than the log ("12" read as 12) are its users' and items' all the same."""
    from recsys_committee.data.features.loading import load_spec_data

    spec = load_spec(_unlabeled_clicks(tmp_path, click_log(tmp_path, rows=3000), numeric_text_ids=numeric_text_ids))
    manifest = prepare(spec, tmp_path / "ds", SMALL_BUCKETS, log=lambda _: None)
    mem = load_spec_data(spec)
    prep = open_prepared(tmp_path / "ds")
    _assert_same_features(mem, prep, torch.from_numpy(mem.raw.inter["__src"].to_numpy()))  # labeled rows: untouched by the transfer rows
    assert 0 < manifest["rows"]["transfer"] == len(mem.transfer) < 900  # those after the train period are not transfer rows
    m = mem.transfer.batch(torch.arange(len(mem.transfer)))
    m = _in_time_user_item_order(m, mem.table.frame["timestamp"].to_numpy()[mem.transfer.index.numpy()])
    p = _in_time_user_item_order(prep.transfer.to_batch(prep.transfer._read(prep.transfer.units)), prep.transfer.column("timestamp").numpy())
    assert torch.isnan(p.labels).all() and torch.isnan(m.labels).all()
    assert torch.equal(m.users, p.users) and int(p.users.eq(0).sum()) == 0  # every impression's user is known
    for k, (values, lengths) in m.sparse.items():
        assert torch.equal(values, p.sparse[k][0]) and torch.equal(lengths, p.sparse[k][1]), k
    assert torch.allclose(m.dense, p.dense, atol=1e-5)
    assert int(p.sparse["history"][1].gt(0).sum()) > len(p) // 2  # they read real pasts (histories, statistics)
    assert {sh["source"] for sh in manifest["shards"]["transfer"]} == {"unlabeled"}
    # data.transfer_per_row=0 drops sampled pairs only: unlabeled rows stay, as in memory
    from recsys_committee.rec_domain import prepared_transfer

    assert len(prepared_transfer(prep, 0).transfer) == len(prep.transfer)
    # a distillation streams both; warm users are those with a labeled train row
    both = prep.with_transfer()
    assert len(both.train) == manifest["rows"]["train"] + manifest["rows"]["transfer"]
    seen = torch.cat([b.labels for b in both.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0), ctx=DistContext(0, 1))])
    assert torch.isnan(seen).any() and (~torch.isnan(seen)).any()
    assert torch.equal(both.warm_users(), prep.warm_users())


def test_prepared_sampled_pairs_are_unrated_train_period_pairs_featurised_as_in_memory(tmp_path):
    """``transfer.sampled`` out of core: pairs drawn from a pool of earlier train rows (bins of a
    few hundred rows here, so draws cross bins), none rated by its user before its time; each one's
    features equal those the in-memory path gives the same (user, item, time, device) row, and
    the labeled rows' features are untouched."""
    import numpy as np
    import polars as pl

    from recsys_committee.data.features.loading import load_spec_data

    base = click_log(tmp_path, rows=3000)
    spec_path = tmp_path / "clicks_sampled.yaml"
    spec_path.write_text(base.read_text() + "transfer: {sampled: {per_row: 2, seed: 3}}\n")
    spec = load_spec(spec_path)
    lines: list[str] = []
    manifest = prepare(spec, tmp_path / "ds", dataclasses.replace(SMALL_BUCKETS, pool_bin_rows=400), log=lines.append)
    assert manifest["buckets"] == 5 and any("in 6 time bin(s)" in line for line in lines), lines  # ~2,400 train rows, bins of 400
    prep = open_prepared(tmp_path / "ds")
    mem = load_spec_data(spec)
    _assert_same_features(mem, prep, torch.from_numpy(mem.raw.inter["__src"].to_numpy()))
    train_rows = manifest["rows"]["train"]
    assert 1.8 * train_rows < manifest["rows"]["transfer"] <= 2 * train_rows
    # the pairs as raw rows (decoded with the vocabularies): never rated by the user before their time
    table = pq_table(tmp_path / "ds", manifest["shards"]["transfer"], ["user_id", "item_id", "device", "timestamp"])
    values = prep.vocab.values
    raw = pl.DataFrame({"visitor": [values["user_id"][i - 1] for i in table["user_id"]], "product": [values["item_id"][i - 1] for i in table["item_id"]],
                        "ts": table["timestamp"], "device": [values["device"][i - 1] for i in table["device"]]})
    log = pl.read_parquet(tmp_path / "clicks.parquet")
    last_train = int(log.sort("ts")["ts"][train_rows - 1])
    assert int(raw["ts"].max()) <= last_train
    first = log.group_by(["visitor", "product"]).agg(pl.col("ts").min().alias("first"))
    seen = raw.join(first, on=["visitor", "product"], how="left")
    assert bool((seen["first"].is_null() | (seen["first"] >= seen["ts"])).all())
    # the same rows through the in-memory path (as unlabeled rows): the same features
    raw.write_csv(tmp_path / "pairs.csv")
    again = tmp_path / "clicks_pairs.yaml"
    again.write_text(base.read_text() + f"transfer: {{unlabeled: {{interactions: {tmp_path}/pairs.csv}}}}\n")
    mem_pairs = load_spec_data(load_spec(again))
    assert len(mem_pairs.transfer) == len(raw)
    m = mem_pairs.transfer.batch(torch.arange(len(raw)))
    p = prep.transfer.to_batch(prep.transfer._read(prep.transfer.units))
    m_times = mem_pairs.table.frame["timestamp"].to_numpy()[mem_pairs.transfer.index.numpy()]
    m = m.subset(torch.from_numpy(np.lexsort((m.sparse["device"][0].numpy(), m.sparse["item_id"][0].numpy(), m.users.numpy(), m_times))))
    p = p.subset(torch.from_numpy(np.lexsort((p.sparse["device"][0].numpy(), p.sparse["item_id"][0].numpy(), p.users.numpy(), table["timestamp"].to_numpy()))))
    for k, (values_, lengths) in m.sparse.items():
        assert torch.equal(values_, p.sparse[k][0]) and torch.equal(lengths, p.sparse[k][1]), k
    assert torch.allclose(m.dense, p.dense, atol=1e-5)


def pq_table(root: Path, shards: list[dict], columns: list[str]):
    import polars as pl

    return pl.concat([pl.read_parquet(root / sh["file"], columns=columns) for sh in shards])


def test_distilling_on_a_prepared_dataset_streams_its_transfer_rows(tmp_path, capsys, one_error):
    """prepare (sampled pairs) -> an expert trained on the prepared folder -> DiverseDistill with
    ``committee.transfer`` streams labeled and transfer rows; ``data.transfer_per_row=0`` leaves
    them out and another count than the prepared one is refused in one line."""
    spec_path = tmp_path / "clicks_sampled.yaml"
    spec_path.write_text(click_log(tmp_path, rows=3000).read_text() + "transfer: {sampled: {per_row: 2}}\n")
    assert cli_main(["prepare", "--data", str(spec_path), "--out", str(tmp_path / "ds"), "--bucket-rows", "700", "--row-group-rows", "128"]) == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    small = [*QUICK, "model.params.hidden=[32,16]"]
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/expert_dlrm.yaml"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "dlrm"),
                     *QUICK, "model.params.top=[32,16]"]) == 0
    teachers = json.dumps([{"name": "dlrm", "kind": "rec_model", "checkpoint": str(tmp_path / "dlrm/model.safetensors"), "tap": "top"}])
    def distill(out: str, *extra: str) -> list[str]:
        return ["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / out),
                *small, f"teachers={teachers}", *extra]

    assert cli_main(distill("dd")) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "dd/metrics.json").read_text())
    assert metrics["transfer"]["rows"] == manifest["rows"]["transfer"] > 0
    forwards = metrics["teacher_forwards"]
    assert forwards["samples"] == 4 * 128 and 0 < forwards["transfer_samples"] < forwards["samples"]  # both kinds of row in the streamed steps
    assert cli_main(distill("labeled_only", "data.transfer_per_row=0")) == 0
    assert json.loads((tmp_path / "labeled_only/metrics.json").read_text())["transfer"]["rows"] == 0
    one_error(distill("other", "data.transfer_per_row=5"), "data.transfer_per_row=5", "prepared with 2")


def test_sampled_pairs_of_a_log_whose_first_pieces_have_nothing_earlier(tmp_path):
    """A piece whose rows all sit in the log's first train second draws nothing (no earlier train
    row), and the next pieces draw as usual."""
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(click_log(tmp_path, rows=60).read_text() + "transfer: {sampled: {per_row: 2}}\n")
    manifest = prepare(load_spec(spec_path), tmp_path / "ds", PrepareOptions(bucket_rows=1000, piece_rows=1, row_group_rows=16), log=lambda _: None)
    assert 0 < manifest["rows"]["transfer"] <= 2 * manifest["rows"]["train"]


def test_both_kinds_of_transfer_row_get_shards_of_their_own(tmp_path):
    """A spec with unlabeled rows and sampled pairs: each kind in its own shards (the sampled
    pairs' ids follow the unlabeled rows'), so ``data.transfer_per_row=0`` keeps exactly the
    unlabeled ones."""
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.rec_domain import prepared_transfer

    unlabeled_only = _unlabeled_clicks(tmp_path, click_log(tmp_path, rows=3000))
    both = tmp_path / "both.yaml"
    both.write_text(unlabeled_only.read_text().replace("transfer: {unlabeled:", "transfer: {sampled: {per_row: 1}, unlabeled:"))
    manifest = prepare(load_spec(both), tmp_path / "ds", SMALL_BUCKETS, log=lambda _: None)
    by_source = {}
    for shard in manifest["shards"]["transfer"]:
        by_source[shard["source"]] = by_source.get(shard["source"], 0) + shard["rows"]
    assert by_source["unlabeled"] == len(load_spec_data(load_spec(unlabeled_only)).transfer)
    assert 0 < by_source["sampled"] <= manifest["rows"]["train"] and sum(by_source.values()) == manifest["rows"]["transfer"]
    prep = open_prepared(tmp_path / "ds")
    assert len(prepared_transfer(prep, 0).transfer) == by_source["unlabeled"] and len(prepared_transfer(prep, 1).transfer) == manifest["rows"]["transfer"]
