"""Read and validate interaction/user/item tables (RecBole atomic files or parquet).

Why: a silently mis-typed column or an out-of-range id turns into a wrong embedding lookup
hours later on a cluster. Every check here fails with one error that names the file and the
column, before any model sees the data.
"""

from __future__ import annotations

from recsys_committee.errors import UserError

from dataclasses import dataclass
from pathlib import Path

import polars as pl


class DataValidationError(UserError, ValueError):
    """The input data is malformed; the message names the file and the column."""


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


@dataclass
class RawTables:
    inter: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame


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
