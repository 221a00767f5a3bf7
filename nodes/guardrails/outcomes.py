"""The outcome of each guarded write, written in the write's own transaction.

``tool_outcomes`` holds one row per (thread, tool call) whose write committed. The row is
inserted by the domain backend through :meth:`OutcomeStore.record`, on the cursor of the
transaction that changes the data, so "the write happened" and "its outcome is recorded"
are one fact: a node re-run after a crash, the repair of a dangling sibling call and a
reconciler after a timeout all read it back instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

__all__ = ["OutcomeStore"]


class OutcomeStore:
    """Read and record write outcomes by (thread, tool call id)."""

    def __init__(self, *, pool: ConnectionPool) -> None:
        self._pool = pool

    def lookup(self, thread_id: str | None, call_id: str) -> dict[str, Any] | None:
        """Return the recorded result of the call's committed write, or None."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT result FROM tool_outcomes WHERE thread_id = %s AND call_id = %s",
                (thread_id or "", call_id),
            ).fetchone()
        return None if row is None else dict(row["result"])  # type: ignore[call-overload]

    def by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        """Return the recorded result of the write made under ``idempotency_key``, or None."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT result FROM tool_outcomes WHERE idempotency_key = %s LIMIT 1", (idempotency_key,)
            ).fetchone()
        return None if row is None else dict(row["result"])  # type: ignore[call-overload]

    @staticmethod
    def record(
        cur: Cursor[Any], *, thread_id: str | None, call_id: str, tool: str, user_id: str | None,
        idempotency_key: str | None, result: Mapping[str, Any],
    ) -> None:
        """Insert the outcome on ``cur``: call inside the write's transaction, before it commits."""
        cur.execute(
            "INSERT INTO tool_outcomes (thread_id, call_id, tool, user_id, idempotency_key, status, result)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (thread_id or "", call_id, tool, user_id, idempotency_key, str(result.get("status", "ok")),
             Jsonb(dict(result))),
        )
