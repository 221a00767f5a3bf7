"""``guardrail.idempotency``: logical exactly-once for tool calls, in Postgres.

A lookup before the confirm gate returns a completed result at once; the atomic claim
(``INSERT ... ON CONFLICT``) comes after confirmation. A concurrent duplicate waits for
the first result. Only completed results are cached (for ``ttl``); pending
confirmations and failures are not, so a failed call can be retried.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from graph.errors import AirlockError

__all__ = ["Claim", "IdempotencyStore", "IdempotencyTimeoutError", "idempotency_key"]


def idempotency_key(
    tool: str, user_id: str | None, args: Mapping[str, Any], key_fields: Sequence[str]
) -> str:
    """Derive the key from the tool, the authenticated user and the key fields' values.

    The user is always part of the key so two customers can never share a result.
    """
    values = {field: args.get(field) for field in key_fields}
    body = json.dumps(
        {"tool": tool, "user": user_id, "values": values},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return f"{tool}:{hashlib.sha256(body.encode()).hexdigest()[:40]}"


class IdempotencyTimeoutError(AirlockError, TimeoutError):
    """Raised when a concurrent duplicate does not finish within the wait timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """Outcome of :meth:`IdempotencyStore.claim`."""

    owned: bool
    token: str = ""
    result: dict[str, Any] | None = None


class IdempotencyStore:
    """Postgres-backed idempotency keys."""

    def __init__(self, *, pool: ConnectionPool, stale_after: float = 600.0) -> None:
        self._pool = pool
        # An in-progress claim older than this is presumed dead (its process crashed).
        self._stale_after = stale_after

    def lookup(self, key: str) -> dict[str, Any] | None:
        """Return the cached result of a completed, unexpired call, or None."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT result FROM idempotency_keys WHERE key = %s AND status = 'completed'"
                " AND expires_at > now()",
                (key,),
            ).fetchone()
        return None if row is None else dict(row["result"])  # type: ignore[call-overload,index]

    def await_in_flight(
        self, key: str, *, prefix: str | None = None, wait_timeout: float = 30.0, poll: float = 0.05
    ) -> dict[str, Any] | None:
        """Wait while a live call holds ``key`` (or any key starting with ``prefix``).

        Returns the completed result stored under ``key``, or None when there is none.
        Used before the confirm gate: a request identical to one being executed right now
        must get that result, not a second gate priced on half-updated data.
        """
        deadline = time.monotonic() + wait_timeout
        while True:
            with self._pool.connection() as conn:
                busy = conn.execute(
                    "SELECT 1 FROM idempotency_keys WHERE status = 'in_progress'"
                    " AND claimed_at > now() - make_interval(secs => %s)"
                    " AND (key = %s OR (%s::text IS NOT NULL AND starts_with(key, %s::text))) LIMIT 1",
                    (self._stale_after, key, prefix, prefix),
                ).fetchone()
            if busy is None or time.monotonic() >= deadline:
                return self.lookup(key)
            time.sleep(poll)

    def remember(self, key: str, result: Mapping[str, Any], *, ttl: float) -> None:
        """Store ``result`` as the latest completion of a request (overwriting an older one)."""
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO idempotency_keys (key, tool, status, owner, result, completed_at, expires_at)"
                " VALUES (%(key)s, split_part(%(key)s, ':', 1), 'completed', 'latest', %(result)s, now(),"
                "         now() + make_interval(secs => %(ttl)s))"
                " ON CONFLICT (key) DO UPDATE SET status = 'completed', owner = 'latest', result = EXCLUDED.result,"
                "   completed_at = now(), expires_at = EXCLUDED.expires_at",
                {"key": key, "result": Jsonb(dict(result)), "ttl": ttl},
            )

    def _try_claim(self, key: str, tool: str, user_id: str | None, token: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO idempotency_keys (key, tool, user_id, status, owner)"
                " VALUES (%(key)s, %(tool)s, %(user)s, 'in_progress', %(token)s)"
                " ON CONFLICT (key) DO UPDATE SET status = 'in_progress', owner = %(token)s,"
                "   claimed_at = now(), result = NULL, completed_at = NULL, expires_at = NULL"
                " WHERE (idempotency_keys.status = 'completed' AND idempotency_keys.expires_at <= now())"
                "    OR (idempotency_keys.status = 'in_progress'"
                "        AND idempotency_keys.claimed_at < now() - make_interval(secs => %(stale)s))"
                " RETURNING owner",
                {"key": key, "tool": tool, "user": user_id, "token": token,
                 "stale": self._stale_after},
            ).fetchone()
        return row is not None and row["owner"] == token  # type: ignore[call-overload,index]

    def claim(
        self, key: str, *, tool: str, user_id: str | None, wait_timeout: float = 30.0,
        poll: float = 0.05,
    ) -> Claim:
        """Claim ``key`` atomically, or wait for the concurrent owner's result.

        Returns a Claim that is either owned (the caller must execute, then
        :meth:`complete` or :meth:`release`) or carries the completed result.
        """
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_timeout
        while True:
            if self._try_claim(key, tool, user_id, token):
                return Claim(owned=True, token=token)
            cached = self.lookup(key)
            if cached is not None:
                return Claim(owned=False, result=cached)
            if time.monotonic() >= deadline:
                raise IdempotencyTimeoutError(f"{tool}: a duplicate of this call is still running")
            # The owner is executing (or released after a failure; then we claim next loop).
            time.sleep(poll)

    def complete(self, key: str, token: str, result: Mapping[str, Any], *, ttl: float) -> None:
        """Store the result of an executed call for ``ttl`` seconds."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET status = 'completed', result = %s,"
                " completed_at = now(), expires_at = now() + make_interval(secs => %s)"
                " WHERE key = %s AND owner = %s",
                (Jsonb(dict(result)), ttl, key, token),
            )

    def release(self, key: str, token: str) -> None:
        """Drop an owned claim after a failure so the call can be retried."""
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE key = %s AND owner = %s AND status = 'in_progress'",
                (key, token),
            )

    def purge_expired(self) -> int:
        """Delete expired completed keys; return how many."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                "DELETE FROM idempotency_keys WHERE status = 'completed' AND expires_at <= now()"
            )
            return cur.rowcount
