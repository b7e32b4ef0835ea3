import random

import polars as pl
import torch

from recsys_committee.data.features.jagged import gather_jagged
from recsys_committee.data.logs.movielens import load_movielens

# the tiny fixture through configs/data/ml-100k.yaml (its 10 rows split 8/1/1 in time)


def _rows(table, name):
    values, offsets = table.jagged[name]
    return [values[offsets[i] : offsets[i + 1]].tolist() for i in range(table.num_rows)]


def test_tiny_histories_exclude_same_second_and_future(tiny_dir):
    table = load_movielens(tiny_dir, "ml-tiny", history_len=3, long_history_len=10).table
    frame = table.frame
    history = dict(zip(zip(frame["user_id"], frame["timestamp"], frame["item_id"]), _rows(table, "history")))
    # user 1 rated items 1 and 2 in the same second: neither sees the other
    assert history[(1, 100, 1)] == [] and history[(1, 100, 2)] == []
    assert history[(1, 200, 3)] == [1, 2]
    assert history[(1, 300, 4)] == [1, 2, 3]
    assert history[(1, 600, 1)] == [2, 3, 4]  # window 3 keeps the latest three
    assert history[(2, 500, 2)] == [1, 3]
    liked = dict(zip(zip(frame["user_id"], frame["timestamp"]), _rows(table, "history_liked")))
    assert liked[(1, 600)] == [1, 3]  # ratings 5 and 4; item 2 (3) and item 4 (1) are disliked


def test_tiny_buckets_and_unknowns(tiny_dir):
    table = load_movielens(tiny_dir, "ml-tiny").table
    years = dict(zip(table.frame["item_id"], table.frame["year_bucket"]))
    assert years[3] == 0  # "unkonwn" release year -> unknown bucket
    genres = dict(zip(table.frame["item_id"], _rows(table, "genres")))
    assert genres[4] == [] and len(genres[1]) == 2
    ages = dict(zip(table.frame["user_id"], table.frame["age_bucket"]))
    assert ages[3] == 1 and ages[1] == 2 and ages[2] == 6


def test_global_time_order(tiny_dir):
    data = load_movielens(tiny_dir, "ml-tiny")
    table, labeled = data.table, sum(len(part) for part in (data.train, data.val, data.test))
    ts = table.frame["timestamp"].to_list()[:labeled]  # the labeled rows; transfer rows (none or more) follow them
    assert ts == sorted(ts)
    assert table.frame["example_id"].to_list() == list(range(table.num_rows))


def test_real_history_has_no_leakage(real_data_dir):
    """Brute force 300 random rows: the history is the last 20 items strictly before t."""
    data = load_movielens(real_data_dir, history_len=20)
    table = data.table
    inter = data.raw.inter.sort(["user_id", "timestamp", "item_id"])
    by_user = {u: g for (u,), g in inter.group_by(["user_id"])}
    values, offsets = table.jagged["history"]
    rng = random.Random(0)
    for row in rng.sample(range(table.num_rows), 300):
        user, ts = table.frame["user_id"][row], table.frame["timestamp"][row]
        past = by_user[user].filter(pl.col("timestamp") < ts).sort(["timestamp", "item_id"])
        expected = past["item_id"].to_list()[-20:]
        assert values[offsets[row] : offsets[row + 1]].tolist() == expected, row


def test_real_past_stats_use_only_the_past(real_data_dir):
    table = load_movielens(real_data_dir).table
    first = table.frame.group_by("user_id").agg(pl.col("timestamp").min().alias("t0"))
    at_first = table.frame.join(first, on="user_id").filter(pl.col("timestamp") == pl.col("t0"))
    assert (at_first["user_prev_log_count"] == 0).all()


def test_gather_jagged_matches_python():
    values = torch.arange(10)
    offsets = torch.tensor([0, 3, 3, 7, 10])
    got, lengths = gather_jagged(values, offsets, torch.tensor([3, 0, 1, 3]))
    assert got.tolist() == [7, 8, 9, 0, 1, 2, 7, 8, 9]
    assert lengths.tolist() == [3, 3, 0, 3]


def test_histories_cut_from_contributing_rows_only():
    """Rows that do not contribute (transfer rows) get the last N contributing items strictly
    before their second, and are in nobody's history: brute force on random rows."""
    from recsys_committee.data.features.table import user_histories

    g = torch.Generator().manual_seed(0)
    n, window = 400, 4
    user = torch.randint(0, 12, (n,), generator=g)
    time = torch.randint(0, 30, (n,), generator=g)
    order = sorted(range(n), key=lambda i: (int(user[i]), int(time[i])))
    user, time = user[order], time[order]
    item = torch.randint(1, 50, (n,), generator=g)
    contributes = torch.rand(n, generator=g) < 0.6
    items, _, lengths = user_histories(user, time, item, item.double(), window, contributes)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    for i in range(n):
        past = [int(item[j]) for j in range(n) if contributes[j] and user[j] == user[i] and time[j] < time[i]]
        assert items[offsets[i]:offsets[i + 1]].tolist() == past[len(past) - min(window, len(past)):], i
