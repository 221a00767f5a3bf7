"""What the read and write tools share: the clock, the pool and the write transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime, timedelta
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from graph.write_fence import Body
from graph.write_fence import WriteHooks as _WriteHooks
from tools.airline.backend.idempotency import DEFAULT_IDEMPOTENCY_TTL, WRITE_REQUESTS
from tools.airline.backend.reads import CursorReads

__all__ = ["DEFAULT_NOW", "WriteHooks"]

# τ²'s simulated clock: 2024-05-15 15:00 EST, kept naive like the data's timestamps.
DEFAULT_NOW = datetime(2024, 5, 15, 15, 0, 0)

#: What a guarded write does in its own transaction besides the change (verify on these reads, record).
WriteHooks = _WriteHooks[CursorReads]


class _BackendCore:
    """The pool, the simulated clock and the one-transaction write that every tool uses."""

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        now: datetime = DEFAULT_NOW,
        idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
    ) -> None:
        self._pool = pool
        self._now = now
        self._ttl = idempotency_ttl

    @property
    def now(self) -> datetime:
        """Return the simulated current time."""
        return self._now

    @property
    def today(self) -> date:
        """Return the simulated current date."""
        return self._now.date()

    def _cursor(self) -> AbstractContextManager[Cursor[DictRow]]:
        return _read_cursor(self._pool)

    def _write(self, tool: str, key: str | None, body: Body, hooks: WriteHooks | None = None) -> dict[str, Any]:
        """Run ``body`` in one transaction, claiming ``key`` first when there is one.

        With ``hooks``, ``hooks.verify`` first locks every row the decision was made on and
        re-checks the decision on what it now reads (raising rolls everything back), and
        ``hooks.record`` stores the outcome before commit: decision, write and record are one
        transaction.
        """
        return WRITE_REQUESTS.write(
            self._pool, tool, key, body, ttl=self._ttl, hooks=hooks,
            reads=lambda cur: CursorReads(cur, now=self._now),
        )


@contextmanager
def _read_cursor(pool: ConnectionPool) -> Iterator[Cursor[DictRow]]:
    """Yield a dict-row cursor on a pooled connection, outside any explicit transaction."""
    with pool.connection() as conn:
        yield conn.cursor(row_factory=dict_row)
