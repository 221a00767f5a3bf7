"""Runs of the HTTP API: a turn runs apart from the request that started it, its events in Postgres.

A client that drops the connection does not stop its turn (a charge half done stays one charge);
it reconnects to ``/v1/runs/{id}/events`` with ``Last-Event-ID`` on any process and reads on.
The same ``Idempotency-Key`` from the same user finds the same run (a unique index decides the
race, across processes), and only one run at a time may work on a thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from langchain_core.messages import AIMessage, ToolMessage
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from graph.service import AirlockApp, NotAllowedError, PendingInterrupt, TurnResult, interrupt_text
from graph.state import written
from ui.api.problems import Problem

__all__ = ["RunStore", "Runner", "TERMINAL", "request_hash", "turn_events", "update_events"]

log = logging.getLogger(__name__)
TERMINAL = "done"
HEARTBEAT_S = 5.0
# A run on another host whose process sent no heartbeat for this long is taken for dead.
LEASE_S = 60.0
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
Emit = Callable[[str, dict[str, Any]], None]


def request_hash(kind: str, thread_id: str, body: Mapping[str, Any]) -> str:
    """Return the fingerprint of a request, to tell a re-post from another request with the same key."""
    text = json.dumps({"kind": kind, "thread": thread_id, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RunStore:
    """The ``api_runs`` and ``api_run_events`` tables."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def claim(self, *, thread_id: str, user_id: str, key: str | None, fingerprint: str,
              kind: str) -> tuple[dict[str, Any], bool]:
        """Return (run, created): the run of ``key`` if there is one, else a new running run.

        Raises:
            Problem: 422 when the key was used for another request; 409 when another run is
                working on the thread.
        """
        run_id = uuid.uuid4().hex
        with self.pool.connection() as conn:
            if key is not None:
                existing = self._by_key(conn, user_id, key)
                if existing is not None:
                    return self._same(existing, fingerprint), False
            try:
                row = conn.execute(
                    "INSERT INTO api_runs (run_id, thread_id, user_id, idempotency_key, request_hash, kind, owner)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING *",
                    (run_id, thread_id, user_id, key, fingerprint, kind, self.owner),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                raise Problem(404, "unknown thread") from None
            if row is None and self._reap_thread(conn, thread_id):
                row = conn.execute(  # the thread was held by a dead process's run: try once more
                    "INSERT INTO api_runs (run_id, thread_id, user_id, idempotency_key, request_hash, kind, owner)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING *",
                    (run_id, thread_id, user_id, key, fingerprint, kind, self.owner),
                ).fetchone()
            if row is not None:
                return dict(row), True
            if key is not None:
                existing = self._by_key(conn, user_id, key)
                if existing is not None:
                    return self._same(existing, fingerprint), False
            busy = conn.execute(
                "SELECT run_id FROM api_runs WHERE thread_id = %s AND status = 'running'", (thread_id,)
            ).fetchone()
        where = f"; follow it at /v1/runs/{busy['run_id']}/events" if busy else ""  # type: ignore[call-overload]
        raise Problem(409, f"another turn is running on this thread{where}")

    def _dead(self, owner: str, heartbeat_age_s: float) -> bool:
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        return heartbeat_age_s > LEASE_S

    def _reap_thread(self, conn: Any, thread_id: str) -> bool:
        row = conn.execute(
            "SELECT run_id FROM api_runs WHERE thread_id = %s AND status = 'running'", (thread_id,)).fetchone()
        return row is not None and self.reap_if_dead(str(row["run_id"]))

    def reap_if_dead(self, run_id: str) -> bool:
        """Fail a running run whose process is gone, with an ``error`` and a ``done`` event; True if it did."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT owner, extract(epoch FROM now() - heartbeat_at) AS age FROM api_runs"
                " WHERE run_id = %s AND status = 'running'", (run_id,)).fetchone()
            if row is None or not self._dead(str(row["owner"]), float(row["age"])):  # type: ignore[call-overload]
                return False
            with conn.transaction():
                taken = conn.execute(
                    "UPDATE api_runs SET status = 'failed', finished_at = now() WHERE run_id = %s"
                    " AND status = 'running' RETURNING run_id", (run_id,)).fetchone()
                if taken is None:
                    return False  # another process reaped it first
                last = conn.execute("SELECT coalesce(max(seq), 0) AS n FROM api_run_events WHERE run_id = %s",
                                    (run_id,)).fetchone()
                seq = int(last["n"])  # type: ignore[call-overload,index]
                detail = ("the process running this turn stopped; the thread is as its last checkpoint left it "
                          "(read it with GET /v1/threads/{id})")
                for offset, (event, data) in enumerate((("error", {"status": 503, "detail": detail}),
                                                        (TERMINAL, {"status": "failed"})), start=1):
                    conn.execute("INSERT INTO api_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s)",
                                 (run_id, seq + offset, event, Jsonb(data)))
        log.warning("run %s of a stopped process (%s) marked failed", run_id, row["owner"])  # type: ignore[call-overload]
        return True

    def heartbeat(self) -> None:
        """Renew the lease of this process's running runs."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE api_runs SET heartbeat_at = now() WHERE owner = %s AND status = 'running'",
                         (self.owner,))

    def claim_existing(self, *, user_id: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """Return the run of ``key`` (422 if it was another request), or None."""
        with self.pool.connection() as conn:
            row = self._by_key(conn, user_id, key)
        return None if row is None else self._same(row, fingerprint)

    @staticmethod
    def _by_key(conn: Any, user_id: str, key: str) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT * FROM api_runs WHERE user_id = %s AND idempotency_key = %s", (user_id, key)
        ).fetchone()
        return None if row is None else dict(row)

    @staticmethod
    def _same(row: dict[str, Any], fingerprint: str) -> dict[str, Any]:
        if row["request_hash"] != fingerprint:
            raise Problem(422, "this Idempotency-Key was already used for a different request")
        return row

    def get(self, run_id: str) -> dict[str, Any] | None:
        """Return a run, or None."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM api_runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else dict(row)

    def append(self, run_id: str, seq: int, event: str, data: Mapping[str, Any]) -> None:
        """Store event ``seq`` of a run."""
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO api_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s)",
                         (run_id, seq, event, Jsonb(dict(data))))

    def finish(self, run_id: str, status: str, *, seq: int, data: Mapping[str, Any]) -> None:
        """Store the terminal event and mark the run done or failed, in one transaction.

        A client that reads ``done`` may post its next message at once: the thread is free by then.
        """
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO api_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s)",
                         (run_id, seq, TERMINAL, Jsonb(dict(data))))
            conn.execute("UPDATE api_runs SET status = %s, finished_at = now() WHERE run_id = %s",
                         (status, run_id))

    def events_after(self, run_id: str, seq: int, limit: int = 200) -> tuple[list[dict[str, Any]], str]:
        """Return the run's events after ``seq`` and the run's status (one snapshot)."""
        with self.pool.connection() as conn:
            status = conn.execute("SELECT status FROM api_runs WHERE run_id = %s", (run_id,)).fetchone()
            rows = conn.execute(
                "SELECT seq, event, data FROM api_run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (run_id, seq, limit),
            ).fetchall()
        return [dict(r) for r in rows], (str(status["status"]) if status else "missing")  # type: ignore[call-overload]


def _decision(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("stage", "layer", "action", "reason") if k in d}


def update_events(update: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Turn one graph update into events: guard decisions and tool progress (never model text)."""
    events: list[tuple[str, dict[str, Any]]] = []
    for node, change in update.items():
        if not isinstance(change, Mapping) or node.startswith("__"):
            continue
        # A new turn's first update replaces the state's decisions (an Overwrite of the list).
        decisions = [_decision(d) for d in written(change.get("decisions")) or [] if isinstance(d, Mapping)]
        if decisions or "input_action" in change:
            data: dict[str, Any] = {"node": node, "decisions": decisions}
            if "input_action" in change:
                data["input_action"] = change["input_action"]
            events.append(("guard", data))
        for message in change.get("messages") or []:
            if isinstance(message, ToolMessage):
                try:
                    status = json.loads(str(message.content)).get("status")
                except (ValueError, AttributeError):
                    status = None
                events.append(("tool", {"tool": message.name, "status": status or message.status}))
    return events


def _gate(gate: PendingInterrupt) -> tuple[str, dict[str, Any]]:
    if gate.kind in ("confirm", "question"):
        value = gate.value
        data: dict[str, Any] = {"interrupt_id": gate.id, "kind": gate.kind, "text": interrupt_text(gate)}
        for key in ("args_hash", "amount_usd", "direction", "tool"):
            if key in value:
                data[key] = value[key]
        if gate.kind == "question":
            data["choices"] = [{"label": c.get("label"), "value": c.get("value")}
                               for c in value.get("choices") or [] if isinstance(c, dict)]
        return "gate", data
    return "review", {"interrupt_id": gate.id, "status": "pending",
                      "text": "Your request is waiting for a human reviewer; you will see the answer here."}


def turn_events(result: TurnResult) -> list[tuple[str, dict[str, Any]]]:
    """Turn a finished turn into events: gates, review notices, and the guarded answer by sentence."""
    events: list[tuple[str, dict[str, Any]]] = []
    if result.invalid:
        events.append(("error", {"status": 422, "detail": result.invalid}))
    events.extend(_gate(p) for p in result.pending)
    if result.notice:
        events.append(("notice", {"text": result.notice}))
    # The answer is the thread's last message when the turn ended (it passed guard_output, or
    # is the code's refusal); text the model wrote beside tool calls never passed it.
    last = result.messages[-1] if result.messages else None
    if isinstance(last, AIMessage) and not last.tool_calls and last.content and not result.pending:
        parts = [p for p in _SENTENCE.split(str(last.content)) if p]
        for i, part in enumerate(parts):
            events.append(("answer", {"text": part, "index": i, "final": i == len(parts) - 1,
                                      "message_id": last.id}))
    return events


class Runner:
    """Run turns on a bounded pool of threads, storing each event as it happens."""

    def __init__(self, *, app: AirlockApp, store: RunStore, workers: int,
                 notify: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.store = store
        self.notify = notify or (lambda _run_id: None)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airlock-run")
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="airlock-run-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat()
            except Exception:  # the database may be briefly away; the lease is generous
                log.exception("run heartbeat failed")

    def start(self, run: Mapping[str, Any], turn: Callable[[], TurnResult]) -> None:
        """Run ``turn`` for ``run`` in the background; its events go to the store."""
        self.executor.submit(self._run, str(run["run_id"]), str(run["thread_id"]), turn)

    def _run(self, run_id: str, thread_id: str, turn: Callable[[], TurnResult]) -> None:
        seq = 0

        def emit(event: str, data: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            self.store.append(run_id, seq, event, data)
            self.notify(run_id)

        status, outcome = "failed", "error"
        try:
            emit("run", {"run_id": run_id, "thread_id": thread_id})
            def observe(update: dict[str, Any]) -> None:
                for event, data in update_events(update):
                    emit(event, data)

            with self.app.observe(observe):
                result = turn()
            for event, data in turn_events(result):
                emit(event, data)
            status = "done"
            outcome = ("invalid" if result.invalid else "paused" if result.pending else "completed")
        except NotAllowedError as exc:  # e.g. the gate was answered elsewhere meanwhile
            emit("error", {"status": 409, "detail": str(exc)})
        except Exception:
            log.exception("run %s failed", run_id)
            emit("error", {"status": 500, "detail": "the turn failed; see the server log"})
        finally:
            self.store.finish(run_id, status, seq=seq + 1, data={"status": outcome})
            self.notify(run_id)

    def close(self) -> None:
        """Wait for running turns, then stop."""
        self.executor.shutdown(wait=True)
        self._stop.set()
