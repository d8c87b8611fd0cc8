"""Opaque pagination cursors for keyset pages: the last key of a page, base64url without padding.

Only the exact form ``encode`` writes is accepted back, and only for a key the caller's pattern admits: lenient
base64 would turn junk into a key like "" or NUL and page from the start, or fail in the database. A refusal is a
``BadRequest`` naming the ``cursor`` parameter ("pass nextCursor unchanged").
"""

from __future__ import annotations

import base64
import binascii
import re

from dbp.errors import BadRequest, FieldError

MAX_CURSOR = 600  # characters: a cursor is a key of at most ~450 bytes


def encode(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode(cursor: str | None, *, key: re.Pattern[str], issuer: str) -> str | None:
    """The key ``cursor`` stands for (None for no cursor); BadRequest unless it is exactly ``encode(key)`` of a
    key matching ``key``. ``issuer`` names who issues the cursors ("this repository") in the refusal."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR or not cursor.isascii():
            raise ValueError
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        if encode(value) != cursor or not key.fullmatch(value):
            raise ValueError
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"cursor is not one {issuer} issued",
                         details=[FieldError("cursor", "cursor.invalid", "pass nextCursor unchanged")]) from None
