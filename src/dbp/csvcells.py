"""CSV cells no spreadsheet evaluates (OWASP "CSV injection"), for every CSV this system writes."""

from __future__ import annotations

# A spreadsheet evaluates a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text: str) -> str:
    """``text`` with a leading single quote when it starts like a formula; unchanged otherwise."""
    return "'" + text if text.startswith(FORMULA_START) else text
