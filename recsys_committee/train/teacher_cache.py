"""Teacher outputs computed once, stored on disk, served by example id.

Why: on CPU the LM teacher forwards ~37 examples/s (docs/DATA.md); a committee that ran it every
step would train for days. Its tapped features and logits are computed once for every row of
the table and stored as safetensors shards plus a JSON index; training then reads them with
``PrecomputedTeacher`` (``committee/teacher.py``), by ``batch.example_ids``.

What the cache guarantees:
  * Keyed: the index holds the key (teacher weights, head, taps, text template and options,
    data rows, tokenised inputs, dtype) and its hash. Opening a cache for a different key is a
    ``StaleCacheError`` naming each part that differs and suggesting ``--rebuild-cache``.
  * Checked: every shard's sha256 and size are in the index; a truncated or altered shard is a
    ``CorruptCacheError`` naming the file.
  * Resumable: shards are written one by one (temp file, then rename) and the index is updated
    after each; an interrupted build restarts at the first missing shard and keeps the rest.
  * Measured: with ``float16`` storage each output's max abs error against the fp32 values it
    came from is recorded per shard and overall (``index["max_abs_error"]``).

This module knows nothing about LMs: a builder passes the key and a ``compute(rows) -> {name:
fp32 tensor [n, ...]}`` callable (``models/lm/teacher.py`` has the LM one).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tqdm.auto import tqdm

from recsys_committee.committee.teacher import PrecomputedTeacher
from recsys_committee.files import sha256_hex, write_bytes
from recsys_committee.progress import on_terminal
from recsys_committee.train.checkpoint import CheckpointError

FORMAT = "teacher-cache/1"
INDEX = "index.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
LOGITS = "logits"  # always stored in float32 (tiny, and KD temperatures amplify their errors)
SUBSET_FIELDS = ("taps",)  # opening a cache for a subset of its taps is fine
REBUILD_HINT = "Rebuild it with `recsys-committee cache ... --rebuild-cache` (or point to another --out folder)."

Compute = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


class TeacherCacheError(CheckpointError):
    """A teacher cache is missing, stale, incomplete or corrupt; the message names the folder."""


class StaleCacheError(TeacherCacheError):
    """The cache was built for another teacher / taps / text / data than asked for."""


class CorruptCacheError(TeacherCacheError):
    """A shard or the index fails its checksum, size or format check."""


class IncompleteCacheError(TeacherCacheError):
    """The build stopped before the last shard."""


def key_hash(key: Mapping[str, Any]) -> str:
    return sha256_hex(json.dumps(key, sort_keys=True, default=str).encode())


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return text if len(text) <= 160 else text[:157] + "…"


def diff_keys(have: Mapping[str, Any], want: Mapping[str, Any], subset: Sequence[str] = ()) -> list[str]:
    """Readable differences for every field of ``want`` (``subset`` fields: want ⊆ have)."""
    diffs = []
    for field, wanted in want.items():
        got = have.get(field)
        if field in subset and isinstance(wanted, list) and isinstance(got, list):
            missing = [w for w in wanted if w not in got]
            if missing:
                diffs.append(f"{field}: cache has {got}, missing {missing}")
            continue
        if isinstance(wanted, dict) and isinstance(got, dict):
            inner = [f"{field}.{k}: cache {_short(got.get(k))} vs now {_short(v)}" for k, v in wanted.items() if got.get(k) != v]
            inner += [f"{field}.{k}: cache {_short(got[k])} vs now (absent)" for k in got if k not in wanted]
            diffs.extend(inner)
        elif got != wanted:
            diffs.append(f"{field}: cache {_short(got)} vs now {_short(wanted)}")
    return diffs


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


# ----------------------------------------------------------------------------- reading
@dataclass
class TeacherCache:
    """An opened, complete cache: its index and a loader for its outputs."""

    root: Path
    index: dict[str, Any]

    @property
    def key(self) -> dict[str, Any]:
        return self.index["key"]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.index["outputs"]

    @property
    def n_rows(self) -> int:
        return int(self.index["n_rows"])

    @property
    def max_abs_error(self) -> dict[str, float]:
        return dict(self.index.get("max_abs_error", {}))

    def _read_shard(self, shard: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        path = self.root / shard["file"]
        if not path.is_file():
            raise CorruptCacheError(f"teacher cache {self.root}: shard {shard['file']} is missing. {_CORRUPT_HINT}")
        data = path.read_bytes()
        if len(data) != shard["bytes"]:
            raise CorruptCacheError(
                f"teacher cache {self.root}: shard {shard['file']} is truncated or altered ({len(data)} bytes, the index says "
                f"{shard['bytes']}). {_CORRUPT_HINT}"
            )
        if sha256_hex(data) != shard["sha256"]:
            raise CorruptCacheError(f"teacher cache {self.root}: shard {shard['file']} fails its sha256 checksum. {_CORRUPT_HINT}")
        try:
            tensors = st_load(data)
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise CorruptCacheError(f"teacher cache {self.root}: shard {shard['file']} is not a readable safetensors file ({exc})") from exc
        rows = shard["stop"] - shard["start"]
        for name, t in tensors.items():
            if t.shape[0] != rows:
                raise CorruptCacheError(f"teacher cache {self.root}: shard {shard['file']} output '{name}' has {t.shape[0]} rows, expected {rows}")
        return tensors

    def load(self, names: Optional[Iterable[str]] = None, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
        """Outputs ``names`` (default all) for all rows, each [N, ...], checksums verified.
        ``dtype`` converts floating outputs (default: as stored)."""
        names = list(self.outputs) if names is None else list(names)
        unknown = [n for n in names if n not in self.outputs]
        if unknown:
            raise TeacherCacheError(f"teacher cache {self.root} has no output(s) {unknown}; it holds {sorted(self.outputs)}")
        out = {
            n: torch.empty((self.n_rows, *self.outputs[n]["shape"]), dtype=dtype or DTYPES[self.outputs[n]["stored"]])
            for n in names
        }
        for shard in self.index["shards"]:
            tensors = self._read_shard(shard)
            for n in names:
                if n not in tensors:
                    raise CorruptCacheError(f"teacher cache {self.root}: shard {shard['file']} lacks output '{n}'")
                out[n][shard["start"] : shard["stop"]] = tensors[n].to(out[n].dtype)
        return out

    def verify(self) -> None:
        for shard in self.index["shards"]:
            self._read_shard(shard)

    def teacher(self, name: str, tap: str, always_on: bool = False, logits: bool = True, cls: type = PrecomputedTeacher) -> PrecomputedTeacher:
        """A ``PrecomputedTeacher`` serving output ``tap`` as features (and the logits) by example id."""
        names = [tap] + ([LOGITS] if logits and LOGITS in self.outputs else [])
        tensors = self.load(names, dtype=torch.float32)
        return cls(tensors[tap], tensors.get(LOGITS), name=name, always_on=always_on)


_CORRUPT_HINT = "Re-run the same `recsys-committee cache` command to recompute the bad shard, or rebuild with --rebuild-cache."


def _read_index(root: Path) -> Optional[dict[str, Any]]:
    path = root / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptCacheError(f"teacher cache {root}: {INDEX} is unreadable ({exc}). {REBUILD_HINT}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CorruptCacheError(f"teacher cache {root}: {INDEX} is not a {FORMAT} index. {REBUILD_HINT}")
    if index.get("key_hash") != key_hash(index.get("key", {})):
        raise CorruptCacheError(f"teacher cache {root}: {INDEX} key does not match its key_hash (edited by hand?). {REBUILD_HINT}")
    return index


def open_cache(root: str | Path, expect: Optional[Mapping[str, Any]] = None, verify: bool = False) -> TeacherCache:
    """Open a complete cache; ``expect``: key fields that must match (``taps``: a subset).
    Checksums are always checked when data is loaded; ``verify`` checks them all now."""
    root = Path(root)
    index = _read_index(root)
    if index is None:
        raise TeacherCacheError(f"no teacher cache at {root} (no {INDEX}); build it with `recsys-committee cache --config ... --out {root}`")
    if not index.get("complete"):
        done = sum(s["stop"] - s["start"] for s in index["shards"])
        raise IncompleteCacheError(
            f"teacher cache {root} is incomplete ({done}/{index['n_rows']} rows): its build was interrupted. "
            "Re-run the same `recsys-committee cache` command: it resumes at the first missing shard."
        )
    if expect:
        diffs = diff_keys(index["key"], dict(expect), SUBSET_FIELDS)
        if diffs:
            raise StaleCacheError(f"teacher cache {root} is stale for this run: " + "; ".join(diffs) + ". " + REBUILD_HINT)
    cache = TeacherCache(root, index)
    if verify:
        cache.verify()
    return cache


def load_precomputed_teacher(root: str | Path, name: str, tap: str, expect: Optional[Mapping[str, Any]] = None,
                             always_on: bool = False) -> PrecomputedTeacher:
    """The loader: a cache -> ``PrecomputedTeacher`` (features = output ``tap``, plus logits)."""
    want = {"taps": [tap], **(dict(expect) if expect else {})}
    return open_cache(root, expect=want).teacher(name, tap, always_on=always_on)


# ----------------------------------------------------------------------------- building
def build_cache(
    root: str | Path,
    key: Mapping[str, Any],
    n_rows: int,
    compute: Compute,
    *,
    shard_rows: int = 4096,
    batch_size: int = 64,
    rebuild: bool = False,
    progress: bool = True,
    description: str = "teacher cache",
    meta: Optional[Mapping[str, Any]] = None,
    shard_runner: Optional[Callable[[list[tuple[int, int, int]]], Iterable[tuple[int, dict[str, torch.Tensor]]]]] = None,
) -> TeacherCache:
    """Compute ``compute(rows)`` for rows 0..n_rows-1 and store it, shard by shard.

    ``shard_runner`` computes shards elsewhere (e.g. Ray Data actors, ``lm_cache_command.LMShardActor``):
    given the missing (shard, start, stop) ranges it yields (shard, outputs) as each finishes, in
    any order; every finished shard is stored and indexed at once, so an interrupted parallel
    build resumes like a serial one.

    An existing cache with the same key is resumed (complete, intact shards are kept; a
    corrupt one is recomputed); with another key it is a StaleCacheError. ``rebuild`` discards
    whatever is there and starts over.
    ``key["dtype"]`` (float16 | float32) is the storage type of the features; ``meta``: facts
    kept in the index outside the key (e.g. the teacher's parameter count).
    """
    root = Path(root)
    key = dict(key)
    dtype_name = key.get("dtype", "float32")
    if dtype_name not in DTYPES:
        raise ValueError(f"cache dtype must be one of {sorted(DTYPES)}, got '{dtype_name}'")
    if shard_rows < 1 or batch_size < 1:
        raise ValueError("shard_rows and batch_size must be >= 1")
    root.mkdir(parents=True, exist_ok=True)
    khash = key_hash(key)
    try:
        index = _read_index(root)
    except CorruptCacheError:
        if not rebuild:
            raise
        index = None
    if index is not None and index["key_hash"] != khash:
        if not rebuild:
            diffs = diff_keys(index["key"], key)
            raise StaleCacheError(f"teacher cache {root} was built for another setup: " + "; ".join(diffs) + ". " + REBUILD_HINT)
        index = None
    if index is not None and (index["n_rows"] != n_rows or index["shard_rows"] != shard_rows):
        if not rebuild:
            raise StaleCacheError(
                f"teacher cache {root} has {index['n_rows']} rows in shards of {index['shard_rows']}; asked for {n_rows} in "
                f"shards of {shard_rows}. {REBUILD_HINT}"
            )
        index = None
    if rebuild:
        index = None  # --rebuild-cache: discard everything, even for an identical key
    if index is None:
        _wipe(root)
        index = {
            "format": FORMAT, "key": key, "key_hash": khash, "n_rows": n_rows, "shard_rows": shard_rows,
            "dtype": dtype_name, "outputs": {}, "shards": [], "max_abs_error": {}, "complete": False, "seconds": 0.0,
            "meta": dict(meta or {}),
        }

    cache = TeacherCache(root, index)
    kept = []
    for shard in index["shards"]:  # keep intact shards; recompute corrupt ones
        try:
            cache._read_shard(shard)
            kept.append(shard)
        except CorruptCacheError as exc:
            print(f"teacher cache: recomputing {shard['file']} ({exc})")
    index["shards"] = kept
    done = {s["start"] for s in kept}
    n_shards = (n_rows + shard_rows - 1) // shard_rows
    todo = [i for i in range(n_shards) if i * shard_rows not in done]
    if not todo and kept:
        index["complete"] = True
        _write_index(root, index)
        return cache
    rows_done = n_rows - sum(min(shard_rows, n_rows - i * shard_rows) for i in todo)
    bar = tqdm(total=n_rows, initial=rows_done, desc=description, unit="row", disable=not (progress and on_terminal()))
    log_lines = progress and not on_terminal()  # a line per shard in logs, not bar frames
    start_time = time.perf_counter()
    ranges = [(i, i * shard_rows, min((i + 1) * shard_rows, n_rows)) for i in todo]
    results = shard_runner(ranges) if shard_runner is not None else ((i, compute_shard(compute, a, b, batch_size, bar.update)) for i, a, b in ranges)
    try:
        for i, values in results:
            start, stop = i * shard_rows, min((i + 1) * shard_rows, n_rows)
            if shard_runner is not None:
                bar.update(stop - start)
            shard = _store_shard(root, index, i, start, stop, values, DTYPES[dtype_name])
            index["shards"].append(shard)
            index["shards"].sort(key=lambda s: s["start"])
            index["seconds"] = float(index.get("seconds", 0.0)) + (time.perf_counter() - start_time)
            start_time = time.perf_counter()
            _write_index(root, index)
            rows_done += stop - start
            if log_lines:
                print(f"{description}: {rows_done:,}/{n_rows:,} rows ({index['seconds']:.0f}s)", flush=True)
    finally:
        bar.close()
    index["complete"] = True
    index["rows_per_second"] = n_rows / index["seconds"] if index["seconds"] else None
    _write_index(root, index)
    return cache


def compute_shard(compute: Compute, start: int, stop: int, batch_size: int, advance: Callable[[int], Any] = lambda n: None) -> dict[str, torch.Tensor]:
    """``compute`` over rows start..stop-1 in batches -> {output: fp32 [stop - start, ...]}."""
    parts: dict[str, list[torch.Tensor]] = {}
    for b in range(start, stop, batch_size):
        rows = torch.arange(b, min(b + batch_size, stop))
        for name, value in compute(rows).items():
            value = value.detach().to("cpu", torch.float32)
            if value.shape[0] != rows.numel():
                raise ValueError(f"compute returned {value.shape[0]} rows of '{name}' for {rows.numel()}")
            parts.setdefault(name, []).append(value)
        advance(rows.numel())
    return {n: torch.cat(v) for n, v in parts.items()}


def open_or_build(root: str | Path, key: Mapping[str, Any], n_rows: int, compute: Compute, **build_kwargs: Any) -> TeacherCache:
    """A complete cache that covers ``key`` (its taps a subset, any head and storage dtype)
    is opened as is; otherwise the cache for ``key`` is built or resumed (stale: an error)."""
    root = Path(root)
    index = _read_index(root)
    if index is not None and index.get("complete"):
        want = {k: v for k, v in key.items() if k not in ("head", "dtype")}
        if not diff_keys(index["key"], want, SUBSET_FIELDS):
            return TeacherCache(root, index)
    return build_cache(root, key, n_rows, compute, **build_kwargs)


def _store_shard(root: Path, index: dict[str, Any], i: int, start: int, stop: int, values: dict[str, torch.Tensor],
                 dtype: torch.dtype) -> dict[str, Any]:
    stored: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for name, value in values.items():
        target = torch.float32 if name == LOGITS else dtype
        stored[name] = value.to(target).contiguous()
        errors[name] = float((stored[name].float() - value).abs().max()) if value.numel() else 0.0
        spec = {"shape": list(value.shape[1:]), "stored": "float32" if target == torch.float32 else "float16"}
        if index["outputs"].setdefault(name, spec) != spec:
            raise ValueError(f"output '{name}' changed shape/type between shards: {index['outputs'][name]} vs {spec}")
        index["max_abs_error"][name] = max(index["max_abs_error"].get(name, 0.0), errors[name])
    missing = set(index["outputs"]) - set(values)
    if missing:
        raise ValueError(f"compute stopped returning output(s) {sorted(missing)}")
    data = st_save(stored, metadata={"start": str(start), "stop": str(stop)})
    name = _shard_name(i)
    write_bytes(root / name, data, fsync=True)
    return {"file": name, "start": start, "stop": stop, "bytes": len(data), "sha256": sha256_hex(data), "max_abs_error": errors}


def _write_index(root: Path, index: dict[str, Any]) -> None:
    write_bytes(root / INDEX, json.dumps(index, indent=1, sort_keys=True).encode())


def _wipe(root: Path) -> None:
    """Remove this module's files only (the index and shards), never anything else."""
    for path in list(root.glob("shard-*.safetensors")) + list(root.glob("shard-*.safetensors.tmp")) + [root / INDEX, root / (INDEX + ".tmp")]:
        if path.is_file():
            path.unlink()
