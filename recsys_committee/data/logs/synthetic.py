"""Synthetic interactions at scale, with MovieLens' schema: Zipf users and items, parquet out.

Why: MovieLens-100K is too small to measure throughput, sharding or multi-worker scaling. This
generator writes any number of rows (10M+) in fixed-size chunks, so memory stays bounded by
the chunk, and the files read back through the same validated reader
(``load_movielens(root, name)`` reads them through the MovieLens data spec, ``.parquet`` siblings first). It is for speed
and scale only: the labels carry a planted user x item signal, not real preferences, so
quality claims come from the real sets.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from recsys_committee.files import atomic_path

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
OCCUPATIONS = ["administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer"]


# The words the side tables describe the planted factors with: dimension d of an item's quality
# (of a user's taste) below -WORD_THRESHOLD reads as FACTOR_WORDS[d][0], above +WORD_THRESHOLD as
# FACTOR_WORDS[d][1]. A rating grows with taste . quality, so a user who "likes thrilling" rates
# "thrilling" items higher: the signal an LM reading the texts can find.
FACTOR_WORDS = (("calm", "thrilling"), ("light", "dark"), ("classic", "modern"), ("simple", "complex"))
WORD_THRESHOLD = 0.5


@dataclass(frozen=True)
class SyntheticSpec:
    rows: int = 10_000_000
    users: int = 1_000_000
    items: int = 100_000
    user_zipf: float = 1.1  # popularity exponent: rank r is drawn with weight r^-a
    item_zipf: float = 1.2
    chunk_rows: int = 1_000_000
    seed: int = 0
    start_timestamp: int = 880_000_000
    seconds_per_row: float = 0.5


def zipf_sampler(n: int, exponent: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(cdf over ranks, a random permutation rank -> id) so popular ids are not just the small ones."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf, rng.permutation(n) + 1


def _draw(cdf: np.ndarray, ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return ids[np.searchsorted(cdf, rng.random(size), side="right").clip(max=len(ids) - 1)]


@dataclass
class Planted:
    """The generator's hidden state: Zipf samplers of users and items, and the planted factors
    (row = id; row 0 unused). ``rng`` continues the stream the interactions are drawn from."""

    rng: np.random.Generator
    user_cdf: np.ndarray
    user_ids: np.ndarray
    item_cdf: np.ndarray
    item_ids: np.ndarray
    taste: np.ndarray  # [users + 1, 4]
    quality: np.ndarray  # [items + 1, 4]


def planted(spec: SyntheticSpec) -> Planted:
    """Drawn in a fixed order from ``spec.seed``: the interactions and the side tables' words
    read the same factors."""
    rng = np.random.default_rng(spec.seed)
    user_cdf, user_ids = zipf_sampler(spec.users, spec.user_zipf, rng)
    item_cdf, item_ids = zipf_sampler(spec.items, spec.item_zipf, rng)
    taste = rng.normal(0, 1, (spec.users + 1, 4)).astype(np.float32)
    quality = rng.normal(0, 1, (spec.items + 1, 4)).astype(np.float32)
    return Planted(rng, user_cdf, user_ids, item_cdf, item_ids, taste, quality)


def factor_words(factors: np.ndarray) -> pl.Series:
    """One text per row of ``factors`` [n, 4]: the FACTOR_WORDS of its dimensions beyond
    +-WORD_THRESHOLD, in dimension order ("thrilling dark"); "plain" when none is."""
    frame = pl.DataFrame({f"d{d}": factors[:, d] for d in range(factors.shape[1])})
    words = [pl.when(pl.col(f"d{d}") > WORD_THRESHOLD).then(pl.lit(high)).when(pl.col(f"d{d}") < -WORD_THRESHOLD).then(pl.lit(low))
             for d, (low, high) in enumerate(FACTOR_WORDS)]
    text = frame.select(pl.concat_list(words).list.drop_nulls().list.join(" ").alias("words"))["words"]
    return text.replace("", "plain")


def user_table(spec: SyntheticSpec, rng: np.random.Generator, taste: np.ndarray | None = None) -> pl.DataFrame:
    """Profiles, and (given the planted ``taste``) ``likes``: the words of the user's taste."""
    n = spec.users
    frame = pl.DataFrame({
        "user_id": np.arange(1, n + 1),
        "age": rng.integers(7, 74, n),
        "gender": np.where(rng.random(n) < 0.7, "M", "F"),
        "occupation": np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), n)],
        "zip_code": [f"{z:05d}" for z in rng.integers(0, 100_000, n)],
    })
    return frame if taste is None else frame.with_columns(factor_words(taste[1:]).alias("likes"))


def item_table(spec: SyntheticSpec, rng: np.random.Generator, quality: np.ndarray | None = None) -> pl.DataFrame:
    """Titles, genres, release years, and (given the planted ``quality``) ``tags``: its words."""
    n = spec.items
    first = rng.integers(0, len(GENRES), n)
    second = rng.integers(0, len(GENRES), n)
    genres = [GENRES[a] if a == b else f"{GENRES[a]} {GENRES[b]}" for a, b in zip(first, second)]
    frame = pl.DataFrame({
        "item_id": np.arange(1, n + 1),
        "movie_title": [f"Movie {i}" for i in range(1, n + 1)],
        "release_year": rng.integers(1930, 2000, n).astype(str),
        "class": genres,
    })
    return frame if quality is None else frame.with_columns(factor_words(quality[1:]).alias("tags"))


def interaction_chunks(spec: SyntheticSpec, state: Planted | None = None) -> Iterator[pl.DataFrame]:
    """Chunks in time order; ratings = planted user taste x item quality + noise, 1..5."""
    state = state or planted(spec)
    rng, taste, quality = state.rng, state.taste, state.quality
    user_cdf, user_ids, item_cdf, item_ids = state.user_cdf, state.user_ids, state.item_cdf, state.item_ids
    for start in range(0, spec.rows, spec.chunk_rows):
        n = min(spec.chunk_rows, spec.rows - start)
        users = _draw(user_cdf, user_ids, n, rng)
        items = _draw(item_cdf, item_ids, n, rng)
        score = (taste[users] * quality[items]).sum(1) / 2 + rng.normal(0, 0.7, n)
        rating = np.clip(np.round(3.5 + score), 1, 5)
        ts = spec.start_timestamp + ((start + np.arange(n)) * spec.seconds_per_row).astype(np.int64)
        frame = pl.DataFrame({"user_id": users, "item_id": items, "rating": rating, "timestamp": ts})
        # the reader refuses duplicate (user, item, timestamp) rows, as for real data
        yield frame.unique(subset=["user_id", "item_id", "timestamp"], keep="first", maintain_order=True)


def write_synthetic(root: str | Path, spec: SyntheticSpec, name: str = "ml-synth") -> Path:
    """Write ``<root>/<name>.{user,item}.parquet`` and the interactions chunk by chunk as row
    groups of ``<name>.inter.parquet`` (memory bounded by one chunk)."""
    import pyarrow.parquet as pq

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = planted(spec)
    rng = np.random.default_rng(spec.seed + 1)
    user_table(spec, rng, state.taste).write_parquet(root / f"{name}.user.parquet")
    item_table(spec, rng, state.quality).write_parquet(root / f"{name}.item.parquet")
    target = root / f"{name}.inter.parquet"
    with atomic_path(target) as partial:
        writer = None
        try:
            for chunk in interaction_chunks(spec, state):
                table = chunk.to_arrow()
                writer = writer or pq.ParquetWriter(partial, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return root


SPEC_TEMPLATE = """# Synthetic Zipf interactions (recsys_committee.data.logs.synthetic): for speed and scale only.
source:
  interactions: {root}/{name}.inter.parquet
  items: {root}/{name}.item.parquet
ids: raw
columns: {{user: user_id, item: item_id, time: timestamp, label: {{from: rating, min: 4}}, rating: rating}}
features:
  multi_valued:
    genres: {{column: class, separator: " "}}
  categorical:
    - year_bucket: {{column: release_year, bins: [1940, 1950, 1960, 1970, 1980, 1990]}}
  derived:
    history: {{length: 20}}
    user_stats: {{prior: 3.5}}
    item_stats: {{prior: 3.5}}
split: {{kind: temporal, fractions: [0.8, 0.1, 0.1]}}
"""


# What the text spec adds: the users table (for ``likes``) and the LM teacher's templates.
TEXT_SPEC_LINES = """text:  # the LM teacher's texts: the side tables' words for the planted factors
  item: "{{movie_title}} - {{class}} - {{tags}}"
  user: "likes {{likes}}"
"""


def write_spec(root: str | Path, name: str = "ml-synth", text: bool = False) -> Path:
    """A data spec over the written files: the student's features (ids, a 20-item history, genres,
    a release-period bucket, past-only user / item stats), so the scale runs go through the same
    spec -> prepare -> stream path as a user's data. ``text``: ``<name>-text.yaml``, the same
    spec with the users table joined and ``text:`` templates over titles, genres, tags and the
    users' ``likes`` (what an LM teacher reads)."""
    root = Path(root).resolve()
    body = SPEC_TEMPLATE.format(root=root, name=name)
    if not text:
        path = root / f"{name}.yaml"
        path.write_text(body)
        return path
    body = body.replace(f"  items: {root}/{name}.item.parquet\n", f"  items: {root}/{name}.item.parquet\n  users: {root}/{name}.user.parquet\n")
    path = root / f"{name}-text.yaml"
    path.write_text(body + TEXT_SPEC_LINES.format())
    return path


def stream_batches(path: str | Path, batch_rows: int) -> Iterator[pl.DataFrame]:
    """Read a parquet file back in ``batch_rows`` slices without loading it whole."""
    import pyarrow.parquet as pq

    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        yield pl.from_arrow(record_batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/synthetic")
    for field, default in SyntheticSpec.__dataclass_fields__.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default.default), default=default.default)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(**{f: getattr(args, f) for f in SyntheticSpec.__dataclass_fields__})
    print(f"wrote {write_synthetic(args.out, spec)}; data specs {write_spec(args.out)} and {write_spec(args.out, text=True)} (with LM texts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
