"""Keyset pages of a list: the rows, the true total and an opaque cursor to the next page.

A cursor is the sort key of the last row shown (e.g. ``(due_at, review_id)``), so the next
page starts strictly after it: rows added or removed meanwhile never make a row appear twice
or skip one that was there, unlike ``OFFSET``, and a page costs the same at any depth.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graph.errors import AirlockError

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "InvalidCursorError", "Page", "decode_cursor", "encode_cursor", "page_size"]

#: Rows per page unless the caller asks for another size.
DEFAULT_PAGE = 50
#: The largest page a caller may ask for.
MAX_PAGE = 500


class InvalidCursorError(AirlockError, ValueError):
    """A page cursor that this list did not hand out (or a page size out of range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of a list.

    Attributes:
        items: The rows of this page, in the list's order.
        total: How many rows the whole list has now (not capped by the page size).
        next: The cursor of the next page, or None on the last page.
        start: How many rows of the list come before this page (its first row is number
            ``start + 1``).
    """

    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    next: str | None = None
    start: int = 0


def page_size(limit: int | None) -> int:
    """Return a valid page size for ``limit`` (None: the default); raise InvalidCursorError otherwise."""
    if limit is None:
        return DEFAULT_PAGE
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidCursorError(f"the page size must be between 1 and {MAX_PAGE}")
    return limit


def encode_cursor(kind: str, when: datetime, key: str) -> str:
    """Return the cursor after the row sorted at ``(when, key)`` in the list ``kind``."""
    raw = json.dumps([kind, when.isoformat(), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[datetime, str]:
    """Return the ``(when, key)`` a cursor of the list ``kind`` names; raise InvalidCursorError otherwise."""
    try:
        if not isinstance(cursor, str) or len(cursor) > 400:
            raise ValueError("not a cursor")
        raw: Sequence[Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        got, when, key = raw
        if got != kind or not isinstance(key, str) or not isinstance(when, str):
            raise ValueError("not a cursor of this list")
        return datetime.fromisoformat(when), key
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursorError(f"not a cursor of the {kind} list; start from the first page") from None
