"""The facts-side reads on one cursor."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from tools.airline.backend.rows import (
    _RESERVATION_ID_LOCK,
    _flights,
    _reservation,
    _user,
)

__all__ = ["CursorReads"]


class CursorReads:
    """The facts-side reads on one cursor: a snapshot outside a transaction, locked rows inside one."""

    def __init__(self, cur: Cursor[DictRow], *, now: datetime) -> None:
        self.cur = cur
        self.now = now
        self.lock = False

    def lock_scope(self, *, reservation_id: str | None, user_ids: Iterable[str], booking: bool) -> None:
        """Lock what a write decides on, in the writes' global order (id lock, reservation, users).

        Every later read on this cursor also locks (``FOR UPDATE``), so the facts recomputed
        here cannot change before the transaction commits.
        """
        self.lock = True
        if booking:
            self.cur.execute("SELECT pg_advisory_xact_lock(%s)", (_RESERVATION_ID_LOCK,))
        if reservation_id:
            reservation = _reservation(self.cur, reservation_id, lock=True)
            if reservation is not None:
                user_ids = [*user_ids, str(reservation.get("user_id", ""))]
        for user_id in sorted({u for u in user_ids if u}):
            _user(self.cur, user_id, lock=True)

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the user document, or None."""
        return _user(self.cur, user_id, lock=self.lock)

    def fetch_reservation(self, reservation_id: str) -> dict[str, Any] | None:
        """Return the reservation document, or None."""
        return _reservation(self.cur, reservation_id, lock=self.lock)

    def fetch_user_reservations(self, user_id: str) -> list[dict[str, Any]]:
        """Return every reservation document of ``user_id``, ordered by id."""
        self.cur.execute(
            "SELECT doc FROM airline_reservations WHERE user_id = %s ORDER BY reservation_id", (user_id,)
        )
        return [r["doc"] for r in self.cur.fetchall()]

    def fetch_flights(self, numbers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the flight documents for ``numbers`` (unknown numbers are left out)."""
        wanted = sorted({n for n in numbers if isinstance(n, str)})
        return _flights(self.cur, wanted) if wanted else {}

    def fetch_events(
        self, *, user_id: str | None = None, reservation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the write events of a user or a reservation, oldest first."""
        clauses, params = [], []
        if user_id is not None:
            clauses.append("user_id = %s")
            params.append(user_id)
        if reservation_id is not None:
            clauses.append("reservation_id = %s")
            params.append(reservation_id)
        if not clauses:
            return []
        self.cur.execute(
            "SELECT user_id, reservation_id, tool, idempotency_key, before, after "
            f"FROM airline_events WHERE {' AND '.join(clauses)} ORDER BY id",
            params,
        )
        return [dict(r) for r in self.cur.fetchall()]

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return money charged and refunded, and certificates issued, to the customer recently.

        Two windows: the last 24 hours (wall clock, as the ledger records it) and this
        conversation. Splitting a request into parts changes none of these sums.
        """
        self.cur.execute(
            "SELECT"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge'), 0) AS charged_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund'), 0) AS refunded_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge' AND conversation_id = %(c)s), 0)"
            "   AS charged_conv,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund' AND conversation_id = %(c)s), 0)"
            "   AS refunded_conv"
            " FROM payments_ledger WHERE user_id = %(u)s AND created_at > now() - interval '24 hours'",
            {"u": user_id, "c": conversation_id or ""},
        )
        money_row = self.cur.fetchone() or {}
        self.cur.execute(
            "SELECT count(*) FILTER (WHERE cert) AS n, coalesce(sum(usd) FILTER (WHERE cert), 0) AS usd,"
            " count(*) FILTER (WHERE cert AND conversation_id = %(c)s) AS n_conv,"
            " coalesce(sum(usd) FILTER (WHERE cert AND conversation_id = %(c)s), 0) AS usd_conv,"
            " count(*) FILTER (WHERE NOT cert) AS bookings, coalesce(sum(pax) FILTER (WHERE NOT cert), 0) AS pax"
            " FROM (SELECT tool = 'send_certificate' AS cert, conversation_id,"
            "   CASE WHEN tool = 'send_certificate' THEN (after->>'amount')::numeric END AS usd,"
            "   CASE WHEN tool = 'book_reservation' THEN jsonb_array_length(after->'passengers') END AS pax"
            "   FROM airline_events WHERE user_id = %(u)s AND tool IN ('send_certificate', 'book_reservation')"
            "   AND created_at > now() - interval '24 hours') AS recent",
            {"u": user_id, "c": conversation_id or ""},
        )
        events_row = self.cur.fetchone() or {}
        return {
            "charged_usd_24h": float(money_row.get("charged_24h", 0)),
            "refunded_usd_24h": float(money_row.get("refunded_24h", 0)),
            "charged_usd_conversation": float(money_row.get("charged_conv", 0)),
            "refunded_usd_conversation": float(money_row.get("refunded_conv", 0)),
            "certificates_24h": int(events_row.get("n", 0)),
            "certificates_usd_24h": float(events_row.get("usd", 0)),
            "certificates_conversation": int(events_row.get("n_conv", 0)),
            "certificates_usd_conversation": float(events_row.get("usd_conv", 0)),
            "bookings_24h": int(events_row.get("bookings", 0)),
            "passengers_booked_24h": int(events_row.get("pax", 0)),
        }

    def state_version(self, *, user_id: str | None = None, reservation_id: str | None = None) -> int:
        """Return a number that grows with every write to the reservation (or the user): the last event id."""
        column, value = ("reservation_id", reservation_id) if reservation_id else ("user_id", user_id)
        if value is None:
            return 0
        self.cur.execute(f"SELECT coalesce(max(id), 0) AS v FROM airline_events WHERE {column} = %s", (value,))
        row = self.cur.fetchone()
        return int(row["v"]) if row else 0
