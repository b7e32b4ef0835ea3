"""LM texts from a data spec's ``text:`` templates: one text per row, over the user's own columns.

Why templates: the LM teacher must read any dataset, not only MovieLens' titles and profiles.
``text: {item: "{title} - {tags}", user: "{country} {device}"}`` renders the candidate, the
user and the most recent past items (the student's own past-only ``history``, most recent first,
so truncation drops the oldest) as

    item: <item template>. user: <user template>. recent: <item template>; <item template>.

A placeholder names any column of the joined rows (interactions + side tables); a null renders
as "unknown". Columnar (polars string ops): no per-row Python formatting.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys_committee.data.features.table import FeatureTable
from recsys_committee.errors import UserError
from recsys_committee.models.lm.text import _last_n

PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


class TemplateError(UserError, ValueError):
    """A text template names a column the data does not have."""


def template_expr(template: str, columns: list[str], where: str) -> pl.Expr:
    """``"{title} ({year})"`` -> a polars string expression over those columns."""
    parts: list[pl.Expr] = []
    pos = 0
    for match in PLACEHOLDER.finditer(template):
        if match.start() > pos:
            parts.append(pl.lit(template[pos:match.start()]))
        column = match.group(1)
        if column not in columns:
            raise TemplateError(f"{where}: the template names column '{column}', which the data does not have; columns: {columns}")
        parts.append(pl.col(column).cast(pl.String).fill_null("unknown"))
        pos = match.end()
    if pos < len(template):
        parts.append(pl.lit(template[pos:]))
    return pl.concat_str(parts) if parts else pl.lit("")


def render_template_texts(table: FeatureTable, rows: pl.DataFrame, text: dict[str, str], history_n: int, where: str = "text") -> list[str]:
    """One text per row of ``table``; ``rows`` are the joined source rows in the same order."""
    if rows.height != table.num_rows:
        raise ValueError(f"{rows.height} source rows for {table.num_rows} feature rows")
    parts = template_parts(rows, text, where)
    item_ids = table.frame["item_id"]
    # the text of each item id as last seen in the data (item columns do not change per row)
    item_text = pl.DataFrame({"item_id": item_ids, "item": parts["item"]}).unique(subset="item_id", keep="last")
    history = table.jagged.get("history")
    return assemble_template_texts(item_ids, parts, item_text, history, history_n)


def template_parts(rows: pl.DataFrame, text: dict[str, str], where: str = "text") -> pl.DataFrame:
    """Each row's rendered ``item`` (and ``user``) template: the part of its text that its own
    columns decide (what a prepared dataset stores per row)."""
    if "item" not in text:
        raise TemplateError(f"{where}: needs an 'item' template")
    exprs = [template_expr(text["item"], rows.columns, f"{where}.item").alias("item")]
    if "user" in text:
        exprs.append(template_expr(text["user"], rows.columns, f"{where}.user").alias("user"))
    return rows.select(exprs)


def template_columns(text: dict[str, str]) -> list[str]:
    """The columns the templates name (what ``prepare`` must keep to render them)."""
    return list(dict.fromkeys(m.group(1) for k in ("item", "user") if k in text for m in PLACEHOLDER.finditer(text[k])))


def assemble_template_texts(item_ids: pl.Series, parts: pl.DataFrame, item_text: pl.DataFrame,
                            history: tuple[torch.Tensor, torch.Tensor] | None, history_n: int) -> list[str]:
    """``item: <item>. user: <user>. recent: <item>; <item>.`` per row, from its rendered parts,
    its ``history`` (values, offsets; most recent last) and ``item_text`` (item_id -> item: the
    text a past item is listed with)."""
    frame = pl.DataFrame({"_row": np.arange(parts.height, dtype=np.uint32), "item": parts["item"], "item_id": item_ids})
    text = [pl.lit("item: "), pl.col("item")]
    if "user" in parts.columns:
        frame = frame.with_columns(parts["user"])
        text += [pl.lit(". user: "), pl.col("user")]
    if history_n and history is not None:
        values, offsets = history
        segment, rank, flat = _last_n(values, offsets, torch.arange(parts.height), history_n)
        hist = pl.DataFrame({"_row": segment.numpy().astype(np.uint32), "rank": rank.numpy(), "item_id": values[flat].numpy()})
        recent = (hist.join(item_text.select("item_id", "item"), on="item_id", how="left").with_columns(pl.col("item").fill_null("unknown item"))
                  .sort(["_row", "rank"]).group_by("_row", maintain_order=True).agg(recent=pl.col("item").str.join("; ")))
        frame = frame.join(recent, on="_row", how="left").sort("_row")
        text += [pl.lit(". recent: "), pl.col("recent").fill_null("none")]
    text.append(pl.lit("."))
    return frame.select(text=pl.concat_str(text))["text"].to_list()


def spec_texts(data: Any) -> dict[str, str] | None:
    """The spec's templates, or None when the data uses the built-in MovieLens texts
    (``text: {preset: movielens}`` or the built-in reader)."""
    spec = getattr(data, "spec", None)
    if spec is None or spec.text.get("preset") == "movielens":
        return None
    return {k: v for k, v in spec.text.items() if k in ("item", "user")}
