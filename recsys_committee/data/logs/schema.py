"""The data layer's error type and the raw tables a run keeps next to its features.

Why: every check on user data fails with one ``DataValidationError`` naming the file and the
column; the raw side tables are what the LM teacher's texts are rendered from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import polars as pl

from recsys_committee.errors import UserError


class DataValidationError(UserError, ValueError):
    """The input data is malformed; the message names the file and the column."""


@dataclass
class RawTables:
    inter: pl.DataFrame
    users: Optional[pl.DataFrame]
    items: Optional[pl.DataFrame]
