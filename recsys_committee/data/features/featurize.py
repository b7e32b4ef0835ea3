"""Features from a data spec: ids, categorical and list columns, dense columns and the derived
past-only features (histories, user/item statistics), in global time order.

Why these rules: vocabularies and dense statistics come from the train split only (a value first
seen in validation is out-of-vocabulary, as it would be in production); every history and
statistic uses only rows with a time strictly smaller than the row's own, so nothing leaks from
the future, including rows logged in the same second. Everything is columnar (polars, tensor
index arithmetic): no Python loop over rows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import polars as pl
import torch

from recsys_committee.data.features.table import FeatureTable, user_histories
from recsys_committee.data.model_input.layout import ITEM_TABLE, FeatureLayout
from recsys_committee.data.features.jagged import filter_jagged, gather_jagged, offsets_from_lengths
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.data.features.split import Split, temporal_split

RATING_PRIOR_WEIGHT = 5.0  # smoothed past means: (sum + prior * w) / (count + w)


def _encode(series: pl.Series, vocab: dict[Any, int]) -> pl.Series:
    return series.replace_strict(vocab, default=0, return_dtype=pl.Int64)


def crc32_of(series: pl.Series) -> pl.Series:
    """crc32 of each value's text: stable across processes, runs and polars versions (polars'
    own ``hash`` is not). Hashed once per distinct value, so a million rows of a thousand
    values cost a thousand crc32 calls."""
    text = series.cast(pl.String)
    distinct = text.drop_nulls().unique()
    codes = pl.Series([zlib.crc32(v.encode()) for v in distinct.to_list()], dtype=pl.Int64)
    return text.replace_strict(distinct, codes, default=None, return_dtype=pl.Int64)


def _hash(series: pl.Series, buckets: int) -> pl.Series:
    """Stable across processes and runs (crc32 of the value's text), 1..buckets; null -> 0."""
    return (crc32_of(series) % buckets + 1).fill_null(0)


def entity_key(series: pl.Series) -> pl.Series:
    """An integer per distinct raw user / item of these rows. Why raw and not the encoded id:
    users and items unseen in training all share the out-of-vocabulary id 0, and their
    histories and statistics must not be pooled into one pseudo-user."""
    if series.dtype.is_integer():
        return series.cast(pl.Int64)
    return series.rank("dense").cast(pl.Int64)


def split_rows(spec: DataSpec, n: int) -> Split:
    if spec.split_kind == "temporal":
        return temporal_split(n, tuple(spec.fractions))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed))
    n_train, n_val = int(round(n * spec.fractions[0])), int(round(n * spec.fractions[1]))
    return Split(train=order[:n_train].sort().values, val=order[n_train:n_train + n_val].sort().values, test=order[n_train + n_val:].sort().values)


CONTRIBUTES = "__contributes"  # False on transfer rows: they get past-only features but are nobody's past


def _past_stats(frame: pl.DataFrame, key: str, time: str, prefix: str, rating: Optional[str], like: pl.Expr, prior: float = 0.0,
                carry: Optional[pl.DataFrame] = None, sums_out: bool = True) -> tuple[pl.DataFrame, Optional[pl.DataFrame]]:
    """Count (log), smoothed mean rating (with a rating) and like rate of ``key`` over rows strictly
    earlier, one row per (key, time); and (``sums_out``) each key's sums over ``frame`` added to
    ``carry`` (the sums over earlier rows of the log, when ``frame`` is one time-ordered piece of it)."""
    aggs, cols = _stat_sums(rating, like)
    per_second = frame.group_by([key, time]).agg(aggs).sort([key, time])
    cum = per_second.with_columns([(pl.col(c).cum_sum().over(key) - pl.col(c)).alias(f"prev_{c}") for c in cols])
    if carry is not None:
        cum = cum.join(carry.rename({c: f"carry_{c}" for c in cols}), on=key, how="left")
        cum = cum.with_columns([(pl.col(f"prev_{c}") + pl.col(f"carry_{c}").fill_null(0)).alias(f"prev_{c}") for c in cols])
    totals = None
    if sums_out:
        sums = [pl.col(c).sum() for c in cols]
        totals = per_second.group_by(key).agg(sums)
        if carry is not None:
            totals = pl.concat([carry, totals], how="vertical_relaxed").group_by(key).agg(sums)
    return _stats_columns(cum, key, time, prefix, rating, prior), totals


def _past_stats_asof(frame: pl.DataFrame, key: str, time: str, prefix: str, rating: Optional[str], like: pl.Expr, prior: float,
                     carry: Optional[pl.DataFrame] = None) -> pl.DataFrame:
    """``_past_stats`` when some rows do not contribute (``CONTRIBUTES`` False): sums over the
    contributing rows, read by every row as of the last second strictly before its own, plus
    ``carry`` (each key's sums over earlier pieces of the log). One row per (key, time) of ``frame``."""
    aggs, cols = _stat_sums(rating, like)
    per_second = frame.filter(pl.col(CONTRIBUTES)).group_by([key, time]).agg(aggs).sort([key, time])
    cum = per_second.select(key, time, *[pl.col(c).cum_sum().over(key).alias(f"prev_{c}") for c in cols]).sort(time)
    wanted = frame.select(key, time).unique().sort(time)
    joined = wanted.join_asof(cum, on=time, by=key, strategy="backward", allow_exact_matches=False, check_sortedness=False)  # both sorted by time just above
    joined = joined.with_columns([pl.col(f"prev_{c}").fill_null(0) for c in cols])
    if carry is not None:
        joined = joined.join(carry.rename({c: f"carry_{c}" for c in cols}), on=key, how="left")
        joined = joined.with_columns([(pl.col(f"prev_{c}") + pl.col(f"carry_{c}").fill_null(0)).alias(f"prev_{c}") for c in cols])
    return _stats_columns(joined, key, time, prefix, rating, prior)


def _stat_sums(rating: Optional[str], like: pl.Expr) -> tuple[list[pl.Expr], list[str]]:
    """The per-(key, second) sums the statistics are made of, and their names."""
    aggs = [pl.len().alias("n"), like.sum().alias("likes")] + ([pl.col(rating).sum().alias("s")] if rating else [])
    return aggs, ["n", "likes"] + (["s"] if rating else [])


def _stats_columns(cum: pl.DataFrame, key: str, time: str, prefix: str, rating: Optional[str], prior: float) -> pl.DataFrame:
    out = [pl.col(key), pl.col(time), pl.col("prev_n").cast(pl.Float64).log1p().alias(f"{prefix}_prev_log_count")]
    if rating:
        out.append(((pl.col("prev_s") + prior * RATING_PRIOR_WEIGHT) / (pl.col("prev_n") + RATING_PRIOR_WEIGHT)).alias(f"{prefix}_prev_mean_rating"))
    out.append(((pl.col("prev_likes") + 0.5 * RATING_PRIOR_WEIGHT) / (pl.col("prev_n") + RATING_PRIOR_WEIGHT)).alias(f"{prefix}_prev_like_rate"))
    return cum.select(out)


def like_expr(spec: DataSpec) -> pl.Expr:
    """What counts as a like in the stats: the rating at the like threshold, else the label."""
    like_min = spec.like_threshold if spec.like_threshold is not None else spec.label.min
    return (pl.col("rating") >= like_min) if (spec.rating and like_min is not None) else (pl.col("label") >= 0.5)


def past_stats_of_rows(spec: DataSpec, frame: pl.DataFrame, key: str, prefix: str, vocab: "Vocabularies") -> pl.DataFrame:
    """``_past_stats`` of ``key`` joined back to every row of ``frame`` (columns key, timestamp,
    label(, rating)), in ``frame``'s row order: only the ``{prefix}_prev_*`` columns."""
    partial = CONTRIBUTES in frame.columns and not bool(frame[CONTRIBUTES].all())
    if not partial:
        return past_stats_carried(spec, frame, key, prefix, vocab, None, sums_out=False)[0]
    src = frame.select(key, "timestamp", "label", *(["rating"] if spec.rating else []), CONTRIBUTES)
    prior = vocab.rating_prior.get(f"{prefix}_stats", 0.0)
    stats = _past_stats_asof(src, key, "timestamp", prefix, "rating" if spec.rating else None, like_expr(spec), prior)
    return src.select(key, "timestamp").join(stats, on=[key, "timestamp"], how="left", maintain_order="left").drop(key, "timestamp")


def past_stats_carried(spec: DataSpec, frame: pl.DataFrame, key: str, prefix: str, vocab: "Vocabularies",
                       carry: Optional[pl.DataFrame], sums_out: bool = True) -> tuple[pl.DataFrame, Optional[pl.DataFrame]]:
    """``past_stats_of_rows`` for one time-ordered piece of a log, every row of it later than
    every row before it: ``carry`` holds each key's sums over the earlier pieces (None: none).
    Returns the piece's statistics and the carry after it (one row per key seen so far), so
    the out-of-core path holds a piece and a row per key, never a hot key's whole past
    (``sums_out=False``: no carry is wanted, as for a whole log in memory)."""
    prior = vocab.rating_prior.get(f"{prefix}_stats", 0.0)
    rating = "rating" if spec.rating else None
    src = frame.select(key, "timestamp", "label", *([rating] if rating else []))
    if CONTRIBUTES in frame.columns and not bool(frame[CONTRIBUTES].all()):
        # transfer rows in the piece: each row reads the contributing rows before it (and the
        # carry); the carry after the piece sums its contributing rows only
        marked = src.with_columns(frame[CONTRIBUTES])
        stats = _past_stats_asof(marked, key, "timestamp", prefix, rating, like_expr(spec), prior, carry)
        if sums_out:
            _, carry = _past_stats(src.filter(frame[CONTRIBUTES]), key, "timestamp", prefix, rating, like_expr(spec), prior, carry, True)
    else:
        stats, carry = _past_stats(src, key, "timestamp", prefix, rating, like_expr(spec), prior, carry, sums_out)
    joined = src.select(key, "timestamp").join(stats, on=[key, "timestamp"], how="left", maintain_order="left")
    return joined.drop(key, "timestamp"), carry


def _multi_tokens(series: pl.Series, separator: Optional[str], where: str) -> pl.Series:
    if series.dtype == pl.List(pl.String) or isinstance(series.dtype, pl.List):
        lists = series.cast(pl.List(pl.String))
    elif separator is None:
        raise DataValidationError(f"{where}: the column is not a list; give its separator (multi_valued: {{name: SEP}})")
    else:
        lists = series.cast(pl.String).fill_null("").str.split(separator)
    return lists.list.eval(pl.element().str.strip_chars()).list.eval(pl.element().filter(pl.element() != ""))


@dataclass
class Vocabularies:
    """What the features learnt from the train split: each vocabulary's values in id order (id =
    position + 1; 0 is out-of-vocabulary / padding), the embedding rows of every feature and the
    stats' rating prior. Why an object: it is saved as JSON next to a model and applied
    unchanged when ``score`` featurises new rows, so a value means the same id there."""

    values: dict[str, list[Any]] = field(default_factory=dict)
    cards: dict[str, int] = field(default_factory=dict)
    rating_prior: dict[str, float] = field(default_factory=dict)

    def ids(self, feature: str) -> dict[Any, int]:
        return {v: i + 1 for i, v in enumerate(self.values[feature])}

    def as_dict(self) -> dict[str, Any]:
        return {"values": self.values, "cards": self.cards, "rating_prior": self.rating_prior}


def vocab_parts(spec: DataSpec, rows: pl.DataFrame, train: pl.Series) -> dict[str, Any]:
    """What the vocabularies need from one slice of the rows (``train`` marks its train rows):
    distinct values, maxima and rating sums. Slices combine with ``vocab_from_parts``, so the
    out-of-core path fits the same vocabularies file by file."""
    train_rows = rows.filter(train)
    part: dict[str, Any] = {"sets": {}, "max": {}, "rating_sum": 0.0, "rating_n": 0, "rating_max": None}
    for name, column in (("user_id", spec.user), ("item_id", spec.item)):
        if spec.ids == "raw":
            part["max"][name] = int(rows[column].max()) if rows.height else 0
        else:
            part["sets"][name] = set(v for v in train_rows[column].unique().to_list() if v is not None)
    for c in spec.categorical:
        if c.bins is None and c.buckets is None:
            part["sets"][c.name] = set(v for v in _categorical_source(c, train_rows).unique().to_list() if v is not None)
    for m in spec.multi_valued:
        tokens = _multi_tokens(train_rows[m.column], m.separator, spec.where(f"features.multi_valued '{m.name}'"))
        part["sets"][m.name] = set(tokens.explode().drop_nulls().unique().to_list())
    if spec.rating and train_rows.height:
        part["rating_sum"] = float(train_rows[spec.rating].sum())
        part["rating_n"] = train_rows.height
        part["rating_max"] = float(train_rows[spec.rating].max())
    return part


def vocab_from_parts(spec: DataSpec, parts: list[dict[str, Any]]) -> Vocabularies:
    """Vocabularies from the train split's slices; raw ids and hashed / binned features need
    none (their sizes are fixed)."""
    vocab = Vocabularies()
    for name in ("user_id", "item_id"):
        if spec.ids == "raw":
            vocab.cards[name] = max(p["max"][name] for p in parts) + 1
        else:
            vocab.values[name] = sorted(set().union(*(p["sets"][name] for p in parts)))
    for c in spec.categorical:
        if c.bins is not None:
            vocab.cards[c.name] = len(c.bins) + 2
        elif c.buckets is not None:
            vocab.cards[c.name] = int(c.buckets) + 1
        else:
            vocab.values[c.name] = sorted(set().union(*(p["sets"][c.name] for p in parts)))
    for m in spec.multi_valued:
        vocab.values[m.name] = sorted(set().union(*(p["sets"][m.name] for p in parts)))
    for name, values in vocab.values.items():
        vocab.cards[name] = len(values) + 1
    rating_n = sum(p["rating_n"] for p in parts)
    if spec.rating and "rated_history" in spec.derived:  # past ratings as ids 0..max
        vocab.cards["history_long_rating"] = int(round(max(p["rating_max"] for p in parts if p["rating_max"] is not None))) + 1
    if spec.rating:
        for want in ("user_stats", "item_stats"):
            if want in spec.derived:  # the smoothing prior: the spec's, else the train split's mean rating
                vocab.rating_prior[want] = float(spec.derived[want].get("prior", sum(p["rating_sum"] for p in parts) / max(rating_n, 1)))
    return vocab


def fit_vocabularies(spec: DataSpec, rows: pl.DataFrame, train: pl.Series) -> Vocabularies:
    """Vocabularies from the rows where ``train`` is True."""
    return vocab_from_parts(spec, [vocab_parts(spec, rows, train)])


def _categorical_source(c: Any, rows: pl.DataFrame) -> pl.Series:
    src = rows[c.column]
    return src.cast(pl.String).fill_null("").str.slice(0, int(c.prefix)) if c.prefix is not None else src


def build_spec_features(spec: DataSpec, rows: pl.DataFrame,
                        extend: Optional[Callable[[pl.DataFrame, Split], pl.DataFrame]] = None) -> tuple[FeatureTable, Split, Vocabularies]:
    """``rows`` (from ``reader.read_rows``, in time order) -> the FeatureTable, the split and the
    vocabularies fitted on its train split. ``extend(rows, split)`` may append rows that are
    featurised with them but split into none of train / val / test (the transfer rows: they
    follow the labeled rows in the table, whose positions do not move)."""
    n = rows.height
    split = split_rows(spec, n)
    for name, part in (("train", split.train), ("val", split.val), ("test", split.test)):
        if part.numel() == 0:
            raise DataValidationError(f"{spec.where('split')}: the {name} split is empty ({n} rows, fractions {spec.fractions})")
    train_mask = torch.zeros(n, dtype=torch.bool)
    train_mask[split.train] = True
    vocab = fit_vocabularies(spec, rows, pl.Series(train_mask.numpy()))
    return featurize(spec, extend(rows, split) if extend is not None else rows, vocab), split, vocab


def featurize(spec: DataSpec, rows: pl.DataFrame, vocab: Vocabularies, example_ids: Optional[pl.Series] = None,
              item_stats: Optional[pl.DataFrame] = None, user_stats: Optional[pl.DataFrame] = None,
              user_keys: Optional[pl.Series] = None, history_context: Optional[pl.DataFrame] = None) -> FeatureTable:
    """Features of ``rows`` (in time order) with fixed vocabularies; derived features see only
    these rows' pasts. The out-of-core path (``data/prepared/build.py``) calls this per
    time-ordered piece of a bucket of users, with what the piece cannot see alone: the rows'
    stable ids, their item and user statistics (``item_stats``, ``user_stats``: computed by the
    caller with each key's sums carried from earlier pieces; one row per row of ``rows``, the
    ``*_prev_*`` columns), user keys
    numbered over the whole bucket (``user_keys``) and the users' earlier rows that histories
    are cut from (``history_context``: ``__user_key``, ``timestamp``, ``item_id`` and the rating
    or label, every row earlier than any of ``rows``; they get no features of their own)."""
    n = rows.height
    cards = dict(vocab.cards)
    cols: dict[str, pl.Series] = {}
    # ---- user and item ids
    for name, column in (("user_id", spec.user), ("item_id", spec.item)):
        if spec.ids == "raw":
            ids = rows[column].cast(pl.Int64)
            cols[name] = pl.select(pl.when(ids < cards[name]).then(ids).otherwise(0)).to_series().alias(name)  # beyond the table: unknown
        else:
            cols[name] = _encode(rows[column], vocab.ids(name))
    # ---- categorical
    for c in spec.categorical:
        src = rows[c.column]
        if c.bins is not None:
            values = _numeric_lenient(src)
            edges = [float(e) for e in c.bins]
            ids = pl.Series(np.searchsorted(np.asarray(edges), values.fill_null(np.nan).to_numpy(), side="right") + 1, dtype=pl.Int64)
            cols[c.name] = pl.select(pl.when(values.is_null()).then(0).otherwise(ids)).to_series().alias(c.name)
        elif c.buckets is not None:
            cols[c.name] = _hash(_categorical_source(c, rows), int(c.buckets))
        else:
            cols[c.name] = _encode(_categorical_source(c, rows), vocab.ids(c.name))
    # ---- list columns (per row)
    jagged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for m in spec.multi_valued:
        tokens = _multi_tokens(rows[m.column], m.separator, spec.where(f"features.multi_valued '{m.name}'"))
        ids = tokens.list.eval(pl.element().replace_strict(vocab.ids(m.name), default=0, return_dtype=pl.Int64))
        lengths = torch.from_numpy(ids.list.len().to_numpy().astype(np.int64))
        flat = torch.from_numpy(ids.explode().drop_nulls().to_numpy().astype(np.int64))
        jagged[m.name] = (flat, offsets_from_lengths(lengths))
    ids = example_ids if example_ids is not None else pl.Series(np.arange(n), dtype=pl.UInt32)
    frame = pl.DataFrame({"example_id": ids.alias("example_id"), **cols,
                          "timestamp": rows[spec.time] if spec.time else pl.Series(np.arange(n), dtype=pl.Int64),
                          "label": rows["__label"]})
    if spec.rating:
        frame = frame.with_columns(rows[spec.rating].alias("rating"))
    frame = frame.with_columns((user_keys if user_keys is not None else entity_key(rows[spec.user])).alias("__user_key"),
                               entity_key(rows[spec.item]).alias("__item_key"))
    if CONTRIBUTES in rows.columns:
        frame = frame.with_columns(rows[CONTRIBUTES])
    # ---- derived, past-only (computed over every row: a row's past includes earlier val/test rows, as in production)
    dense_names: list[str] = []
    like_min = spec.like_threshold if spec.like_threshold is not None else spec.label.min
    if spec.time:
        for key, prefix, want in (("__user_key", "user", "user_stats"), ("__item_key", "item", "item_stats")):
            if want not in spec.derived:
                continue
            given = item_stats if want == "item_stats" else user_stats
            if given is not None:
                frame = frame.hstack(given)
                dense_names += list(given.columns)
                continue
            stats = past_stats_of_rows(spec, frame, key, prefix, vocab)
            frame = frame.hstack(stats)
            dense_names += list(stats.columns)
        jagged.update(_histories(spec, frame, like_min, history_context))
    frame = frame.drop("__user_key", "__item_key", *([CONTRIBUTES] if CONTRIBUTES in frame.columns else []))
    for d in spec.dense:
        frame = frame.with_columns(rows[d].alias(d))
        dense_names.append(d)
    item_like = {"item_id", "history", "history_long", "history_liked", "history_disliked"}
    for name in item_like - {"item_id"}:
        if name in jagged:
            cards[name] = cards["item_id"]
    return FeatureTable(frame=frame, jagged=jagged, cardinalities=cards, dense_names=dense_names, layout=_layout(spec, jagged))


def _numeric_lenient(series: pl.Series) -> pl.Series:
    """Numbers for binning; text that is not a number (a stray 'unknown') becomes null -> bucket 0."""
    if series.dtype.is_numeric():
        return series.cast(pl.Float64)
    return series.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def _history_windows(spec: DataSpec) -> dict[str, Optional[int]]:
    """How many past items each history keeps (None: not built)."""
    wanted = {"history": spec.history_length("history", 20), "history_long": spec.history_length("history_long", 50)}
    for name in ("liked", "disliked", "rated_history"):
        if name in spec.derived and wanted["history_long"] is None:
            wanted["history_long"] = 50  # liked/disliked/rated histories are cut from the long history
    return wanted


def longest_history(spec: DataSpec) -> int:
    """The most past rows of a user any history reads (0: the spec builds none): all a later
    piece of the log needs to carry of each user's past for its histories."""
    return max((v for v in _history_windows(spec).values() if v is not None), default=0) if spec.time else 0


def history_columns(spec: DataSpec) -> list[str]:
    """The columns of a ``featurize`` frame that histories are cut from (a history context's)."""
    return ["__user_key", "timestamp", "item_id", "rating" if spec.rating is not None else "label"]


def _histories(spec: DataSpec, frame: pl.DataFrame, like_min: Optional[float],
               context: Optional[pl.DataFrame] = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The user's last N items strictly before the row's time, in global row order. ``context``:
    earlier rows that are history but get none of their own (a piece's users' earlier rows)."""
    wanted = _history_windows(spec)
    rated = spec.rating is not None
    if not any(v is not None for v in wanted.values()):
        return {}
    partial = CONTRIBUTES in frame.columns and not bool(frame[CONTRIBUTES].all())
    rows = frame.select(*history_columns(spec), *([CONTRIBUTES] if partial else [])).with_row_index("_row")
    if context is not None and context.height:  # after the rows in the frame, before them in time: sorted first per user
        earlier = context.select(history_columns(spec)).with_row_index("_row", offset=frame.height)
        if partial:  # a context holds history rows only: every one of them contributes
            earlier = earlier.with_columns(pl.lit(True).alias(CONTRIBUTES))
        rows = pl.concat([rows, earlier], how="vertical_relaxed")
    by_user = rows.sort(["__user_key", "timestamp", "item_id"], maintain_order=True)
    contributes = torch.from_numpy(by_user[CONTRIBUTES].to_numpy()) if partial else None
    u = torch.from_numpy(by_user["__user_key"].to_numpy().astype(np.int64))
    t = torch.from_numpy(by_user["timestamp"].to_numpy().astype(np.int64))
    i = torch.from_numpy(by_user["item_id"].to_numpy().astype(np.int64))
    r = torch.from_numpy(by_user["rating" if rated else "label"].to_numpy().astype(np.float64))
    back = torch.from_numpy(by_user["_row"].to_numpy().astype(np.int64))
    inverse = torch.empty_like(back)
    inverse[back] = torch.arange(back.numel())  # global row -> position in user order
    inverse = inverse[:frame.height]  # the context's rows get no history of their own
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def put(name: str, values: torch.Tensor, lengths: torch.Tensor) -> None:
        v, l = gather_jagged(values, offsets_from_lengths(lengths), inverse)
        out[name] = (v, offsets_from_lengths(l))

    if wanted["history"] is not None:
        items, _, lengths = user_histories(u, t, i, r, wanted["history"], contributes)
        put("history", items, lengths)
    if wanted["history_long"] is not None:
        items, scores, lengths = user_histories(u, t, i, r, wanted["history_long"], contributes)
        put("history_long", items, lengths)
        threshold = like_min if (rated and like_min is not None) else 0.5
        if "liked" in spec.derived:
            put("history_liked", *filter_jagged(items, lengths, scores >= threshold))
        if "disliked" in spec.derived:
            put("history_disliked", *filter_jagged(items, lengths, scores < threshold))
        if "rated_history" in spec.derived and rated:
            put("history_long_rating", torch.round(scores).long(), lengths)
    return out


def _layout(spec: DataSpec, jagged: dict[str, Any]) -> FeatureLayout:
    student = ["user_id", "item_id"] + (["history"] if "history" in jagged else []) + [m.name for m in spec.multi_valued] + [c.name for c in spec.categorical]
    extra = [f for f in ("history_long", "history_liked", "history_disliked") if f in jagged]
    sequence = ["item_id", "history_long"] + (["history_long_rating"] if "history_long_rating" in jagged else []) if "history_long" in jagged else []
    dropped: dict[str, list[str]] = {}
    wanted_extra = ["history_long", "history_liked", "history_disliked"]
    missing = [f for f in wanted_extra if f not in jagged]
    if missing:
        dropped["expert_extra"] = missing
    if "history_long" in jagged and "history_long_rating" not in jagged:
        dropped["sequence"] = ["history_long_rating"]
    tables = {f: ITEM_TABLE for f in ("item_id", "history", "history_long", "history_liked", "history_disliked")}
    return FeatureLayout(student=student, expert_extra=extra, sequence=sequence, tables=tables,
                         scalar=["user_id", "item_id"] + [c.name for c in spec.categorical], dropped=dropped)
