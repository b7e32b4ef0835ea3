"""Writing and checking the files every command leaves behind: one atomic writer, one sha256.

``atomic_path``: every file a command writes (JSON reports, safetensors checkpoints, parquet
shards, cache shards, downloads) is written to a temporary sibling and renamed into place, so a
reader (a resumed prepare, a Ray Train report, an interrupted cache build) never sees half a
file, and a failed write leaves the previous file as it was. ``sha256_hex`` / ``file_sha256``:
the checksum prepared shards, teacher caches, teacher checkpoints, downloads and export programs
are keyed or checked by (files read in 1 MiB blocks).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path | str, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. ``fsync`` flushes
    the file to disk before the rename (cache shards that a crash must not leave empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path | str, payload: dict[str, Any]) -> None:
    write_bytes(path, json.dumps(payload, indent=2, default=float).encode())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
