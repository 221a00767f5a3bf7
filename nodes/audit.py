"""Append-only, hash-chained audit log in Postgres.

Each event's hash covers the previous event's hash and a canonical JSON body, so an
edited, inserted or deleted row breaks the chain and :meth:`AuditLog.verify` finds it.
Callers must pass payloads that are already free of raw PII (masked arguments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

__all__ = ["GENESIS_HASH", "AuditEvent", "AuditLog", "ChainReport"]

GENESIS_HASH = "0" * 64
_CHAIN_LOCK_ID = 0x41_55_44_54  # "AUDT": serialises appends so the chain stays linear


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + _canonical(body)).encode("utf-8")).hexdigest()


def _body(
    *, ts: datetime, event_type: str, actor: str, thread_id: str | None, tool: str | None,
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "ts": ts.astimezone(UTC).isoformat(),
        "event_type": event_type,
        "actor": actor,
        "thread_id": thread_id,
        "tool": tool,
        "payload": payload,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One stored audit event."""

    id: int
    ts: datetime
    event_type: str
    actor: str
    thread_id: str | None
    tool: str | None
    payload: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """Result of verifying the chain."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


class AuditLog:
    """Append events and verify the chain."""

    def __init__(self, *, pool: ConnectionPool) -> None:
        self._pool = pool

    def append(
        self,
        event_type: str,
        *,
        actor: str,
        payload: Mapping[str, Any],
        thread_id: str | None = None,
        tool: str | None = None,
    ) -> str:
        """Append one event and return its hash."""
        with self._pool.connection() as conn, conn.transaction():
            return self.append_on(
                conn.cursor(), event_type, actor=actor, payload=payload, thread_id=thread_id, tool=tool
            )

    @staticmethod
    def append_on(
        cur: Cursor[Any],
        event_type: str,
        *,
        actor: str,
        payload: Mapping[str, Any],
        thread_id: str | None = None,
        tool: str | None = None,
    ) -> str:
        """Append one event inside the caller's transaction (e.g. the write it records); return its hash.

        The event then exists if and only if that transaction commits.
        """
        # Round-trip through JSON so the hashed body equals what jsonb gives back.
        clean = json.loads(_canonical(payload))
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CHAIN_LOCK_ID,))
        cur.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
        prev = (row["hash"] if isinstance(row, Mapping) else row[0]) if row else GENESIS_HASH
        ts = datetime.now(UTC)
        body = _body(ts=ts, event_type=event_type, actor=actor, thread_id=thread_id, tool=tool, payload=clean)
        digest = _digest(prev, body)
        cur.execute(
            "INSERT INTO audit_events (ts, event_type, actor, thread_id, tool, payload,"
            " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (ts, event_type, actor, thread_id, tool, Jsonb(clean), prev, digest),
        )
        return digest

    def events(
        self, *, thread_id: str | None = None, event_type: str | None = None, limit: int = 200
    ) -> list[AuditEvent]:
        """Return the newest events (newest first), optionally filtered."""
        where, params = [], []
        if thread_id is not None:
            where.append("thread_id = %s")
            params.append(thread_id)
        if event_type is not None:
            where.append("event_type = %s")
            params.append(event_type)
        sql = "SELECT * FROM audit_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT %s"
        with self._pool.connection() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()  # type: ignore[arg-type]
        return [
            AuditEvent(
                id=r["id"], ts=r["ts"], event_type=r["event_type"], actor=r["actor"],  # type: ignore[call-overload,index]
                thread_id=r["thread_id"], tool=r["tool"], payload=r["payload"], hash=r["hash"],  # type: ignore[call-overload,index]
            )
            for r in rows
        ]

    def verify(self, *, batch: int = 5000) -> ChainReport:
        """Recompute every hash in order and report the first break, if any."""
        prev = GENESIS_HASH
        checked = 0
        last_id = 0
        with self._pool.connection() as conn:
            while True:
                rows = conn.execute(
                    "SELECT * FROM audit_events WHERE id > %s ORDER BY id LIMIT %s",
                    (last_id, batch),
                ).fetchall()
                if not rows:
                    break
                for r in rows:
                    rid = r["id"]  # type: ignore[call-overload,index]
                    if r["prev_hash"] != prev:  # type: ignore[call-overload,index]
                        return ChainReport(
                            ok=False, checked=checked, first_bad_id=rid,
                            reason="prev_hash does not match the previous event (row missing or inserted)",
                        )
                    body = _body(
                        ts=r["ts"], event_type=r["event_type"], actor=r["actor"],  # type: ignore[call-overload,index]
                        thread_id=r["thread_id"], tool=r["tool"], payload=r["payload"],  # type: ignore[call-overload,index]
                    )
                    if _digest(prev, body) != r["hash"]:  # type: ignore[call-overload,index]
                        return ChainReport(
                            ok=False, checked=checked, first_bad_id=rid,
                            reason="hash does not match the event's content (row edited)",
                        )
                    prev = r["hash"]  # type: ignore[call-overload,index]
                    checked += 1
                    last_id = rid
        return ChainReport(ok=True, checked=checked)
