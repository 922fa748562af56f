"""Sanitisers for names from users on their way out: into a spreadsheet cell, into a one-line message.

**CSV cells** (formula injection).

Scenario, action and campaign names come from users (the Annotator, an OSCAR import); a name such
as ``=HYPERLINK(...)`` or ``@SUM(...)`` in a CSV file opened in a spreadsheet runs as a formula.
As OWASP recommends, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading ``'``, which spreadsheets read as "this is text" and do not show. Numbers
stay numbers (a numeric column is never touched, nor a text cell that is a plain number such as
``-1.5``). A carriage return inside a text cell becomes a line feed: the CSV writer quotes cells
holding a line feed but not a bare CR, which would break the row. Every CSV the analysis writes
goes through :func:`write_csv`.

**One-line messages**: a stored name shown in an error goes through :func:`printable`, so an escape
sequence or a bidi override in it cannot rewrite the terminal, and a list of them is cut short.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: object) -> object:
    """``value`` as a safe spreadsheet cell: text starting like a formula gets a leading ``'``."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names went through :func:`csv_cell`."""
    safe = frame.rename(columns=lambda c: csv_cell(c) if isinstance(c, str) else c)
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(csv_cell)
    return safe


def write_csv(frame: pd.DataFrame, target: str | Path | IO[str] | None = None) -> str | None:
    """``frame.to_csv(target, index=False)`` with every text cell neutralised; the text when ``target`` is None."""
    return csv_safe(frame).to_csv(target, index=False)


def printable(name: str, limit: int = 60, quote: str = "'") -> str:
    """``name`` in ``quote`` for a one-line message: control and format characters (line breaks, escapes, bidi
    overrides that reorder what a terminal shows) as ``\\uXXXX``, cut after ``limit`` characters."""
    shown = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch
                    for ch in name[:limit])
    return quote + shown + ("…" if len(name) > limit else "") + quote


def printable_list(names: Sequence[str], most: int = 10) -> str:
    """Up to ``most`` names through :func:`printable` (unquoted), then how many more there are."""
    shown = ", ".join(printable(n, quote="") for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
