"""What every command line of the project shares: ``--debug`` and the one user-facing error path.

Why one place: ``recsys-committee`` and ``python -m vision_committee`` (and the benchmarks) must
answer a mistake the same way: ``error: <one line>`` on stderr and exit code 2, no traceback,
unless ``--debug`` asks for it. Errors that are not the user's (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from recsys_committee.errors import UserError, one_line

EXIT_USER_ERROR = 2


def add_debug_flag(parser: argparse.ArgumentParser, subparsers: "argparse._SubParsersAction | None" = None) -> None:
    """``--debug`` before or after the command name (``prog --debug train`` or ``prog train --debug``)."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    for sub in (subparsers.choices.values() if subparsers is not None else ()):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command(args)``; a ``UserError`` becomes one line on stderr and exit code 2."""
    try:
        return command(args)
    except UserError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
