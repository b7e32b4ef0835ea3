"""Progress for people: a bar on a terminal, a plain line per unit of work elsewhere.

Why: in CI, under ``ray job submit`` or ``make demo > log`` a tqdm bar writes thousands of
carriage-return frames into the log; there the loop prints one line per epoch and a cache build
one line per shard instead.
"""

from __future__ import annotations

import sys


def on_terminal() -> bool:
    return sys.stderr.isatty()
