"""What the LM teacher reads: one short, deterministic text per example.

Why this shape: MiniLM costs ~27 ms per example on this CPU at 64 tokens, so the text must stay
short, and truncation must only ever cut the least useful part. The candidate comes first, then
the profile (and the optional signals), then the recent history, most recent first, so the
tokenizer's truncation drops the OLDEST titles and never the candidate. The history is the
student's own no-leakage ``history`` feature (items rated strictly before the row's timestamp);
the row's own rating never appears. Rendering is columnar (polars joins and string ops, no
per-row Python formatting beyond one list join), so 100k rows render in about a second.

Template ``v1``, e.g. (``include_ratings: true``)::

    movie: Toy Story (1995) - animation children comedy. user: 24 male technician. recent:
    GoldenEye - action adventure thriller 3/5; Four Rooms - thriller 4/5.

Options that give the LM the collaborative ("ID") signal docs/METHOD.md allows when text alone does
not beat the student: ``include_ratings`` (the user's past ratings of the listed titles),
``include_stats`` (past-only mean rating and rating count of the movie and of the user: the
same no-leakage statistics the student reads as dense features) and ``id_tokens`` (``user 259
movie 255``: ids as words; useful only when the encoder is fine-tuned).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch

from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.features.jagged import gather_ranges

TEMPLATE_VERSION = "v1"
ARTICLES = ("The", "A", "An")  # "Usual Suspects, The" -> "The Usual Suspects"
# one word piece each instead of three ("children ' s", "sci - fi", "film - noir")
GENRE_WORDS = {"children's": "children", "sci-fi": "scifi", "film-noir": "noir"}


@dataclass(frozen=True)
class TextOptions:
    history_n: int = 5  # the most recent past titles to list (at most data.history_len exist)
    include_ratings: bool = False  # "... 4/5" after each past title
    include_stats: bool = False  # past-only mean rating and count of the movie and the user
    id_tokens: bool = False  # "user 259 movie 255"

    def __post_init__(self) -> None:
        if not 0 <= self.history_n <= 50:
            raise ValueError(f"history_n must be in [0, 50], got {self.history_n}")

    def as_dict(self) -> dict:
        """Everything that decides the text (part of the teacher-cache key)."""
        return {"template": TEMPLATE_VERSION, **asdict(self)}


def _title(col: pl.Expr) -> pl.Expr:
    """'Usual Suspects, The' -> 'The Usual Suspects'; missing -> 'unknown title'."""
    pattern = rf"^(.*), ({'|'.join(ARTICLES)})$"
    return col.fill_null("unknown title").str.strip_chars().str.replace(pattern, "${2} ${1}")


def item_strings(items: pl.DataFrame) -> pl.DataFrame:
    """item_id -> ``title`` (with a valid year: "Toy Story (1995)"), ``short`` (no year) and
    ``genres`` ("animation children comedy", "unknown genre" when none)."""
    year = items["release_year"].cast(pl.String).str.strip_chars()
    genres = (
        items["class"].fill_null("").str.to_lowercase().str.split(" ")
        .list.eval(pl.element().filter(pl.element() != "").replace(GENRE_WORDS)).list.join(" ")
    )
    frame = pl.DataFrame({"item_id": items["item_id"], "movie_title": items["movie_title"], "year": year, "g": genres})
    return frame.select(
        "item_id",
        short=_title(pl.col("movie_title")),
        title=pl.when(pl.col("year").str.contains(r"^\d{4}$"))
        .then(pl.concat_str(_title(pl.col("movie_title")), pl.lit(" ("), pl.col("year"), pl.lit(")")))
        .otherwise(_title(pl.col("movie_title"))),
        genres=pl.when(pl.col("g") == "").then(pl.lit("unknown genre")).otherwise(pl.col("g")),
    )


def user_strings(users: pl.DataFrame) -> pl.DataFrame:
    """user_id -> ``profile`` ("24 male technician")."""
    gender = pl.col("gender").str.to_uppercase().replace_strict({"M": "male", "F": "female"}, default="person")
    return users.select(
        "user_id",
        profile=pl.concat_str(
            pl.col("age").cast(pl.String), pl.lit(" "), gender, pl.lit(" "),
            pl.col("occupation").fill_null("unknown occupation").str.to_lowercase(),
        ),
    )


def _last_n(values: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last ``n`` values of each row of a jagged column -> (row index, recency rank, value);
    rank 0 = the most recent (the jagged histories keep the most recent last)."""
    ends = offsets[rows + 1]
    starts = torch.maximum(offsets[rows], ends - n)
    lengths = ends - starts
    flat = gather_ranges(torch.arange(values.numel()), starts, lengths)
    segment = torch.repeat_interleave(torch.arange(rows.numel()), lengths)
    seg_start = torch.cumsum(lengths, 0) - lengths
    rank = lengths[segment] - 1 - (torch.arange(flat.numel()) - seg_start[segment])
    return segment, rank, flat


def render_texts(
    table: FeatureTable,
    users: pl.DataFrame,
    items: pl.DataFrame,
    options: TextOptions = TextOptions(),
    rows: torch.Tensor | None = None,
) -> list[str]:
    """One text per row of ``table`` (or per row in ``rows``), in that order."""
    rows = torch.arange(table.num_rows) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    take = rows.numpy()
    base = table.frame.select(
        "user_id", "item_id", "user_prev_log_count", "user_prev_mean_rating", "item_prev_log_count", "item_prev_mean_rating"
    )[take].with_row_index("_row")
    istr, ustr = item_strings(items), user_strings(users)

    history = _history_strings(table, istr, options, rows)
    frame = (
        base.join(istr, on="item_id", how="left")
        .join(ustr, on="user_id", how="left")
        .join(history, on="_row", how="left")
        .sort("_row")
    )
    parts = [
        pl.lit("movie: "), pl.col("title").fill_null("unknown title"), pl.lit(" - "), pl.col("genres").fill_null("unknown genre"),
        pl.lit(". user: "), pl.col("profile").fill_null("unknown user"), pl.lit("."),
    ]
    if options.id_tokens:
        parts += [pl.lit(" ids: user "), pl.col("user_id").cast(pl.String), pl.lit(" movie "), pl.col("item_id").cast(pl.String), pl.lit(".")]
    if options.include_stats:
        parts += [pl.lit(" stats: movie "), _stats("item"), pl.lit(", user "), _stats("user"), pl.lit(".")]
    if options.history_n:
        parts += [pl.lit(" recent: "), pl.col("recent").fill_null("none"), pl.lit(".")]
    return frame.select(text=pl.concat_str(parts))["text"].to_list()


def _stats(prefix: str) -> pl.Expr:
    """'3.9 from 120' (smoothed past mean rating, past count) from the past-only features."""
    count = pl.col(f"{prefix}_prev_log_count").exp().sub(1.0).round(0).cast(pl.Int64)
    mean = pl.col(f"{prefix}_prev_mean_rating").round(1)
    return pl.concat_str(mean.cast(pl.String), pl.lit(" from "), count.cast(pl.String))


def _history_strings(table: FeatureTable, istr: pl.DataFrame, options: TextOptions, rows: torch.Tensor) -> pl.DataFrame:
    """_row -> ``recent`` ("GoldenEye - action 3/5; ..."), most recent first; rows without a
    history are absent (rendered as "none")."""
    if options.history_n == 0:
        return pl.DataFrame({"_row": pl.Series([], dtype=pl.UInt32), "recent": pl.Series([], dtype=pl.String)})
    values, offsets = table.jagged["history"]  # the student's own history (most recent last)
    segment, rank, flat = _last_n(values, offsets, rows, options.history_n)
    hist = pl.DataFrame({"_row": segment.numpy().astype(np.uint32), "rank": rank.numpy(), "item_id": values[flat].numpy()})
    if options.include_ratings:
        # history_long (+ its ratings) holds the same items in the same order over a longer
        # window: the entry ``rank`` places before the end is the same item in both.
        long_values, long_offsets = table.jagged["history_long"]
        long_ratings, _ = table.jagged["history_long_rating"]
        at = long_offsets[rows + 1][segment] - 1 - rank
        if at.numel() and not torch.equal(long_values[at], values[flat]):
            raise ValueError("history and history_long disagree on the recent items: cannot attach past ratings")
        hist = hist.with_columns(r=pl.Series(long_ratings[at].numpy()))
    entry = [pl.col("short"), pl.lit(" - "), pl.col("genres")]
    if options.include_ratings:
        entry += [pl.lit(" "), pl.col("r").cast(pl.String), pl.lit("/5")]
    return (
        hist.join(istr, on="item_id", how="left")
        .with_columns(short=pl.col("short").fill_null("unknown title"), genres=pl.col("genres").fill_null("unknown genre"))
        .sort(["_row", "rank"])
        .group_by("_row", maintain_order=True)
        .agg(recent=pl.concat_str(entry).str.join("; "))
    )

