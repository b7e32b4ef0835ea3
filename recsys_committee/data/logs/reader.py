"""Read what a data spec names: the interactions (parquet, csv with any separator, RecBole atomic
files; a path or a glob) joined with the optional user / item side tables, checked.

Why every check here: a mistyped column or a label that is not 0/1 becomes a silent wrong
embedding lookup hours later on a cluster. Each fails with one error naming the file, the
column and the spec key, before any feature is built.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Optional

import polars as pl

from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.data.logs.spec import DataSpec


def _files(pattern: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
    if not paths or not all(p.is_file() for p in paths):
        missing = [str(p) for p in paths if not p.is_file()] or [pattern]
        raise DataValidationError(f"{missing[0]}: file not found")
    return paths


def read_frame(pattern: str, separator: str = ",") -> pl.DataFrame:
    """One table from a file or glob. ``.parquet``: parquet; RecBole atomic files (``.inter``,
    ``.user``, ``.item``): tab-separated with ``name:type`` headers; anything else: csv."""
    frames = []
    for path in _files(pattern):
        try:
            if path.suffix == ".parquet":
                frame = pl.read_parquet(path)
            elif path.suffix in (".inter", ".user", ".item"):
                frame = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
                frame = frame.rename({c: c.split(":", 1)[0] for c in frame.columns})
            else:
                frame = pl.read_csv(path, separator=separator, infer_schema_length=10_000)
        except DataValidationError:
            raise
        except Exception as exc:  # polars raises several types for corrupt or foreign files
            raise DataValidationError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc
        frames.append(frame)
    try:
        return pl.concat(frames, how="vertical_relaxed")
    except Exception as exc:
        raise DataValidationError(f"{pattern}: the files do not share one schema ({exc})") from exc


def _numeric(series: pl.Series, where: str) -> pl.Series:
    """A numeric view of a column (strings parsed; an unparsable value is an error naming it)."""
    if series.dtype.is_numeric() or series.dtype == pl.Boolean:
        return series.cast(pl.Float64)
    text = series.cast(pl.String).str.strip_chars().replace("", None)
    cast = text.cast(pl.Float64, strict=False)
    bad = text.filter(cast.is_null() & text.is_not_null()).head(3).to_list()
    if bad:
        raise DataValidationError(f"{where} must be numeric, found values like {bad}")
    return cast


def _side_table(path: str, key: str, spec: DataSpec, what: str) -> pl.DataFrame:
    table = read_frame(path, spec.separator)
    if key not in table.columns:
        raise DataValidationError(f"{path}: the {what} table has no column '{key}' (columns.{what[:-1] if what.endswith('s') else what}); found {table.columns}")
    dup = table.filter(pl.col(key).is_duplicated())
    if dup.height:
        raise DataValidationError(f"{path}: key column '{key}' is duplicated ({dup.height} rows, e.g. {dup[key].head(3).to_list()}): a side table has one row per key")
    return table


ORDER_TIEBREAK = "__src"  # the row's position in the source files: a stable row id and the last sort key


def read_rows(spec: DataSpec, require_label: bool = True) -> pl.DataFrame:
    """The interactions joined with the side tables, every spec column present and typed: the
    user/item keys as given, ``time`` as Int64, ``label`` as Float32 0/1, dense columns Float64,
    sorted by time (then user, item, source row), cut to ``max_rows``. ``__src`` keeps each
    row's position in the source files (the out-of-core path's row id)."""
    rows = read_frame(spec.interactions, spec.separator)
    if rows.height == 0:
        raise DataValidationError(f"{spec.interactions}: no rows")
    rows = rows.with_row_index(ORDER_TIEBREAK).with_columns(pl.col(ORDER_TIEBREAK).cast(pl.Int64))
    rows = check_rows(rows, spec, side_tables(spec), require_label)
    rows = rows.sort(sort_order(spec), maintain_order=True)
    if spec.max_rows is not None:
        rows = rows.head(int(spec.max_rows))
    return rows


def sort_order(spec: DataSpec) -> list[str]:
    """The global row order every path uses: time, user, item, then the source row."""
    return [c for c in (spec.time, spec.user, spec.item) if c] + [ORDER_TIEBREAK]


def side_tables(spec: DataSpec) -> dict[str, tuple[str, str, pl.DataFrame]]:
    """The spec's side tables, read and checked once: what -> (path, key column, table)."""
    out = {}
    for side, key, what in ((spec.users, spec.user, "users"), (spec.items, spec.item, "items")):
        if side is not None:
            out[what] = (side, key, _side_table(side, key, spec, what))
    return out


def check_rows(rows: pl.DataFrame, spec: DataSpec, sides: dict[str, tuple[str, str, pl.DataFrame]], require_label: bool = True) -> pl.DataFrame:
    """Join the side tables onto ``rows`` (any slice of the interactions) and check and type every
    spec column; the out-of-core path calls this chunk by chunk."""
    src = spec.interactions
    for key, column in (("columns.user", spec.user), ("columns.item", spec.item)):
        if column not in rows.columns:
            raise DataValidationError(f"{src}: no column '{column}' ({spec.where(key)}); found {rows.columns}")
    rows = rows.with_columns(pl.col(spec.user).cast(pl.String).str.strip_chars().alias(spec.user) if rows[spec.user].dtype == pl.String else pl.col(spec.user),
                             pl.col(spec.item).cast(pl.String).str.strip_chars().alias(spec.item) if rows[spec.item].dtype == pl.String else pl.col(spec.item))
    for side, key, table in sides.values():
        if table[key].dtype != rows[key].dtype:
            try:
                table = table.with_columns(pl.col(key).cast(rows[key].dtype))
            except Exception as exc:
                raise DataValidationError(f"{side}: key column '{key}' is {table[key].dtype}, the interactions' is {rows[key].dtype}") from exc
        unknown = rows.filter(~pl.col(key).is_in(table[key].implode()))[key]
        if unknown.len():  # an id the side table does not know: out of range, not silently featureless
            raise DataValidationError(f"{src}: column '{key}' has {unknown.len()} id(s) not in {side}, e.g. {unknown.unique().sort().head(3).to_list()}")
        clash = [c for c in table.columns if c != key and c in rows.columns]
        rows = rows.join(table.drop(clash), on=key, how="left")
    has_label = spec.label.column in rows.columns
    needed = {spec.where("columns.label"): spec.label.column} if (require_label or has_label) else {}
    if spec.time:
        needed[spec.where("columns.time")] = spec.time
    if spec.rating:
        needed[spec.where("columns.rating")] = spec.rating
    for c in spec.categorical:
        needed[spec.where(f"features.categorical '{c.name}'")] = c.column
    for m in spec.multi_valued:
        needed[spec.where(f"features.multi_valued '{m.name}'")] = m.column
    for d in spec.dense:
        needed[spec.where(f"features.dense '{d}'")] = d
    sources = " + ".join(p for p in (spec.interactions, spec.users, spec.items) if p)
    for key, column in needed.items():
        if column not in rows.columns:
            raise DataValidationError(f"{sources}: no column '{column}' ({key}); found {rows.columns}")
    for key, column in (("columns.user", spec.user), ("columns.item", spec.item)):
        if rows[column].null_count():
            raise DataValidationError(f"{src}: column '{column}' ({spec.where(key)}) has {rows[column].null_count()} empty value(s)")
    if spec.ids == "raw":
        for key, column in (("columns.user", spec.user), ("columns.item", spec.item)):
            ids = _numeric(rows[column], f"{src}: column '{column}' ({spec.where(key)}, ids: raw)")
            if ids.min() < 1 or (ids != ids.round()).any():
                raise DataValidationError(f"{src}: column '{column}' ({spec.where(key)}) must hold integer ids >= 1 with ids: raw (0 is the padding id)")
            rows = rows.with_columns(ids.cast(pl.Int64).alias(column))
    if spec.time:
        t = rows[spec.time]
        if t.null_count():
            raise DataValidationError(f"{src}: column '{spec.time}' ({spec.where('columns.time')}) has {t.null_count()} null value(s)")
        if t.dtype in (pl.Datetime, pl.Date):
            t = t.cast(pl.Datetime("ms")).dt.epoch("s")
        else:
            t = _numeric(t, f"{src}: column '{spec.time}' ({spec.where('columns.time')})").cast(pl.Int64)
        rows = rows.with_columns(t.alias(spec.time))
    if not has_label and not require_label:  # rows to score without outcomes
        rows = rows.with_columns(pl.lit(0.0, dtype=pl.Float32).alias("__label"))
        label_src = None
    else:
        label_src = _numeric(rows[spec.label.column], f"{src}: column '{spec.label.column}' ({spec.where('columns.label')})")
    if label_src is None:
        pass
    elif label_src.null_count():
        raise DataValidationError(f"{src}: label column '{spec.label.column}' has {label_src.null_count()} empty value(s)")
    elif spec.label.min is None:
        bad = label_src.filter(~label_src.is_in([0.0, 1.0])).unique().head(3).to_list()
        if bad:
            raise DataValidationError(f"{src}: label column '{spec.label.column}' must be 0/1, found values like {bad} "
                                      f"(for a rating or a count use label: {{from: {spec.label.column}, min: THRESHOLD}})")
        rows = rows.with_columns(label_src.cast(pl.Float32).alias("__label"))
    else:
        rows = rows.with_columns((label_src >= spec.label.min).cast(pl.Float32).alias("__label"))
    if spec.rating:
        rows = rows.with_columns(_numeric(rows[spec.rating], f"{src}: column '{spec.rating}' ({spec.where('columns.rating')})").alias(spec.rating))
        if rows[spec.rating].null_count() or rows[spec.rating].is_nan().any():
            raise DataValidationError(f"{src}: rating column '{spec.rating}' has empty or NaN values")
    for d in spec.dense:
        rows = rows.with_columns(_numeric(rows[d], f"{sources}: dense column '{d}' ({spec.where('features.dense')})").alias(d))
    return rows


def side_table(path: Optional[str], spec: DataSpec) -> Optional[pl.DataFrame]:
    """A side table as read (the LM teacher's texts read titles and profiles from them)."""
    return None if path is None else read_frame(path, spec.separator)
