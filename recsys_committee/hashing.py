"""sha256 of a file, read in 1 MiB blocks: the checksum every written artifact is keyed or checked
by (prepared shards, streamed teacher caches, teacher checkpoints, export programs)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
