"""Write requests of a domain backend: claim an idempotency key once, settle it, fence off an unknown outcome.

A domain keeps one table of write requests (``idempotency_key`` primary key, ``tool``,
``result jsonb``, ``created_at``). Every write claims its key in the write's own transaction
first, so a retried or concurrent call with the same key waits for the first and returns its
stored result (``status: "deduplicated"``) instead of running again; a reconciler settles a
write whose outcome is unknown by fencing its key off. The SQL lives here once, for every
domain; the domain names its tables and its customer-facing error type.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import Cursor, sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

__all__ = ["DEFAULT_IDEMPOTENCY_TTL", "FENCED", "Body", "WriteHooks", "WriteRequests"]

DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
#: The tool name stored for a key that a reconciler fenced off: a late attempt finds it and does nothing.
FENCED = "fenced"
# Plain lower-case SQL names only: a table name comes from domain code, never from a request,
# and is still quoted as an identifier (psycopg.sql), never formatted into the statement.
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

R = TypeVar("R")
#: A write's change: it runs on the transaction's cursor with the claimed key and returns the result.
Body = Callable[[Cursor[DictRow], str | None], dict[str, Any]]


# No slots: building one through a subscripted alias (``WriteHooks[Reads](...)``) sets
# ``__orig_class__``, which a frozen slots class refuses with a TypeError instead of an AttributeError.
@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteHooks(Generic[R]):
    """What a guarded write does inside its own transaction besides the change itself.

    Attributes:
        verify: Called first with the domain's reads on the transaction's cursor; it locks the
            rows the decision depends on, recomputes the facts and raises to refuse the write.
        record: Called last, before commit, with the cursor and the result.
        conversation_id: Tags the ledger and event rows, for per-conversation window facts.
    """

    verify: Callable[[R], None]
    record: Callable[[Cursor[DictRow], Mapping[str, Any]], None]
    conversation_id: str | None = None


def _identifier(table: str) -> sql.Identifier:
    if not _TABLE.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return sql.Identifier(table)


class WriteRequests:
    """The claim, settle and fence statements over one domain's write-request table.

    Args:
        table: The write-request table (a plain lower-case SQL name).
        error: Builds the domain's customer-facing error from a message (its ``ToolError``).
        tagged: The tables whose rows a write tags with the conversation (``conversation_id``
            and ``idempotency_key`` columns): the domain's ledger and events.

    Raises:
        ValueError: When a table name is not a plain lower-case SQL name.
    """

    def __init__(
        self, table: str, *, error: Callable[[str], Exception], tagged: Sequence[str] = (),
    ) -> None:
        self._table = _identifier(table)
        self._tagged = tuple(_identifier(t) for t in tagged)
        self._error = error

    def claim(self, cur: Cursor[DictRow], key: str, tool: str, ttl: timedelta) -> dict[str, Any] | None:
        """Claim ``key`` for this transaction, or return the stored result of its first use.

        The insert waits while another transaction holds the same key: if that one commits, the
        key is taken and its stored result is returned; if it rolls back, this one claims the
        key. A key older than ``ttl`` is taken over (its row lock serialises concurrent takeovers).

        Raises:
            Exception: The domain's error, when the key is in use for another tool or vanished.
        """
        cur.execute(
            sql.SQL(
                "INSERT INTO {} AS w (idempotency_key, tool) VALUES (%s, %s) "
                "ON CONFLICT (idempotency_key) DO UPDATE "
                "SET tool = EXCLUDED.tool, result = '{{}}'::jsonb, created_at = now() "
                "WHERE w.created_at < now() - %s RETURNING w.idempotency_key"
            ).format(self._table),
            (key, tool, ttl),
        )
        if cur.fetchone() is not None:
            return None
        row = self._stored(cur, key)
        if row is None:  # deleted between the two statements; the caller may retry
            raise self._error("The request is being processed; please retry")
        if row["tool"] == FENCED:
            # A reconciler settled this attempt as "not executed" after it timed out: keep it so.
            return {"status": "deduplicated", "original_status": FENCED, "executed": False}
        if row["tool"] != tool:
            raise self._error("This idempotency key was already used for another action")
        result = dict(row["result"])
        result["original_status"] = result.get("status", "")
        result["status"] = "deduplicated"
        return result

    def settle(self, cur: Cursor[DictRow], key: str | None, result: Mapping[str, Any],
               *, conversation_id: str | None = None) -> None:
        """Store ``result`` under the claimed ``key`` and tag the write's rows with the conversation.

        Without a key there is nothing to store and no row to tag.
        """
        if key is None:
            return
        if conversation_id:
            for table in self._tagged:
                cur.execute(
                    sql.SQL("UPDATE {} SET conversation_id = %s WHERE idempotency_key = %s").format(table),
                    (conversation_id, key),
                )
        cur.execute(
            sql.SQL("UPDATE {} SET result = %s WHERE idempotency_key = %s").format(self._table),
            (Jsonb(result), key),
        )

    def write(
        self, pool: ConnectionPool, tool: str, key: str | None, body: Body, *,
        ttl: timedelta, hooks: WriteHooks[R] | None = None, reads: Callable[[Cursor[DictRow]], R],
    ) -> dict[str, Any]:
        """Run ``body`` in one transaction, claiming ``key`` first when there is one.

        With ``hooks``, ``hooks.verify`` first locks every row the decision was made on (through
        ``reads`` over the transaction's cursor) and re-checks the decision on what it now
        reads (raising rolls everything back), and ``hooks.record`` stores the outcome before
        commit: decision, write and record are one transaction.
        """
        with self._transaction(pool) as cur:
            if key is not None:
                stored = self.claim(cur, key, tool, ttl)
                if stored is not None:
                    return stored
            if hooks is not None:
                hooks.verify(reads(cur))
            result = body(cur, key)
            self.settle(cur, key, result, conversation_id=hooks.conversation_id if hooks else None)
            if hooks is not None:
                hooks.record(cur, result)
            return result

    def fence(self, pool: ConnectionPool, key: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """Settle a write whose outcome is unknown: return its stored result, or fence the key off.

        The fence inserts the key as ``fenced``. If the original attempt is still in flight, the
        insert waits for it (up to ``wait`` seconds): a commit means the write happened and its
        result is returned; a roll-back (or an attempt that never started) means the fence
        wins, and the late attempt, when it arrives, finds the key taken and changes nothing.
        Either way the answer is final.

        Raises:
            Exception: The domain's error, when the in-flight attempt did not finish within ``wait``.
        """
        with self._transaction(pool) as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(wait * 1000)}ms",))
            try:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (idempotency_key, tool, result) VALUES (%s, %s, %s)"
                        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
                    ).format(self._table),
                    (key, FENCED, Jsonb({"status": FENCED})),
                )
            except psycopg.errors.LockNotAvailable as exc:
                raise self._error("The earlier attempt is still running") from exc
            if cur.fetchone() is not None:
                return None
            row = self._stored(cur, key)
        if row is None or row["tool"] == FENCED:
            return None
        return dict(row["result"])

    def _stored(self, cur: Cursor[DictRow], key: str) -> DictRow | None:
        cur.execute(
            sql.SQL("SELECT tool, result FROM {} WHERE idempotency_key = %s").format(self._table), (key,)
        )
        return cur.fetchone()

    @staticmethod
    @contextmanager
    def _transaction(pool: ConnectionPool) -> Iterator[Cursor[DictRow]]:
        with pool.connection() as conn, conn.transaction():
            yield conn.cursor(row_factory=dict_row)
