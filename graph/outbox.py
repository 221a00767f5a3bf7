"""The notification outbox: enqueue in the event's transaction, deliver at least once from workers.

``Outbox.on_audit_event`` is an :class:`~nodes.audit.AuditLog` listener: it runs on the cursor of
the audit insert, so the outbox row commits with the event (a review decided, a change
executed, a confirm gate waiting) or not at all. :class:`OutboxWorker` leases due rows with
``FOR UPDATE SKIP LOCKED`` (any number of workers, in any processes, never share a row while a
lease holds), delivers, and marks the row sent; a failure is retried with exponential backoff
and dead-lettered after ``max_attempts``. A worker killed after sending but before marking
leaves a lease that another worker takes over (at once when the dead worker ran on the same
host, after ``lease_s`` otherwise) and sends again with the same ``message_key`` (the e-mail's
Message-ID, the webhook's Idempotency-Key), so receivers can drop the repeat: delivery is
at least once, never silently lost.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from graph.errors import AirlockError
from graph.notify import (
    AUDIT_KINDS,
    ContactDirectory,
    DeliveryError,
    NotifySettings,
    SmtpTransport,
    WebhookTransport,
    neutral_payload,
    render_email,
)
from nodes.audit import AuditEvent
from nodes.guardrails.idempotency import holder_alive, this_holder
from nodes.metrics import record_notification

__all__ = ["Outbox", "OutboxError", "OutboxPass", "OutboxStore", "OutboxWorker", "backoff_delay"]

log = logging.getLogger(__name__)


class OutboxError(AirlockError, LookupError):
    """An outbox command named no message it can act on."""


def _dedupe_ref(kind: str, event: AuditEvent) -> str:
    """Return the identity of the announced fact, so a replayed node does not announce it twice."""
    if kind == "confirm.waiting":
        # The gate is raised again on every replay of its node: one notice per gate and figure.
        p = event.payload
        return f"{event.thread_id}:{p.get('tool_call_id', '')}:{p.get('args_hash', '')}"
    # Stream 0 keeps the reference it had before the audit log had streams.
    return f"audit:{event.seq}" if not event.stream else f"audit:{event.stream}:{event.seq}"


class Outbox:
    """Enqueue notifications for audit events, on the event's own cursor."""

    def __init__(self, settings: NotifySettings, *, writes: Collection[str]) -> None:
        """Create the enqueuer.

        Args:
            settings: The routes and the announced kinds.
            writes: The tools whose execution is a change (the domain's write tools); reads
                are audited as ``tool.executed`` too and are not announced.
        """
        self._settings = settings
        self._writes = frozenset(writes)
        self._kinds = {a: k for a, k in AUDIT_KINDS.items() if k in settings.events}
        self._routes = settings.routes()

    def on_audit_event(self, cur: Cursor[Any], event: AuditEvent) -> None:
        """Insert one row per configured route when ``event`` announces something (else nothing)."""
        kind = self._kinds.get(event.event_type)
        if kind is None or not self._routes:
            return
        if kind == "change.executed" and event.tool not in self._writes:
            return  # a read; a write's own event is appended in its transaction, once it happened
        payload = Jsonb(neutral_payload(kind, event.payload))
        ref = _dedupe_ref(kind, event)
        for channel, audience in self._routes:
            if audience == "customer" and not event.thread_id:
                continue
            cur.execute(
                "INSERT INTO outbox (message_key, kind, channel, audience, dedupe_ref, audit_stream, audit_seq,"
                " thread_id, tool, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (kind, channel, audience, dedupe_ref) DO NOTHING",
                (f"airlock-{uuid.uuid4().hex}", kind, channel, audience, ref, event.stream, event.seq, event.thread_id,
                 event.tool, payload),
            )


def backoff_delay(attempts: int, settings: NotifySettings, *, jitter: float | None = None) -> float:
    """Return the wait after the ``attempts``-th failure: doubling from ``backoff_s``, capped, with jitter.

    The jitter (up to +25%) keeps workers that failed together from retrying together.
    """
    base = min(settings.backoff_s * 2 ** max(attempts - 1, 0), settings.backoff_max_s)
    factor = 1.0 + (random.random() * 0.25 if jitter is None else jitter)  # noqa: S311 - not security
    return float(min(base * factor, settings.backoff_max_s))


class OutboxStore:
    """Read and repair the outbox: counts, dead letters, retry."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def counts(self) -> dict[str, int]:
        """Return the number of messages per status."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT status, count(*) AS n FROM outbox GROUP BY status").fetchall()
        return {str(r["status"]): int(r["n"]) for r in rows}  # type: ignore[call-overload]

    def messages(self, *, status: str | None = "dead", limit: int = 100) -> list[dict[str, Any]]:
        """Return messages (dead letters by default), newest first."""
        sql = ("SELECT id, message_key, kind, channel, audience, thread_id, tool, status, attempts, last_error,"
               " created_at, next_attempt_at, sent_at, dead_at FROM outbox")
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = %s"
            params.append(status)
        sql += " ORDER BY id DESC LIMIT %s"
        with self._pool.connection() as conn:
            return [dict(r) for r in conn.execute(sql, (*params, limit)).fetchall()]

    def get(self, message_id: int) -> dict[str, Any] | None:
        """Return one message."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT * FROM outbox WHERE id = %s", (message_id,)).fetchone()
        return None if row is None else dict(row)

    def retry(self, ids: list[int] | None = None) -> list[int]:
        """Return dead letters (these ``ids``, or all) to pending with a fresh attempt count; return their ids.

        The message keeps its key, so a receiver that did get an earlier attempt drops it.

        Raises:
            OutboxError: An id that is not a dead letter.
        """
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), dead_at = NULL,"
                " holder = NULL, lease_until = NULL WHERE status = 'dead'"
                " AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[])) RETURNING id",
                {"ids": ids},
            ).fetchall()
            done = sorted(int(r["id"]) for r in rows)  # type: ignore[call-overload]
            missing: list[int] = sorted(set(ids or ()) - set(done))
            if missing:
                raise OutboxError(f"not dead letters: {', '.join(map(str, missing))} (see `airlock outbox list`)")
        return done


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPass:
    """What one pass of a worker did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    recovered: int = 0


class OutboxWorker:
    """Deliver due outbox messages; safe to run in any number of threads and processes."""

    def __init__(
        self, *, pool: ConnectionPool, settings: NotifySettings, contacts: Any = None,
        smtp: Any = None, webhook: Any = None,
    ) -> None:
        """Create a worker.

        Args:
            pool: The database.
            settings: Routes, transports and the retry schedule.
            contacts: The domain; used for customer addresses when it implements ContactDirectory.
            smtp: What sends an ``EmailMessage`` (default: :class:`~graph.notify.SmtpTransport`).
            webhook: What POSTs a row (default: :class:`~graph.notify.WebhookTransport`).
        """
        self._pool = pool
        self._s = settings
        self._contacts: ContactDirectory | None = contacts if isinstance(contacts, ContactDirectory) else None
        self._smtp = smtp or (SmtpTransport(settings) if settings.smtp_host else None)
        self._webhook = webhook or (WebhookTransport(settings) if settings.webhook_url else None)
        self.holder = this_holder()

    # -- leases ---------------------------------------------------------------------------------
    def recover(self) -> int:
        """Release the leases of dead workers on this host at once; dead-letter what is out of attempts."""
        released = 0
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT id, holder FROM outbox WHERE status = 'sending'").fetchall()
            for row in rows:
                holder = str(row["holder"] or "")  # type: ignore[call-overload]
                if holder == self.holder or holder_alive(holder) is not False:
                    continue  # a live worker, or one on another host (its lease expires instead)
                moved = conn.execute(
                    "UPDATE outbox SET status = CASE WHEN attempts >= %(max)s THEN 'dead' ELSE 'pending' END,"
                    " dead_at = CASE WHEN attempts >= %(max)s THEN now() END, holder = NULL, lease_until = NULL,"
                    " last_error = 'the delivering worker died before marking the message'"
                    " WHERE id = %(id)s AND status = 'sending' AND holder = %(holder)s",
                    {"id": row["id"], "holder": holder, "max": self._s.max_attempts},  # type: ignore[call-overload]
                ).rowcount
                if moved:
                    log.warning("outbox message %s: its worker %s is gone; due again", row["id"], holder)  # type: ignore[call-overload]
                released += moved
            # A lease that expired on its last attempt: the worker hung or died elsewhere.
            released += conn.execute(
                "UPDATE outbox SET status = 'dead', dead_at = now(), holder = NULL, lease_until = NULL,"
                " last_error = 'the lease of the last attempt expired before it was marked'"
                " WHERE status = 'sending' AND lease_until < now() AND attempts >= %s",
                (self._s.max_attempts,),
            ).rowcount
        return released

    def claim(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Lease due messages (pending and due, or a lease that expired); count the attempt."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "UPDATE outbox SET status = 'sending', holder = %(me)s, attempts = attempts + 1,"
                " lease_until = now() + make_interval(secs => %(lease)s)"
                " WHERE id IN (SELECT id FROM outbox WHERE (status = 'pending' AND next_attempt_at <= now())"
                "   OR (status = 'sending' AND lease_until < now() AND attempts < %(max)s)"
                "   ORDER BY next_attempt_at, id LIMIT %(n)s FOR UPDATE SKIP LOCKED)"
                " RETURNING *",
                {"me": self.holder, "lease": self._s.lease_s, "n": limit or self._s.batch, "max": self._s.max_attempts},
            ).fetchall()
        return [dict(r) for r in rows]

    # -- delivery -------------------------------------------------------------------------------
    def _recipients(self, row: Mapping[str, Any]) -> list[str]:
        if row["audience"] == "staff":
            return list(self._s.email_to)
        if self._contacts is None or not row.get("thread_id"):
            return []
        with self._pool.connection() as conn:
            owner = conn.execute("SELECT user_id FROM threads WHERE thread_id = %s", (row["thread_id"],)).fetchone()
        if owner is None:
            return []
        address = self._contacts.contact_address(str(owner["user_id"]))  # type: ignore[call-overload]
        return [address] if address else []

    def deliver(self, row: Mapping[str, Any]) -> str:
        """Deliver one leased message; return its new status (sent, pending, dead or skipped)."""
        try:
            if row["channel"] == "email":
                recipients = self._recipients(row)
                if not recipients:
                    return self._finish(row, "skipped", "no address for this audience")
                if self._smtp is None:
                    raise DeliveryError("e-mail is no longer configured (AIRLOCK_SMTP_HOST)", permanent=True)
                assert self._s.smtp_from is not None
                self._smtp.send(render_email(row, sender=self._s.smtp_from, recipients=recipients))
            else:
                if self._webhook is None:
                    raise DeliveryError("the webhook is no longer configured (AIRLOCK_NOTIFY_WEBHOOK_URL)",
                                        permanent=True)
                self._webhook.send(row)
        except DeliveryError as exc:
            return self._failed(row, exc)
        except Exception as exc:  # a bug in a transport must not stop the worker; the row is retried
            log.exception("outbox message %s: unexpected delivery error", row["id"])
            return self._failed(row, DeliveryError(f"{type(exc).__name__}"))
        return self._finish(row, "sent", None)

    def _finish(self, row: Mapping[str, Any], status: str, note: str | None) -> str:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE outbox SET status = %s, sent_at = CASE WHEN %s = 'sent' THEN now() END, holder = NULL,"
                " lease_until = NULL, last_error = %s WHERE id = %s AND status = 'sending' AND holder = %s",
                (status, status, note, row["id"], self.holder),
            )
        return status

    def _failed(self, row: Mapping[str, Any], exc: DeliveryError) -> str:
        attempts = int(row["attempts"])
        dead = exc.permanent or attempts >= self._s.max_attempts
        delay = 0.0 if dead else backoff_delay(attempts, self._s)
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE outbox SET status = %s, last_error = %s, holder = NULL, lease_until = NULL,"
                " next_attempt_at = now() + make_interval(secs => %s),"
                " dead_at = CASE WHEN %s THEN now() END WHERE id = %s AND status = 'sending' AND holder = %s",
                ("dead" if dead else "pending", exc.reason[:500], delay, dead, row["id"], self.holder),
            )
        if dead:
            log.error("outbox message %s (%s %s) dead-lettered after %d attempt(s): %s", row["id"], row["kind"],
                      row["channel"], attempts, exc.reason)
        else:
            log.warning("outbox message %s: attempt %d failed (%s); next in %.1fs", row["id"], attempts,
                        exc.reason, delay)
        return "dead" if dead else "pending"

    # -- loops ----------------------------------------------------------------------------------
    def run_once(self, limit: int | None = None) -> OutboxPass:
        """Recover dead workers' leases, lease due messages and deliver them; return the counts."""
        recovered = self.recover()
        rows = self.claim(limit)
        outcome = {"sent": 0, "pending": 0, "dead": 0, "skipped": 0}
        for row in rows:
            status = self.deliver(row)
            outcome[status] += 1
            record_notification(str(row["kind"]), str(row["channel"]), status)
        return OutboxPass(claimed=len(rows), sent=outcome["sent"], retried=outcome["pending"], dead=outcome["dead"],
                          skipped=outcome["skipped"], recovered=recovered)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a full batch is followed at once by the next."""
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # the database is away: try again after the poll interval
                log.exception("outbox pass failed")
                done = OutboxPass()
            if done.claimed < self._s.batch:
                stop.wait(self._s.poll_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run :meth:`run` in a daemon thread."""
        thread = threading.Thread(target=self.run, args=(stop,), name="airlock-outbox", daemon=True)
        thread.start()
        return thread
