"""The one family of errors a user can cause.

Why one base: every command (``recsys-committee``, ``python -m vision_committee``, the
benchmarks) catches ``UserError`` in one place and prints ``error: <one line naming the
problem>`` with exit code 2, no traceback (``--debug`` shows it). A bad config, data file,
checkpoint or a diverged run is the user's to fix, and they should read what to fix, not a
stack. Anything else (a bug) still raises with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: the message names the file, key, teacher or step."""


class ConfigError(UserError, ValueError):
    """A config file or override is malformed; the message names the key."""


def one_line(exc: BaseException) -> str:
    """The error's message on one line (multi-line library messages are folded)."""
    return " ".join(str(exc).split())
