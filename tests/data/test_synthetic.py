import numpy as np
import polars as pl
import pytest

from recsys_committee.data.logs.movielens import load_movielens
from recsys_committee.data.logs.synthetic import SyntheticSpec, stream_batches, write_synthetic

SMALL = SyntheticSpec(rows=20_000, users=2_000, items=500, chunk_rows=3_000, seed=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """SMALL written once; the tests below only read it."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, SMALL)
    return root


def test_written_files_pass_the_real_reader(written):
    raw = load_movielens(written, "ml-synth").raw  # through MovieLens' data spec, same checks
    assert 19_000 < raw.inter.height <= 20_000
    assert raw.users.height == 2_000 and raw.items.height == 500
    assert raw.inter["timestamp"].is_sorted()


def test_popularity_is_zipf_skewed(written):
    counts = pl.read_parquet(written / "ml-synth.inter.parquet")["item_id"].value_counts()["count"].to_numpy()
    top = np.sort(counts)[::-1][: len(counts) // 100 or 1].sum() / counts.sum()
    assert top > 0.2  # the top 1% of items take a large share, as in real logs


def test_streams_in_bounded_batches(written):
    sizes = [b.height for b in stream_batches(written / "ml-synth.inter.parquet", 4_096)]
    assert max(sizes) <= 4_096 and sum(sizes) == pl.scan_parquet(written / "ml-synth.inter.parquet").select(pl.len()).collect().item()


def test_same_seed_same_data(written, tmp_path):
    write_synthetic(tmp_path / "b", SMALL)
    a = pl.read_parquet(written / "ml-synth.inter.parquet")
    b = pl.read_parquet(tmp_path / "b" / "ml-synth.inter.parquet")
    assert a.equals(b)


def _word_match(frame: pl.DataFrame) -> np.ndarray:
    """Per row: +1 for each factor where the user's ``likes`` and the item's ``tags`` name the
    same word, -1 where they name the dimension's two opposite words."""
    from recsys_committee.data.logs.synthetic import FACTOR_WORDS

    match = np.zeros(frame.height)
    for low, high in FACTOR_WORDS:
        has = {(side, w): frame[side].str.contains(rf"\b{w}\b").to_numpy() for side in ("likes", "tags") for w in (low, high)}
        match += (has["likes", low] & has["tags", low]) | (has["likes", high] & has["tags", high])
        match -= (has["likes", low] & has["tags", high]) | (has["likes", high] & has["tags", low])
    return match


def test_the_side_tables_words_carry_the_planted_signal(written):
    """Users' ``likes`` and items' ``tags`` are words for the same planted factors the ratings
    come from: rows whose words agree are rated ~1.5 stars above rows whose words oppose (a text
    reader has something to learn), and the words follow the factors they describe."""
    from recsys_committee.data.logs.synthetic import FACTOR_WORDS, WORD_THRESHOLD, planted

    users, items = pl.read_parquet(written / "ml-synth.user.parquet"), pl.read_parquet(written / "ml-synth.item.parquet")
    rows = (pl.read_parquet(written / "ml-synth.inter.parquet").join(users.select("user_id", "likes"), on="user_id")
            .join(items.select("item_id", "tags"), on="item_id"))
    match, rating = _word_match(rows), rows["rating"].to_numpy()
    assert (match >= 1).sum() > 2_000 and (match <= -1).sum() > 2_000
    assert rating[match >= 1].mean() - rating[match <= -1].mean() > 1.0
    quality = planted(SMALL).quality
    thrilling = items["tags"].str.contains(rf"\b{FACTOR_WORDS[0][1]}\b").to_numpy()
    assert np.array_equal(thrilling, quality[items["item_id"].to_numpy(), 0] > WORD_THRESHOLD)


def test_the_text_spec_gives_the_lm_the_words(written):
    """``write_spec(text=True)``: the users table joined and ``text:`` templates, rendered by the
    LM teacher's template path into texts that name the candidate's tags and the user's likes."""
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.spec import load_spec
    from recsys_committee.data.logs.synthetic import write_spec
    from recsys_committee.models.lm.templates import render_template_texts, spec_texts

    data = load_spec_data(load_spec(write_spec(written, text=True)))
    texts = render_template_texts(data.table, data.raw.inter, spec_texts(data), history_n=2)
    assert len(texts) == data.table.num_rows
    first = data.raw.inter.row(0, named=True)
    assert texts[0].startswith(f"item: {first['movie_title']} - {first['class']} - {first['tags']}. user: likes {first['likes']}.")
    assert (write_spec(written) != write_spec(written, text=True)) and "text:" not in write_spec(written).read_text()
