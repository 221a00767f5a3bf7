"""``guardrail.idempotency``: logical exactly-once for tool calls, in Postgres.

A lookup before the confirm gate returns a completed result at once; the atomic claim
(``INSERT ... ON CONFLICT``) comes after confirmation. A concurrent duplicate waits for
the first result. Only completed results are cached (for ``ttl``); pending
confirmations and failures are not, so a failed call can be retried.

Each claim records its holder (host, process id and process start time). A claim whose
holder process is gone (same host) is taken over at once; on another host it is taken over
after ``stale_after`` (a lease). Taking over never guesses: the backend key of the dead
attempt (:func:`write_key`) is first reconciled by the domain, which either returns the
committed result or fences the key so the dead attempt can never apply. A claim whose write
timed out stays ``unknown`` until it is reconciled the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from graph.errors import AirlockError

__all__ = [
    "Claim",
    "IdempotencyStore",
    "IdempotencyTimeoutError",
    "Reconciler",
    "holder_alive",
    "idempotency_key",
    "this_holder",
    "write_key",
]

# Given a backend key, the committed result of that write, or None once it is fenced off.
Reconciler = Callable[[str], "dict[str, Any] | None"]


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_holder() -> str:
    """Return ``host:pid:start`` for this process (the start time guards against pid reuse)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def holder_alive(holder: str) -> bool | None:
    """Return whether a holder process lives: True/False on this host, None for another host."""
    host, _, rest = holder.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return _start_time(pid) == start if start else True


def write_key(key: str, token: str) -> str:
    """Return the backend key of one claim's attempt: the engine key plus the claim's token."""
    return f"{key}#{token}"


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

    def __init__(self, *, pool: ConnectionPool, stale_after: float = 120.0) -> None:
        self._pool = pool
        # A lease: an in-progress claim older than this whose holder runs on another host is
        # presumed dead. Longer than any guarded write (resilience retries x timeout).
        self._stale_after = stale_after
        self._holder = this_holder()

    def _dead(self, row: Mapping[str, Any]) -> bool:
        alive = holder_alive(str(row.get("holder") or ""))
        if alive is not None:
            return not alive
        age = float(row.get("age") or 0.0)
        return age > self._stale_after

    def lookup(self, key: str) -> dict[str, Any] | None:
        """Return the cached result of a completed, unexpired call, or None."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT result FROM idempotency_keys WHERE key = %s AND status = 'completed'"
                " AND expires_at > now()",
                (key,),
            ).fetchone()
        return None if row is None else dict(row["result"])  # type: ignore[call-overload]

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
            busy = [r for r in self.open_claims(key=key, prefix=prefix) if not self.unsettled(r)]
            if not busy or time.monotonic() >= deadline:
                return self.lookup(key)
            time.sleep(poll)

    def open_claims(self, *, key: str, prefix: str | None = None) -> list[dict[str, Any]]:
        """Return the claims of ``key`` (or of any key starting with ``prefix``) not yet completed."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, owner, status, holder, extract(epoch FROM now() - claimed_at) AS age"
                " FROM idempotency_keys WHERE status IN ('in_progress', 'unknown')"
                " AND (key = %s OR (%s::text IS NOT NULL AND starts_with(key, %s::text)))",
                (key, prefix, prefix),
            ).fetchall()
        return [dict(r) for r in rows]

    def unsettled(self, claim: Mapping[str, Any]) -> bool:
        """Return whether an open claim's write may have happened unseen: unknown, or its holder is dead."""
        return claim["status"] == "unknown" or self._dead(claim)

    def settle(
        self, key: str, owner: str, *, result: Mapping[str, Any] | None, ttl: float
    ) -> None:
        """Close a claim whose outcome was reconciled: completed with ``result``, or dropped (None)."""
        with self._pool.connection() as conn:
            if result is None:
                conn.execute(
                    "DELETE FROM idempotency_keys WHERE key = %s AND owner = %s AND status <> 'completed'",
                    (key, owner),
                )
            else:
                conn.execute(
                    "UPDATE idempotency_keys SET status = 'completed', result = %s, completed_at = now(),"
                    " expires_at = now() + make_interval(secs => %s) WHERE key = %s AND owner = %s",
                    (Jsonb(dict(result)), ttl, key, owner),
                )

    def mark_unknown(self, key: str, token: str) -> None:
        """Keep a claim whose write timed out as ``unknown``: only a reconciliation may close it."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE idempotency_keys SET status = 'unknown' WHERE key = %s AND owner = %s", (key, token)
            )

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

    def _try_claim(self, key: str, tool: str, user_id: str | None, token: str, *, replace: str = "") -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO idempotency_keys (key, tool, user_id, status, owner, holder)"
                " VALUES (%(key)s, %(tool)s, %(user)s, 'in_progress', %(token)s, %(holder)s)"
                " ON CONFLICT (key) DO UPDATE SET status = 'in_progress', owner = %(token)s,"
                "   holder = %(holder)s, claimed_at = now(), result = NULL, completed_at = NULL, expires_at = NULL"
                " WHERE (idempotency_keys.status = 'completed' AND idempotency_keys.expires_at <= now())"
                "    OR (idempotency_keys.owner = %(replace)s AND idempotency_keys.status <> 'completed')"
                " RETURNING owner",
                {"key": key, "tool": tool, "user": user_id, "token": token, "holder": self._holder,
                 "replace": replace or None},
            ).fetchone()
        return row is not None and row["owner"] == token  # type: ignore[call-overload]

    def _current(self, key: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT owner, status, holder, extract(epoch FROM now() - claimed_at) AS age"
                " FROM idempotency_keys WHERE key = %s",
                (key,),
            ).fetchone()
        return None if row is None else dict(row)

    def claim(
        self, key: str, *, tool: str, user_id: str | None, wait_timeout: float = 30.0,
        poll: float = 0.05, reconcile: Reconciler | None = None, ttl: float = 86400.0,
    ) -> Claim:
        """Claim ``key`` atomically, or wait for the concurrent owner's result.

        Returns a Claim that is either owned (the caller must execute, then
        :meth:`complete` or :meth:`release`) or carries the completed result. A claim left
        by a dead process or a timed-out write is reconciled with ``reconcile`` first: a
        committed write is returned as the result, a fenced one is taken over.
        """
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_timeout
        while True:
            if self._try_claim(key, tool, user_id, token):
                return Claim(owned=True, token=token)
            cached = self.lookup(key)
            if cached is not None:
                return Claim(owned=False, result=cached)
            current = self._current(key)
            if current is not None and reconcile is not None and (
                current["status"] == "unknown" or self._dead(current)
            ):
                old = str(current["owner"])
                done = reconcile(write_key(key, old))
                if done is not None:
                    self.settle(key, old, result=done, ttl=ttl)
                    return Claim(owned=False, result=done)
                if self._try_claim(key, tool, user_id, token, replace=old):
                    return Claim(owned=True, token=token)
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
