"""The built-in MovieLens-100K reader and features that ``configs/data/ml-100k.yaml`` replaced.

Kept here, outside the package, as the reference the data-spec path is checked against
(``test_spec.py``): the same rows must give the same features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys_committee.data.features.table import FeatureTable, user_histories
from recsys_committee.data.features.jagged import filter_jagged, gather_jagged, gather_ranges, offsets_from_lengths
from recsys_committee.data.model_input.layout import ITEM_TABLE, FeatureLayout
from recsys_committee.data.logs.schema import DataValidationError, RawTables

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
    return FeatureTable(frame=frame.drop("_by_user"), jagged=jagged, cardinalities=cards, dense_names=list(DENSE_FEATURES), layout=LAYOUT)


LAYOUT = FeatureLayout(
    student=["user_id", "item_id", "history", "genres", "age_bucket", "gender", "occupation", "zip_prefix", "year_bucket"],
    expert_extra=["history_long", "history_liked", "history_disliked"],
    sequence=["item_id", "history_long", "history_long_rating"],
    tables={f: ITEM_TABLE for f in ("item_id", "history", "history_long", "history_liked", "history_disliked")},
    scalar=["user_id", "item_id", "age_bucket", "gender", "occupation", "zip_prefix", "year_bucket"],
)


INTER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "item_id": pl.Int64(),
    "rating": pl.Float64(),
    "timestamp": pl.Int64(),
}
USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "age": pl.Int64(),
    "gender": pl.String(),
    "occupation": pl.String(),
    "zip_code": pl.String(),
}
ITEM_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Int64(),
    "movie_title": pl.String(),
    # Free text in the real file ("unkonwn", a stray "V"): parsed leniently by the features.
    "release_year": pl.String(),
    "class": pl.String(),
}
NULLABLE = {"release_year", "class", "movie_title", "zip_code"}


def _read_raw(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found")
    if path.suffix == ".parquet":
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for corrupt files
            raise DataValidationError(f"{path}: not a readable parquet file ({exc})") from exc
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: file is empty")
    frame = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    # RecBole atomic files type their headers: "user_id:token" -> "user_id".
    return frame.rename({c: c.split(":", 1)[0] for c in frame.columns})


def read_table(path: Path | str, schema: dict[str, pl.DataType], key: tuple[str, ...] = ()) -> pl.DataFrame:
    """Read ``path`` and cast it to ``schema``; extra columns are dropped, missing ones refused."""
    path = Path(path)
    frame = _read_raw(path)
    if frame.height == 0:
        raise DataValidationError(f"{path}: file has a header but no rows")
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {missing}; found {frame.columns}")
    out = {}
    for column, dtype in schema.items():
        series = frame[column]
        if series.dtype == pl.String and dtype != pl.String():
            series = series.str.strip_chars().replace("", None)
        try:
            cast = series.cast(dtype, strict=True)
        except Exception:
            cast = series.cast(dtype, strict=False)
            bad = series.filter(cast.is_null() & series.is_not_null()).head(3).to_list()
            raise DataValidationError(
                f"{path}: column '{column}' must be {dtype}, found values like {bad}"
            ) from None
        if column not in NULLABLE and cast.null_count():
            raise DataValidationError(f"{path}: column '{column}' has {cast.null_count()} empty value(s)")
        out[column] = cast
    table = pl.DataFrame(out)
    if key:
        dup = table.filter(table.select(list(key)).is_duplicated())
        if dup.height:
            raise DataValidationError(
                f"{path}: {dup.height} duplicate rows on {list(key)}, e.g. {dup.head(1).to_dicts()[0]}"
            )
    return table


def check_ids_known(table: pl.DataFrame, column: str, known: pl.Series, path: Path | str, known_from: Path | str) -> None:
    """Every id in ``table[column]`` must appear in ``known`` (an out-of-range id is an error)."""
    unknown = table.filter(~pl.col(column).is_in(known.implode()))[column]
    if unknown.len():
        raise DataValidationError(
            f"{path}: column '{column}' has {unknown.len()} id(s) not in {known_from}, e.g. {unknown.unique().head(3).to_list()}"
        )


def read_movielens(root: Path | str, name: str = "ml-100k") -> RawTables:
    """Read ``<root>/<name>.{inter,user,item}`` (or ``.parquet`` siblings) and cross-check ids."""
    root = Path(root)

    def pick(ext: str) -> Path:
        parquet = root / f"{name}.{ext}.parquet"
        return parquet if parquet.exists() else root / f"{name}.{ext}"

    inter_path, user_path, item_path = pick("inter"), pick("user"), pick("item")
    users = read_table(user_path, USER_SCHEMA, key=("user_id",))
    items = read_table(item_path, ITEM_SCHEMA, key=("item_id",))
    inter = read_table(inter_path, INTER_SCHEMA, key=("user_id", "item_id", "timestamp"))
    check_ids_known(inter, "user_id", users["user_id"], inter_path, user_path)
    check_ids_known(inter, "item_id", items["item_id"], inter_path, item_path)
    for column, table, path in (("user_id", users, user_path), ("item_id", items, item_path)):
        if table[column].min() < 1:
            raise DataValidationError(f"{path}: column '{column}' must be >= 1 (0 is the padding id)")
    if inter["rating"].is_nan().any() or not inter["rating"].is_between(0, 5).all():
        raise DataValidationError(f"{inter_path}: column 'rating' must lie in [0, 5]")
    return RawTables(inter=inter, users=users, items=items)
