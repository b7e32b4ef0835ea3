"""The one decision every data-backed test makes when the fetched data (``make data``) is absent.

Without ``DD_REQUIRE_DATA`` the test is skipped with the fix (a checkout without the data still
runs every other test). ``make test`` and ``make test-all`` fetch the data first and set
``DD_REQUIRE_DATA=1``: there a missing file means the fetch broke or a path moved, and a skip
would hide it, so the test fails and names the file.

A module of its own (not conftest.py) so that every conftest and test file can import it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_VAR = "DD_REQUIRE_DATA"


def data_required() -> bool:
    """True when a missing data file must fail the test (``DD_REQUIRE_DATA`` set, not 0)."""
    return os.environ.get(REQUIRE_VAR, "").strip().lower() not in ("", "0", "false", "no")


def missing_data(path: str | Path, what: str) -> None:
    """``path`` (``what``) is not there: fail under ``DD_REQUIRE_DATA``, skip otherwise. Never returns."""
    message = f"{what} not fetched: {path} is missing; run `make data` (make test does it)"
    if data_required():
        pytest.fail(f"{message} [{REQUIRE_VAR}=1: data-backed tests must not skip]", pytrace=False)
    pytest.skip(message)


def require_files(what: str, *paths: str | Path) -> None:
    """Every path exists, else ``missing_data`` on the first one that does not."""
    for path in paths:
        if not Path(path).exists():
            missing_data(path, what)
