"""The data spec: a user's logs described in YAML, TorchRec-style, so no model names a column.

Why a declaration: recommender teams bring their own click logs (their column names, with or
without a user table, string or integer ids). The spec says where the rows are, which column is
the user, the item, the time and the label, which columns become features and how, and how to
split; the reader and featuriser (``reader.py``, ``featurize.py``) turn that into the features
every model takes. Unknown keys fail with the close matches, like the run config.

    source: {interactions: logs/*.parquet, users: users.csv, items: null, csv: {separator: ","}}
    columns: {user: userId, item: movieId, time: ts, label: clicked, rating: null}
    features:
      categorical: [country, {device: {buckets: 1000}}]
      multi_valued: {tags: "|"}
      dense: [price]
      derived: {history: {length: 20}}
    split: {kind: temporal, fractions: [0.8, 0.1, 0.1]}
    transfer:                       # rows without labels that distillation may learn from
      sampled: {per_row: 2}         # per train row, 2 items the user had not rated by then
      unlabeled: {interactions: logs/impressions-*.parquet}   # logged rows without a label
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from recsys_committee.errors import UserError

SPLIT_KINDS = ("temporal", "random")
DERIVED = ("history", "history_long", "liked", "disliked", "rated_history", "user_stats", "item_stats")


class DataSpecError(UserError, ValueError):
    """The data spec is malformed: the message names the spec file and the key."""


@dataclass
class CategoricalSpec:
    """One id per row from ``column``: a vocabulary built on the train split (unseen values ->
    the out-of-vocabulary id 0), or ``buckets`` (hashing, for huge vocabularies), or ``bins``
    (numeric edges: bucket i+1, null -> 0), or the first ``prefix`` characters of a string."""

    name: str
    column: str
    buckets: Optional[int] = None
    bins: Optional[list[float]] = None
    prefix: Optional[int] = None


@dataclass
class MultiValuedSpec:
    """A list column, or a string split on ``separator``; a vocabulary of its tokens (train split)."""

    name: str
    column: str
    separator: Optional[str] = None


@dataclass
class LabelSpec:
    column: str
    min: Optional[float] = None  # None: the column is 0/1; else label = column >= min


@dataclass
class DataSpec:
    interactions: str
    user: str
    item: str
    label: LabelSpec
    time: Optional[str] = None
    rating: Optional[str] = None
    users: Optional[str] = None
    items: Optional[str] = None
    separator: str = ","
    ids: str = "vocab"  # "vocab" (train-split vocabulary) | "raw" (positive integer ids used as they are)
    categorical: list[CategoricalSpec] = field(default_factory=list)
    multi_valued: list[MultiValuedSpec] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)
    like_threshold: Optional[float] = None  # liked/disliked histories and like rates (default: label's min)
    split_kind: str = "temporal"
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = 0
    max_rows: Optional[int] = None
    text: dict[str, str] = field(default_factory=dict)
    transfer: dict[str, dict[str, Any]] = field(default_factory=dict)  # {sampled: {per_row, seed}, unlabeled: {interactions}}
    path: Optional[str] = None  # the YAML file (for error messages)

    def where(self, key: str) -> str:
        return f"{self.path}: {key}" if self.path else key

    def history_length(self, name: str, default: int) -> Optional[int]:
        """Length of a derived history, or None when the spec does not ask for it."""
        if name not in self.derived:
            return None
        return int((self.derived[name] or {}).get("length", default))


KNOWN = {
    "": ("source", "columns", "features", "split", "text", "max_rows", "ids", "like_threshold", "transfer"),
    "transfer": ("sampled", "unlabeled"),
    "transfer.sampled": ("per_row", "seed"),
    "transfer.unlabeled": ("interactions",),
    "source": ("interactions", "users", "items", "csv"),
    "source.csv": ("separator",),
    "columns": ("user", "item", "time", "label", "rating"),
    "features": ("categorical", "multi_valued", "dense", "derived"),
    "split": ("kind", "fractions", "seed"),
}


def _check_keys(node: Any, where: str, path: str) -> dict[str, Any]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise DataSpecError(f"{path}: '{where or 'the spec'}' must be a mapping, got {type(node).__name__}")
    known = KNOWN[where]
    for key in node:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(f'{where}.{c}'.lstrip('.')) for c in close)}?" if close else ""
            raise DataSpecError(f"{path}: unknown data-spec key '{f'{where}.{key}'.lstrip('.')}'.{hint} Known keys here: {', '.join(known)}")
    return node


def _resolve(base: Path, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


def parse_spec(data: dict[str, Any], path: str = "<data spec>", base: Optional[Path] = None) -> DataSpec:
    """Build a DataSpec from its YAML mapping; relative paths are relative to ``base``."""
    base = base or Path.cwd()
    top = _check_keys(data, "", path)
    source = _check_keys(top.get("source"), "source", path)
    columns = _check_keys(top.get("columns"), "columns", path)
    feats = _check_keys(top.get("features"), "features", path)
    split = _check_keys(top.get("split"), "split", path)
    csv = _check_keys(source.get("csv"), "source.csv", path)
    for key, node in (("source.interactions", source.get("interactions")), ("columns.user", columns.get("user")),
                      ("columns.item", columns.get("item")), ("columns.label", columns.get("label"))):
        if node in (None, ""):
            raise DataSpecError(f"{path}: '{key}' is required")
    label = columns["label"]
    if isinstance(label, dict):
        extra = set(label) - {"from", "min"}
        if extra or "from" not in label or "min" not in label:
            raise DataSpecError(f"{path}: 'columns.label' is a column name or {{from: COLUMN, min: THRESHOLD}}, got {label}")
        label_spec = LabelSpec(str(label["from"]), float(label["min"]))
    else:
        label_spec = LabelSpec(str(label))
    categorical = []
    for i, entry in enumerate(feats.get("categorical") or []):
        if isinstance(entry, str):
            categorical.append(CategoricalSpec(entry, entry))
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, opts), = entry.items()
            opts = opts or {}
            bad = set(opts) - {"column", "buckets", "bins", "prefix"}
            if bad or not isinstance(opts, dict):
                raise DataSpecError(f"{path}: features.categorical[{i}] '{name}': unknown option(s) {sorted(bad)}; known: column, buckets, bins, prefix")
            categorical.append(CategoricalSpec(str(name), str(opts.get("column", name)), opts.get("buckets"), opts.get("bins"), opts.get("prefix")))
        else:
            raise DataSpecError(f"{path}: features.categorical[{i}] must be a column name or {{name: {{options}}}}, got {entry!r}")
    multi = []
    for name, opts in (feats.get("multi_valued") or {}).items():
        if isinstance(opts, dict):
            bad = set(opts) - {"column", "separator"}
            if bad:
                raise DataSpecError(f"{path}: features.multi_valued.{name}: unknown option(s) {sorted(bad)}; known: column, separator")
            multi.append(MultiValuedSpec(str(name), str(opts.get("column", name)), opts.get("separator")))
        else:
            multi.append(MultiValuedSpec(str(name), str(name), opts))
    derived = feats.get("derived") or {}
    if not isinstance(derived, dict):
        raise DataSpecError(f"{path}: features.derived must be a mapping of {list(DERIVED)}")
    for name in derived:
        if name not in DERIVED:
            close = difflib.get_close_matches(str(name), DERIVED, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise DataSpecError(f"{path}: unknown derived feature 'features.derived.{name}'.{hint} Known: {', '.join(DERIVED)}")
    kind = split.get("kind", "temporal")
    if kind not in SPLIT_KINDS:
        raise DataSpecError(f"{path}: split.kind must be one of {SPLIT_KINDS}, got '{kind}'")
    fractions = [float(f) for f in split.get("fractions", [0.8, 0.1, 0.1])]
    if len(fractions) != 3 or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataSpecError(f"{path}: split.fractions must be three positive shares (train, val, test) summing to 1, got {fractions}")
    ids = top.get("ids", "vocab")
    if ids not in ("vocab", "raw"):
        raise DataSpecError(f"{path}: ids must be 'vocab' or 'raw', got '{ids}'")
    if kind == "temporal" and not columns.get("time"):
        raise DataSpecError(f"{path}: split.kind temporal needs columns.time")
    if columns.get("time") is None and any(d in derived for d in DERIVED):
        raise DataSpecError(f"{path}: derived features are past-only and need columns.time")
    text = top.get("text") or {}
    if not isinstance(text, dict) or any(k not in ("item", "user", "preset") for k in text) or (text and "item" not in text and "preset" not in text):
        raise DataSpecError(f"{path}: text must map 'item' (and optionally 'user') to a template over columns, or name a preset "
                            f"(preset: movielens), got {text!r}")
    transfer = _parse_transfer(top.get("transfer"), path, base, bool(columns.get("time")))
    return DataSpec(
        interactions=_resolve(base, str(source["interactions"])), users=_resolve(base, source.get("users")), items=_resolve(base, source.get("items")),
        separator=str(csv.get("separator", ",")), user=str(columns["user"]), item=str(columns["item"]), time=columns.get("time"),
        label=label_spec, rating=columns.get("rating"), ids=ids, categorical=categorical, multi_valued=multi,
        dense=[str(d) for d in feats.get("dense") or []], derived={k: (v or {}) for k, v in derived.items()},
        like_threshold=top.get("like_threshold"), split_kind=kind, fractions=fractions, split_seed=int(split.get("seed", 0)),
        max_rows=top.get("max_rows"), text={k: str(v) for k, v in text.items()}, transfer=transfer, path=path,
    )


def _parse_transfer(node: Any, path: str, base: Path, has_time: bool) -> dict[str, dict[str, Any]]:
    """``transfer:``: ``sampled: {per_row: N, seed: S}`` and / or ``unlabeled: {interactions:
    FILES}``. Both are featurised past-only at their time, so they need ``columns.time``."""
    top = _check_keys(node, "transfer", path)
    out: dict[str, dict[str, Any]] = {}
    if "sampled" in top:
        sampled = _check_keys(top["sampled"], "transfer.sampled", path)
        per_row = sampled.get("per_row")
        if not isinstance(per_row, int) or isinstance(per_row, bool) or per_row < 1:
            raise DataSpecError(f"{path}: transfer.sampled.per_row must be a positive integer, got {per_row!r}")
        out["sampled"] = {"per_row": per_row, "seed": int(sampled.get("seed", 0))}
    if "unlabeled" in top:
        unlabeled = _check_keys(top["unlabeled"], "transfer.unlabeled", path)
        if not unlabeled.get("interactions"):
            raise DataSpecError(f"{path}: transfer.unlabeled needs 'interactions' (the files of logged rows without a label)")
        out["unlabeled"] = {"interactions": _resolve(base, str(unlabeled["interactions"]))}
    if out and not has_time:
        raise DataSpecError(f"{path}: transfer rows are featurised past-only at their time: they need columns.time")
    return out


def load_spec(path: str | Path, overrides: Optional[dict[str, Any]] = None) -> DataSpec:
    """Read a spec file; relative source paths are relative to the current directory (where
    commands run, like every path in a run config)."""
    path = Path(path)
    if not path.is_file():
        raise DataSpecError(f"data spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataSpecError(f"{path}: malformed YAML ({exc})") from exc
    if overrides:
        data = {**data, **overrides}
    return parse_spec(data, str(path))
