"""The LM teacher's text: golden renderings, no leakage, the options, and the ordering rules."""

import pytest
import torch

from recsys_committee.data.logs.movielens import load_movielens
from recsys_committee.models.lm.text import TextOptions, item_strings, render_texts

TINY_DEFAULT = {
    0: "movie: Toy Story (1995) - animation comedy. user: 24 male technician. recent: none.",
    4: "movie: Four Rooms - thriller. user: 24 male technician. recent: GoldenEye - action thriller; Toy Story - animation comedy.",
    9: "movie: Toy Story (1995) - animation comedy. user: 24 male technician. "
    "recent: Get Shorty - unknown genre; Four Rooms - thriller; GoldenEye - action thriller.",
}
TINY_ALL_OPTIONS = {
    2: "movie: GoldenEye (1995) - action thriller. user: 17 male student. ids: user 3 movie 2. "
    "stats: movie 3.4 from 1, user 3.5 from 0. recent: none.",
    9: "movie: Toy Story (1995) - animation comedy. user: 24 male technician. ids: user 1 movie 1. "
    "stats: movie 3.8 from 2, user 3.4 from 4. recent: Get Shorty - unknown genre 1/5; Four Rooms - thriller 4/5.",
}
# ML-100K, the first 20k rows in time (the ml_slice fixture): rows 1000 and 15000
REAL_GOLDEN = {
    1000: "movie: Coldblooded (1995) - action. user: 42 male scientist. stats: movie 3.5 from 0, user 3.4 from 1. "
    "recent: Burnt By the Sun - drama 3/5.",
    15000: "movie: Four Weddings and a Funeral (1994) - comedy romance. user: 21 male entertainment. "
    "stats: movie 3.6 from 38, user 4.3 from 46. recent: What's Love Got to Do with It - drama 4/5; "
    "In the Line of Fire - action thriller 5/5; Tin Cup - comedy romance 1/5; GoodFellas - crime drama 5/5; "
    "Reservoir Dogs - crime thriller 4/5.",
}


@pytest.fixture
def tiny(tiny_dir):
    data = load_movielens(tiny_dir, "ml-tiny", history_len=3, long_history_len=10)
    return data.table, data.raw


def test_tiny_golden_default(tiny):
    table, raw = tiny
    texts = render_texts(table, raw.users, raw.items)
    assert len(texts) == table.num_rows
    for row, golden in TINY_DEFAULT.items():
        assert texts[row] == golden


def test_tiny_golden_all_options(tiny):
    table, raw = tiny
    options = TextOptions(history_n=2, include_ratings=True, include_stats=True, id_tokens=True)
    texts = render_texts(table, raw.users, raw.items, options)
    for row, golden in TINY_ALL_OPTIONS.items():
        assert texts[row] == golden
    # rows= renders the same strings, in the order asked
    assert render_texts(table, raw.users, raw.items, options, rows=torch.tensor([9, 2])) == [texts[9], texts[2]]


def test_no_leakage_same_second_and_own_rating(tiny):
    table, raw = tiny
    texts = render_texts(table, raw.users, raw.items, TextOptions(include_ratings=True))
    # rows 0 and 1: user 1 rated items 1 and 2 in the same second -> neither sees the other
    assert texts[0].endswith("recent: none.") and texts[1].endswith("recent: none.")
    # row 9 is user 1 rating Toy Story 2/5 at t=600: the 5/5 in its history is the t=100 rating,
    # and its own 2/5 appears nowhere
    assert "Toy Story - animation comedy 5/5" not in texts[9]  # window of 3 (history_len) ends before it
    assert "2/5" not in texts[9]


def test_history_n_zero_and_most_recent_first(tiny):
    table, raw = tiny
    texts = render_texts(table, raw.users, raw.items, TextOptions(history_n=0))
    assert all("recent" not in t for t in texts)
    one = render_texts(table, raw.users, raw.items, TextOptions(history_n=1))
    assert one[9].endswith("recent: Get Shorty - unknown genre.")  # the most recent only
    with pytest.raises(ValueError, match="history_n"):
        TextOptions(history_n=-1)


def test_titles_articles_and_junk_years():
    import polars as pl

    items = pl.DataFrame(
        {
            "item_id": [1, 2, 3],
            "movie_title": ["Usual Suspects, The", None, "Big Night"],
            "release_year": ["1995", "unkonwn", "V"],
            "class": ["Crime Thriller", None, "Children's Sci-Fi Film-Noir"],
        }
    )
    s = item_strings(items).sort("item_id")
    assert s["title"].to_list() == ["The Usual Suspects (1995)", "unknown title", "Big Night"]
    assert s["genres"].to_list() == ["crime thriller", "unknown genre", "children scifi noir"]


@pytest.mark.realdata
def test_real_golden(ml_slice, real_data_dir):
    raw = ml_slice.raw
    options = TextOptions(include_ratings=True, include_stats=True)
    rows = torch.tensor(sorted(REAL_GOLDEN))
    texts = render_texts(ml_slice.table, raw.users, raw.items, options, rows=rows)
    assert dict(zip(rows.tolist(), texts)) == REAL_GOLDEN
