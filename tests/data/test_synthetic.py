import numpy as np
import polars as pl

from recsys_committee.data.logs.movielens import load_movielens
from recsys_committee.data.logs.synthetic import SyntheticSpec, stream_batches, write_synthetic

SMALL = SyntheticSpec(rows=20_000, users=2_000, items=500, chunk_rows=3_000, seed=3)


def test_written_files_pass_the_real_reader(tmp_path):
    write_synthetic(tmp_path, SMALL)
    raw = load_movielens(tmp_path, "ml-synth").raw  # through MovieLens' data spec, same checks
    assert 19_000 < raw.inter.height <= 20_000
    assert raw.users.height == 2_000 and raw.items.height == 500
    assert raw.inter["timestamp"].is_sorted()


def test_popularity_is_zipf_skewed(tmp_path):
    write_synthetic(tmp_path, SMALL)
    counts = pl.read_parquet(tmp_path / "ml-synth.inter.parquet")["item_id"].value_counts()["count"].to_numpy()
    top = np.sort(counts)[::-1][: len(counts) // 100 or 1].sum() / counts.sum()
    assert top > 0.2  # the top 1% of items take a large share, as in real logs


def test_streams_in_bounded_batches(tmp_path):
    write_synthetic(tmp_path, SMALL)
    sizes = [b.height for b in stream_batches(tmp_path / "ml-synth.inter.parquet", 4_096)]
    assert max(sizes) <= 4_096 and sum(sizes) == pl.scan_parquet(tmp_path / "ml-synth.inter.parquet").select(pl.len()).collect().item()


def test_same_seed_same_data(tmp_path):
    write_synthetic(tmp_path / "a", SMALL)
    write_synthetic(tmp_path / "b", SMALL)
    a = pl.read_parquet(tmp_path / "a" / "ml-synth.inter.parquet")
    b = pl.read_parquet(tmp_path / "b" / "ml-synth.inter.parquet")
    assert a.equals(b)
