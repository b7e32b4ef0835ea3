"""Turn validated MovieLens tables into model features, in global time order.

Why these features: with a global temporal split most test users are unseen in training, so
the signal is in what happened *before* each row (the user's recent items, the item's past
reception) and in item content. Every history and statistic here uses only rows with a
timestamp strictly smaller than the row's own, so nothing leaks from the future — including
ratings given in the same second, which MovieLens has in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from recsys_committee.data.layout import LEGACY_LAYOUT, FeatureLayout
from recsys_committee.data.jagged import filter_jagged, gather_jagged, gather_ranges, offsets_from_lengths
from recsys_committee.data.schema import RawTables

AGE_EDGES = [18, 25, 35, 45, 50, 56]  # MovieLens' own age groups
YEAR_MIN, YEAR_STEP, YEAR_BUCKETS = 1920, 5, 17  # <1920, 1920-24, ..., >=2000
LIKE_THRESHOLD = 4.0
RATING_PRIOR, PRIOR_WEIGHT = 3.5, 5.0  # smoothed past means: (sum + 3.5*5) / (count + 5)

DENSE_FEATURES = [
    "user_prev_log_count",
    "user_prev_mean_rating",
    "user_prev_like_rate",
    "item_prev_log_count",
    "item_prev_mean_rating",
    "item_prev_like_rate",
]


@dataclass
class FeatureTable:
    """All rows in time order: scalar columns in ``frame``, jagged ones as (values, offsets)."""

    frame: pl.DataFrame
    jagged: dict[str, tuple[torch.Tensor, torch.Tensor]]
    cardinalities: dict[str, int]  # feature -> embedding rows (id 0 is padding / unknown)
    dense_names: list[str] = field(default_factory=lambda: list(DENSE_FEATURES))
    layout: FeatureLayout = field(default_factory=lambda: LEGACY_LAYOUT)  # which model reads what

    @property
    def num_rows(self) -> int:
        return self.frame.height


def _vocab_ids(series: pl.Series) -> tuple[pl.Series, int]:
    """Map strings to 1..V in sorted order (0 stays for unknown)."""
    vocab = sorted(v for v in series.unique().to_list() if v is not None)
    lookup = {v: i + 1 for i, v in enumerate(vocab)}
    return series.replace_strict(lookup, default=0, return_dtype=pl.Int64), len(vocab) + 1


def user_features(users: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    zip_ids, zip_card = _vocab_ids(users["zip_code"].fill_null("").str.slice(0, 2))
    gender_ids, gender_card = _vocab_ids(users["gender"])
    occ_ids, occ_card = _vocab_ids(users["occupation"])
    age_bucket = users.select(
        (pl.col("age").cut(AGE_EDGES, left_closed=True).to_physical().cast(pl.Int64) + 1).alias("a")
    )["a"]
    frame = pl.DataFrame(
        {
            "user_id": users["user_id"],
            "age_bucket": age_bucket,
            "gender": gender_ids,
            "occupation": occ_ids,
            "zip_prefix": zip_ids,
        }
    )
    cards = {"age_bucket": len(AGE_EDGES) + 2, "gender": gender_card, "occupation": occ_card, "zip_prefix": zip_card}
    return frame, cards


def item_features(items: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], tuple[torch.Tensor, torch.Tensor], int]:
    """Item scalar features, and genres as a jagged column indexed by item id."""
    year = items["release_year"].cast(pl.Int64, strict=False)
    year_bucket = (((year - YEAR_MIN) // YEAR_STEP).clip(-1, YEAR_BUCKETS - 3) + 2).fill_null(0)
    frame = pl.DataFrame({"item_id": items["item_id"], "year_bucket": year_bucket})
    genre_lists = items["class"].fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    vocab = sorted(set(genre_lists.explode().drop_nulls().to_list()))
    genre_ids = genre_lists.list.eval(pl.element().replace_strict({g: i + 1 for i, g in enumerate(vocab)}, return_dtype=pl.Int64))
    max_item = int(items["item_id"].max())
    lengths = torch.zeros(max_item + 1, dtype=torch.long)
    item_ids = torch.from_numpy(items["item_id"].to_numpy().copy())
    lengths[item_ids] = torch.from_numpy(genre_ids.list.len().to_numpy().astype(np.int64))
    # values ordered by item id so offsets index by id directly
    order = torch.argsort(item_ids)
    flat = genre_ids.explode().drop_nulls().to_numpy().astype(np.int64)
    per_item_offsets = offsets_from_lengths(torch.from_numpy(genre_ids.list.len().to_numpy().astype(np.int64)))
    values = gather_ranges(torch.from_numpy(flat), per_item_offsets[:-1][order], lengths[item_ids][order])
    return frame, {"year_bucket": YEAR_BUCKETS + 1}, (values, offsets_from_lengths(lengths)), len(vocab) + 1


def _past_stats(frame: pl.DataFrame, key: str, prefix: str) -> pl.DataFrame:
    """Count, smoothed mean rating and like rate of ``key`` over rows strictly earlier in time."""
    per_second = (
        frame.group_by([key, "timestamp"])
        .agg(n=pl.len(), s=pl.col("rating").sum(), likes=(pl.col("rating") >= LIKE_THRESHOLD).sum())
        .sort([key, "timestamp"])
    )
    cum = per_second.with_columns(
        [(pl.col(c).cum_sum().over(key) - pl.col(c)).alias(f"prev_{c}") for c in ("n", "s", "likes")]
    )
    return cum.select(
        key,
        "timestamp",
        pl.col("prev_n").cast(pl.Float64).log1p().alias(f"{prefix}_prev_log_count"),
        ((pl.col("prev_s") + RATING_PRIOR * PRIOR_WEIGHT) / (pl.col("prev_n") + PRIOR_WEIGHT)).alias(f"{prefix}_prev_mean_rating"),
        ((pl.col("prev_likes") + 0.5 * PRIOR_WEIGHT) / (pl.col("prev_n") + PRIOR_WEIGHT)).alias(f"{prefix}_prev_like_rate"),
    )


def user_histories(
    user: torch.Tensor, timestamp: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For rows sorted by (user, timestamp): the last ``window`` items the user rated strictly
    before the row's timestamp -> (item values, rating values, lengths)."""
    n = user.numel()
    idx = torch.arange(n)
    new_user = torch.ones(n, dtype=torch.bool)
    new_user[1:] = user[1:] != user[:-1]
    new_second = new_user.clone()
    new_second[1:] |= timestamp[1:] != timestamp[:-1]
    user_start = torch.cummax(torch.where(new_user, idx, 0), 0).values
    second_start = torch.cummax(torch.where(new_second, idx, 0), 0).values  # first row of this (user, second)
    start = torch.maximum(user_start, second_start - window)
    lengths = second_start - start
    return gather_ranges(item, start, lengths), gather_ranges(rating, start, lengths), lengths


def build_features(raw: RawTables, history_len: int = 20, long_history_len: int = 50) -> FeatureTable:
    users, user_cards = user_features(raw.users)
    items, item_cards, (genre_values, genre_offsets), genre_card = item_features(raw.items)
    inter = raw.inter.sort(["user_id", "timestamp", "item_id"])
    u = torch.from_numpy(inter["user_id"].to_numpy().copy())
    t = torch.from_numpy(inter["timestamp"].to_numpy().copy())
    i = torch.from_numpy(inter["item_id"].to_numpy().copy())
    r = torch.from_numpy(inter["rating"].to_numpy().copy())
    short_items, _, short_len = user_histories(u, t, i, r, history_len)
    long_items, long_ratings, long_len = user_histories(u, t, i, r, long_history_len)
    liked, liked_len = filter_jagged(long_items, long_len, long_ratings >= LIKE_THRESHOLD)
    disliked, disliked_len = filter_jagged(long_items, long_len, long_ratings < LIKE_THRESHOLD)

    frame = (
        inter.with_row_index("_by_user")
        .join(users, on="user_id", how="left")
        .join(items, on="item_id", how="left")
        .join(_past_stats(inter, "user_id", "user"), on=["user_id", "timestamp"], how="left")
        .join(_past_stats(inter, "item_id", "item"), on=["item_id", "timestamp"], how="left")
        .with_columns(label=(pl.col("rating") >= LIKE_THRESHOLD).cast(pl.Float32))
        .sort(["timestamp", "user_id", "item_id"])  # global time order
        .with_row_index("example_id")
    )
    # Re-order the jagged columns (built in user order) into global time order.
    by_user = torch.from_numpy(frame["_by_user"].to_numpy().astype(np.int64))
    jagged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, values, lengths in (
        ("history", short_items, short_len),
        ("history_long", long_items, long_len),
        ("history_long_rating", torch.round(long_ratings).long(), long_len),
        ("history_liked", liked, liked_len),
        ("history_disliked", disliked, disliked_len),
    ):
        v, l = gather_jagged(values, offsets_from_lengths(lengths), by_user)
        jagged[name] = (v, offsets_from_lengths(l))
    cand = torch.from_numpy(frame["item_id"].to_numpy().astype(np.int64))
    g, gl = gather_jagged(genre_values, genre_offsets, cand)
    jagged["genres"] = (g, offsets_from_lengths(gl))

    n_items = int(raw.items["item_id"].max()) + 1
    cards = {
        "user_id": int(raw.users["user_id"].max()) + 1,
        "item_id": n_items,
        "history": n_items,
        "history_long": n_items,
        "history_liked": n_items,
        "history_disliked": n_items,
        "history_long_rating": 6,
        "genres": genre_card,
        **user_cards,
        **item_cards,
    }
    return FeatureTable(frame=frame.drop("_by_user"), jagged=jagged, cardinalities=cards)
