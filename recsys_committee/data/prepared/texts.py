"""The LM teacher's texts over a prepared dataset: what ``prepare`` keeps, and the render at read.

Why rendered at read and not stored whole: a text lists the user's recent items, so a stored text
would repeat each title ``history_n`` times over the log and fix ``history_n`` at prepare time.
``prepare`` keeps what a row's own columns decide and small keyed tables, and a row group's texts
are rendered from those and the row's own ``history`` by the same code as in memory
(``models/lm/text.py``, ``models/lm/templates.py``), so both paths give the same text:

* templates (``text: {item: ..., user: ...}``): each row's rendered ``item`` / ``user`` parts as
  the shard columns ``text_item`` / ``text_user`` (rendered at ingest, where the side tables are
  joined), and ``text/items.parquet``: the text each item is listed with in a history, the item
  part of its last row in the global row order (what the in-memory path takes);
* ``text: {preset: movielens}``: the users and items side tables (``text/users.parquet``,
  ``text/items.parquet``), read by the preset from the shard's ids, statistics and histories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import torch

from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.logs.reader import ORDER_TIEBREAK
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.files import atomic_path, file_sha256

TEXT_DIR = "text"
STAGE_DIR = "text_stage"  # per user bucket: the last row of each item it saw (merged into text/items.parquet)
PARTS = {"item": "text_item", "user": "text_user"}  # template part -> shard column
PRESET_COLUMNS = ["user_id", "item_id", "user_prev_log_count", "user_prev_mean_rating", "item_prev_log_count", "item_prev_mean_rating"]
PRESET_JAGGED = ["history", "history_long", "history_long_rating"]


def templates_of(spec: DataSpec) -> Optional[dict[str, str]]:
    """The spec's templates, or None (no ``text:``, or the MovieLens preset)."""
    if not spec.text or spec.text.get("preset") == "movielens":
        return None
    return {k: v for k, v in spec.text.items() if k in PARTS}


def text_columns(spec: DataSpec) -> list[str]:
    """The source columns the templates name: kept through the side-table join at ingest."""
    from recsys_committee.models.lm.templates import template_columns

    templates = templates_of(spec)
    return template_columns(templates) if templates else []


def row_parts(spec: DataSpec, rows: pl.DataFrame) -> list[pl.Series]:
    """The shard columns of ``rows``' rendered template parts (none without templates)."""
    from recsys_committee.models.lm.templates import template_parts

    templates = templates_of(spec)
    if templates is None:
        return []
    parts = template_parts(rows, templates, where=f"{spec.path}: text")
    return [parts[name].alias(PARTS[name]) for name in parts.columns]


def _write(frame: pl.DataFrame, path: Path) -> str:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return file_sha256(path)


def last_per_item(rows: pl.DataFrame) -> pl.DataFrame:
    """Each item's last row in the global row order (time, user, source row): the row whose
    item part a history lists the item with. One expression for a bucket's pieces and for the
    merge over buckets, so both cut ties alike."""
    return rows.sort(["__t", "__u", ORDER_TIEBREAK]).unique(subset="item_id", keep="last", maintain_order=True)


class LastItemTexts:
    """Per item, the item part of its last row seen so far in the global row order (time, user,
    item, source row), over one user bucket's pieces; ``merge_item_texts`` then takes the last
    over the buckets. Memory: one row per item of the bucket."""

    def __init__(self, spec: DataSpec) -> None:
        self.spec, self.rows = spec, None

    def add(self, item_ids: pl.Series, piece: pl.DataFrame) -> None:
        if PARTS["item"] not in piece.columns:
            return
        s = self.spec
        rows = pl.DataFrame({"item_id": item_ids.cast(pl.Int64), "item": piece[PARTS["item"]], "__t": piece[s.time], "__u": piece[s.user],
                             ORDER_TIEBREAK: piece[ORDER_TIEBREAK]})
        rows = rows if self.rows is None else pl.concat([self.rows, rows])
        self.rows = last_per_item(rows)

    def write(self, out: Path, ub: int) -> None:
        if self.rows is not None:
            _write(self.rows, out / STAGE_DIR / f"ub-{ub:05d}.parquet")


def finish_text(spec: DataSpec, out: Path) -> Optional[dict[str, Any]]:
    """Write ``text/`` once every user bucket is done; the manifest's ``text`` entry (what the
    texts are made of, with each file's sha256), None for a spec without ``text:``."""
    if not spec.text:
        return None
    if templates_of(spec) is None:  # the preset reads the side tables, keyed as in memory
        from recsys_committee.data.features.loading import keyed_side_tables
        from recsys_committee.data.logs.reader import side_table

        users, items = keyed_side_tables(spec, side_table(spec.users, spec), side_table(spec.items, spec))
        files = {name: _write(table, out / TEXT_DIR / f"{name}.parquet") for name, table in (("users", users), ("items", items))
                 if table is not None}
        return {"kind": "preset", "preset": spec.text["preset"], "files": files}
    staged = sorted((out / STAGE_DIR).glob("ub-*.parquet"))
    last = pl.concat([pl.read_parquet(f) for f in staged]) if staged else pl.DataFrame({"item_id": [], "item": []},
                                                                                         schema={"item_id": pl.Int64, "item": pl.String})
    if staged:
        last = last_per_item(last).select("item_id", "item")
    return {"kind": "templates", "templates": templates_of(spec), "files": {"items": _write(last.sort("item_id"), out / TEXT_DIR / "items.parquet")}}


def arrow_jagged(table: pa.Table, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A list column of Arrow rows as (values, offsets): the jagged layout a FeatureTable holds."""
    arr = table.column(name).combine_chunks()
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return torch.from_numpy(values), torch.from_numpy(offsets)


class PreparedTexts:
    """The texts of a prepared dataset's rows, a row group (or any Arrow slice of a shard) at a
    time. ``options``: the LM's ``TextOptions``."""

    def __init__(self, root: str | Path, manifest: dict[str, Any], options: Any) -> None:
        from recsys_committee.models.lm.encoder import LMDataError

        self.root, self.options, self.entry = Path(root), options, manifest.get("text")
        self.has_history = "history" in manifest["schema"]["jagged"]
        if not self.entry:
            raise LMDataError(f"{root}: this prepared dataset keeps no texts (its data spec has no text: block); "
                              "add text: to the spec and prepare it again")
        if self.entry["kind"] == "templates" and (options.include_ratings or options.include_stats or options.id_tokens):
            raise LMDataError("include_ratings / include_stats / id_tokens belong to the MovieLens texts (text: {preset: movielens}); "
                              "with text: templates put what the LM should read in the templates")
        read = lambda name: pl.read_parquet(self.root / TEXT_DIR / f"{name}.parquet") if name in self.entry["files"] else None  # noqa: E731
        self.users, self.items = read("users"), read("items")
        if self.entry["kind"] == "preset" and (self.users is None or self.items is None):
            raise LMDataError(f"{root}: text preset movielens needs the users and items tables (titles, genres, profiles)")

    @property
    def columns(self) -> list[str]:
        """The shard columns a render reads."""
        if self.entry["kind"] == "preset":
            return PRESET_COLUMNS + PRESET_JAGGED
        return ["item_id", *(["history"] if self.has_history else []), *[PARTS[k] for k in self.entry["templates"]]]

    def render(self, rows: pa.Table) -> list[str]:
        """One text per row of ``rows`` (shard columns), in order."""
        if self.entry["kind"] == "preset":
            from recsys_committee.models.lm.text import render_texts

            table = FeatureTable(frame=pl.from_arrow(rows.select(PRESET_COLUMNS)), jagged={n: arrow_jagged(rows, n) for n in PRESET_JAGGED},
                                 cardinalities={})
            return render_texts(table, self.users, self.items, self.options)
        from recsys_committee.models.lm.templates import assemble_template_texts

        parts = pl.DataFrame({k: pl.from_arrow(rows.column(PARTS[k])) for k in self.entry["templates"]})
        item_ids = pl.from_arrow(rows.column("item_id")).cast(pl.Int64)
        return assemble_template_texts(item_ids, parts, self.items, arrow_jagged(rows, "history") if "history" in rows.column_names else None,
                                       self.options.history_n)
