"""Writing and checking the files every command leaves behind.

``write_json``: written to a temporary name and renamed into place, so a reader (a resumed
prepare, a Ray Train report, an interrupted cache build) never sees half a file. ``file_sha256``:
read in 1 MiB blocks; the checksum prepared shards, streamed teacher caches, teacher checkpoints
and export programs are keyed or checked by.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
