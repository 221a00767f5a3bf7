"""io.notify through the outbox: same-transaction enqueue, real SMTP (aiosmtpd) and a real failing webhook.

The worker is driven deterministically (``run_once``) or, for the crash, run as a real
``airlock outbox run`` process that is SIGKILLed while the SMTP server holds its reply: the
message was received but never marked, the next worker sends it again with the same
Message-ID, and the receiver, deduplicating by Message-ID, has exactly one e-mail per review.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.message import Message
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from graph.notify import NotifySettings, NotifySettingsError, render_email
from graph.outbox import Outbox, OutboxStore, OutboxWorker, backoff_delay
from graph.service import AirlockApp
from nodes.metrics import init_metrics
from tests.api_server import free_port
from tests.conftest import ROOT, drop_database, make_database
from tests.helpers import USER, make_services

SENDER = "airlock@example.org"
STAFF = "reviewers@example.org"
HOOK_SECRET = "webhook-secret-for-tests-0123456789abcdef"
BAGS = "Add 2 checked bags to reservation VAAOXJ"
REVIEWER_ROLES = ["reviewer", "supervisor"]


# -- no database --------------------------------------------------------------------------------
def test_settings_are_validated_and_secrets_never_shown() -> None:
    base = {"AIRLOCK_SMTP_HOST": "smtp.example.org", "AIRLOCK_SMTP_FROM": SENDER, "AIRLOCK_NOTIFY_EMAIL_TO": STAFF,
            "AIRLOCK_SMTP_USER": "mailer", "AIRLOCK_SMTP_PASSWORD": "hunter2-smtp-password",
            "AIRLOCK_NOTIFY_WEBHOOK_URL": "https://hooks.example.org/in?token=url-token-secret",
            "AIRLOCK_NOTIFY_WEBHOOK_SECRET": HOOK_SECRET}
    settings = NotifySettings.from_env(base)
    assert settings.enabled and settings.routes() == [("email", "staff"), ("webhook", "staff")]
    for shown in (repr(settings), settings.describe()):
        for secret in ("hunter2-smtp-password", "url-token-secret", HOOK_SECRET):
            assert secret not in shown
    assert NotifySettings.from_env({}).enabled is False
    bad = {
        "AIRLOCK_OUTBOX_MAX_ATTEMPTS": ("0", "AIRLOCK_OUTBOX_MAX_ATTEMPTS"),
        "AIRLOCK_NOTIFY_EVENTS": ("review.decided,lunch", "AIRLOCK_NOTIFY_EVENTS"),
        "AIRLOCK_SMTP_TLS": ("none", "AIRLOCK_SMTP_TLS"),  # plain SMTP only to loopback
        "AIRLOCK_NOTIFY_EMAIL_TO": ("not-an-address", "AIRLOCK_NOTIFY_EMAIL_TO"),
        "AIRLOCK_NOTIFY_WEBHOOK_URL": ("file:///etc/passwd", "AIRLOCK_NOTIFY_WEBHOOK_URL"),
        "AIRLOCK_NOTIFY_WEBHOOK_SECRET": ("short", "AIRLOCK_NOTIFY_WEBHOOK_SECRET"),
        "AIRLOCK_OUTBOX_BACKOFF_S": ("abc", "AIRLOCK_OUTBOX_BACKOFF_S"),
        "AIRLOCK_SMTP_PORT": ("99999", "AIRLOCK_SMTP_PORT"),
        "AIRLOCK_OUTBOX_LEASE_S": ("5", "AIRLOCK_OUTBOX_LEASE_S"),  # not longer than the 10 s timeout
    }
    for name, (value, named) in bad.items():
        with pytest.raises(NotifySettingsError, match=named):
            NotifySettings.from_env({**base, name: value})
    with pytest.raises(NotifySettingsError, match="AIRLOCK_SMTP_HOST"):
        NotifySettings.from_env({"AIRLOCK_NOTIFY_EMAIL_TO": STAFF})


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    settings = NotifySettings(backoff_s=2, backoff_max_s=30)
    assert [backoff_delay(n, settings, jitter=0) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]
    assert backoff_delay(1, settings, jitter=0.25) == 2.5


def test_an_email_carries_the_key_as_message_id_and_no_arguments() -> None:
    row = {"id": 1, "message_key": "airlock-abc", "kind": "review.decided", "channel": "email", "audience": "customer",
           "thread_id": "t1", "tool": "update_reservation_baggages", "audit_seq": 7,
           "payload": {"decision": "approve", "reviewer": "sam"}}
    message = render_email(row, sender=SENDER, recipients=["ada@example.com"])
    assert message["Message-ID"] == "<airlock-abc@example.org>"
    body = message.get_content()
    assert "approve" in body and "update_reservation_baggages" not in body and "sam" not in body


# -- receivers ------------------------------------------------------------------------------------
class Inbox:
    """An aiosmtpd handler that keeps every message; it can hold its reply to the first one."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.messages: list[Message] = []
        self.changed = threading.Condition()
        self.hold_first = hold_first
        self.received = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        message["X-Test-Rcpt"] = ",".join(envelope.rcpt_tos)
        with self.changed:
            self.messages.append(message)
            first = len(self.messages) == 1
            self.changed.notify_all()
        if self.hold_first and first:
            self.received.set()
            # Hold the 250 reply until the test has killed the sender: received, never confirmed.
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
        return "250 OK"

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.messages) >= count, timeout=120), self.messages

    def distinct(self) -> dict[str, Message]:
        """Return the messages deduplicated by Message-ID, as a receiver does."""
        return {str(m["Message-ID"]): m for m in self.messages}


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox(hold_first=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller
    finally:
        inbox.release.set()
        controller.stop()


class Hook:
    """A local HTTP server that answers every POST with ``status`` and records it."""

    def __init__(self) -> None:
        self.status = 500
        self.requests: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=in-the-query"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- with Postgres ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def database(server_url: str) -> Iterator[str]:
    name, url = make_database(server_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def services(database: str) -> Iterator[Any]:
    svc = make_services(database)
    yield svc
    svc.close()


@pytest.fixture
def app(services: Any) -> Iterator[AirlockApp]:
    """The application with a clean outbox; each test installs its own enqueue settings."""
    with services.pool.connection() as conn:
        conn.execute("DELETE FROM outbox")
    saved = list(services.audit.listeners)
    yield AirlockApp(services=services)
    services.audit.listeners[:] = saved


def _writes(services: Any) -> list[str]:
    return [name for name, spec in services.domain.tools.items() if spec.write]


def _outbox(services: Any, **where: str) -> list[dict[str, Any]]:
    sql = "SELECT * FROM outbox" + (" WHERE " + " AND ".join(f"{k} = %s" for k in where) if where else "")
    with services.pool.connection() as conn:
        return [dict(r) for r in conn.execute(sql + " ORDER BY id", tuple(where.values())).fetchall()]


def _decided_review(app: AirlockApp) -> str:
    """Escalate a new conversation to a human and approve it; return the review id."""
    thread_id = app.new_thread(user_id=USER)
    app.send(thread_id=thread_id, user_id=USER, text="Please transfer me to a human agent")
    case = next(r for r in app.list_reviews(roles=REVIEWER_ROLES) if r["thread_id"] == thread_id)
    app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER_ROLES, action="approve")
    return str(case["review_id"])


@pytest.mark.postgres
@pytest.mark.slow
def test_a_notice_commits_with_its_event_or_not_at_all(app: AirlockApp, services: Any) -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_tls="none", smtp_from=SENDER, email_to=(STAFF,))
    services.audit.listeners.append(Outbox(settings, writes=_writes(services)).on_audit_event)
    thread_id = app.new_thread(user_id=USER)
    with pytest.raises(RuntimeError), services.pool.connection() as conn, conn.transaction():
        services.audit.append_on(conn.cursor(), "escalation.decided", actor="sam", thread_id=thread_id,
                                 tool="t", payload={"decision": "approve"})
        raise RuntimeError("the write this event records failed")
    assert _outbox(services) == []
    services.audit.append("escalation.decided", actor="sam", thread_id=thread_id, tool="t",
                          payload={"decision": "approve", "edited_args": {"name": "Ada"}})
    services.audit.append("guard.input", actor=USER, thread_id=thread_id, payload={})  # not announced
    rows = _outbox(services)
    assert [(r["kind"], r["channel"], r["audience"]) for r in rows] == [("review.decided", "email", "staff")]
    assert rows[0]["payload"] == {"decision": "approve"}  # never the arguments


@pytest.mark.postgres
@pytest.mark.slow
def test_one_email_per_decided_review_when_the_worker_is_killed_between_send_and_mark(
    app: AirlockApp, services: Any, database: str, smtp: tuple[Inbox, Controller],
) -> None:
    inbox, controller = smtp
    env = {"AIRLOCK_SMTP_HOST": "127.0.0.1", "AIRLOCK_SMTP_PORT": str(controller.port), "AIRLOCK_SMTP_TLS": "none",
           "AIRLOCK_SMTP_FROM": SENDER, "AIRLOCK_NOTIFY_EMAIL_TO": STAFF, "AIRLOCK_NOTIFY_EVENTS": "review.decided",
           "AIRLOCK_OUTBOX_BATCH": "1", "AIRLOCK_OUTBOX_POLL_S": "0.05"}
    settings = NotifySettings.from_env(env)
    services.audit.listeners.append(Outbox(settings, writes=_writes(services)).on_audit_event)
    reviews = [_decided_review(app), _decided_review(app)]
    rows = _outbox(services)
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"review.decided"}

    worker = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "outbox", "run", "--log-level", "warning"], cwd=ROOT,
        env={**os.environ, **env, "DATABASE_URL": database}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert inbox.received.wait(120), "the worker sent nothing"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    inbox.release.set()
    held = [r for r in _outbox(services) if r["status"] == "sending"]
    assert len(held) == 1 and held[0]["holder"].split(":")[1] == str(worker.pid)  # sent, never marked

    done = OutboxWorker(pool=services.pool, settings=settings).run_once(limit=10)
    assert (done.recovered, done.sent) == (1, 2)
    inbox.wait_for(3)
    assert len(inbox.messages) == 3  # the killed worker's message went out twice ...
    distinct = inbox.distinct()
    assert len(distinct) == len(reviews) == 2  # ... with one Message-ID: one e-mail per decided review
    keys = {f"<{r['message_key']}@example.org>" for r in _outbox(services)}
    assert set(distinct) == keys
    assert all(r["status"] == "sent" and r["attempts"] in (1, 2) for r in _outbox(services))
    assert all(m["X-Test-Rcpt"] == STAFF and "Review decided: approve" in str(m["Subject"]) for m in inbox.messages)
    assert OutboxWorker(pool=services.pool, settings=settings).run_once().claimed == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_a_failing_webhook_is_dead_lettered_after_n_tries_and_the_cli_retries_it(
    app: AirlockApp, services: Any, database: str,
) -> None:
    reader = init_metrics(reader=InMemoryMetricReader())
    assert isinstance(reader, InMemoryMetricReader), "metrics were initialised with another reader in this process"
    before = _attempts(reader)
    hook = Hook()
    try:
        settings = NotifySettings(webhook_url=hook.url, webhook_secret=HOOK_SECRET, max_attempts=3, backoff_s=10,
                                  events=("confirm.waiting", "change.executed"))
        services.audit.listeners.append(Outbox(settings, writes=_writes(services)).on_audit_event)
        thread_id = app.new_thread(user_id=USER)
        result = app.send(thread_id=thread_id, user_id=USER, text=BAGS)
        assert [p.kind for p in result.pending] == ["confirm"]
        rows = _outbox(services)
        assert [(r["kind"], r["channel"]) for r in rows] == [("confirm.waiting", "webhook")], rows
        row = rows[0]
        worker = OutboxWorker(pool=services.pool, settings=settings)
        waits = []
        for attempt in (1, 2, 3):
            with services.pool.connection() as conn:
                started = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
            done = worker.run_once()
            assert done.claimed == 1
            [row] = _outbox(services)
            assert row["attempts"] == attempt and "HTTP 500" in row["last_error"]
            assert "in-the-query" not in row["last_error"]
            if attempt < 3:
                assert row["status"] == "pending"
                # On the database's clock, from before the attempt: the wait is at least the backoff.
                waits.append((row["next_attempt_at"] - started).total_seconds())
                assert worker.run_once().claimed == 0  # not due yet: the backoff holds it
                with services.pool.connection() as conn:  # time passes
                    conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = %s", (row["id"],))
        assert row["status"] == "dead" and row["dead_at"] is not None
        assert waits[0] >= 10 and waits[1] >= 20  # 10 s, then doubled (exact values: the backoff unit test)
        assert worker.run_once().claimed == 0
        assert len(hook.requests) == 3
        assert {h["idempotency-key"] for h, _ in hook.requests} == {row["message_key"]}
        for headers, body in hook.requests:
            mac = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-airlock-signature"] == f"sha256={mac}"
            assert json.loads(body)["kind"] == "confirm.waiting" and json.loads(body)["thread_id"] == thread_id

        env = {**os.environ, "DATABASE_URL": database}
        listed = subprocess.run([sys.executable, "-m", "ui.cli", "outbox", "list", "--json"], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True)
        [dead] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert dead["id"] == row["id"] and dead["status"] == "dead" and dead["attempts"] == 3
        wrong = subprocess.run([sys.executable, "-m", "ui.cli", "outbox", "retry", str(row["id"] + 999)], cwd=ROOT,
                               env=env, capture_output=True, text=True, check=False)
        assert wrong.returncode == 2 and "not dead letters" in wrong.stderr and "Traceback" not in wrong.stderr
        subprocess.run([sys.executable, "-m", "ui.cli", "outbox", "retry", str(row["id"])], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        hook.status = 204
        assert worker.run_once().sent == 1
        assert len(hook.requests) == 4 and hook.requests[-1][0]["idempotency-key"] == row["message_key"]
        assert OutboxStore(services.pool).counts() == {"sent": 1}

        hook.status = 404  # a permanent refusal is not retried
        gate = result.pending[0]
        app.answer_confirm(thread_id=thread_id, user_id=USER, interrupt_id=gate.id, action="confirm")
        executed = _outbox(services, kind="change.executed")
        assert len(executed) == 1 and executed[0]["tool"] == "update_reservation_baggages"
        assert worker.run_once().dead == 1
        assert _outbox(services, kind="change.executed")[0]["attempts"] == 1
        after = _attempts(reader)
        # Deltas over this test only (other tests in the process may have created other series at 0).
        counted = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        assert counted == {("confirm.waiting", "webhook", "pending"): 2, ("confirm.waiting", "webhook", "dead"): 1,
                           ("confirm.waiting", "webhook", "sent"): 1, ("change.executed", "webhook", "dead"): 1}
    finally:
        hook.close()


def _attempts(reader: InMemoryMetricReader) -> dict[tuple[str, str, str], float]:
    """Return ``airlock_notifications`` by (kind, channel, outcome)."""
    out: dict[tuple[str, str, str], float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "airlock_notifications":
                    for p in metric.data.data_points:
                        a = dict(p.attributes or {})
                        out[(str(a["kind"]), str(a["channel"]), str(a["outcome"]))] = float(p.value)
    return out


class Directory:
    """A domain's contact hook (graph.notify.ContactDirectory)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.asked: list[str] = []

    def contact_address(self, customer_id: str) -> str | None:
        self.asked.append(customer_id)
        return self.address


@pytest.mark.postgres
@pytest.mark.slow
def test_the_customers_address_comes_from_the_domain(app: AirlockApp, services: Any,
                                                     smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    inbox.hold_first = False
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_tls="none", smtp_from=SENDER,
                              email_customers=True, events=("review.decided",))
    services.audit.listeners.append(Outbox(settings, writes=_writes(services)).on_audit_event)
    thread_id = app.new_thread(user_id=USER)
    services.audit.append("escalation.decided", actor="sam", thread_id=thread_id, tool="update_reservation_flights",
                          payload={"decision": "reject", "reviewer": "sam"})
    directory = Directory("ada@example.com")
    assert OutboxWorker(pool=services.pool, settings=settings, contacts=directory).run_once().sent == 1
    assert directory.asked == [USER]
    inbox.wait_for(1)
    [message] = inbox.messages
    assert message["X-Test-Rcpt"] == "ada@example.com"
    text = message.get_payload()
    assert "reject" in str(text) and "update_reservation_flights" not in str(text) and "sam" not in str(text)

    services.audit.append("escalation.decided", actor="sam", thread_id=thread_id, tool="t",
                          payload={"decision": "approve"})
    assert OutboxWorker(pool=services.pool, settings=settings, contacts=Directory(None)).run_once().skipped == 1
    assert len(inbox.messages) == 1


def test_commands_refuse_bad_settings_with_the_variables_name() -> None:
    ours = ("AIRLOCK_NOTIFY", "AIRLOCK_SMTP", "AIRLOCK_OUTBOX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    for command in (["serve", "--no-ui"], ["outbox", "stats"], ["outbox", "run", "--once"]):
        bad = subprocess.run([sys.executable, "-m", "ui.cli", *command], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "AIRLOCK_JWT_SECRET": "x" * 40, "AIRLOCK_OUTBOX_MAX_ATTEMPTS": "0"},
                             check=False)
        assert bad.returncode == 2 and "AIRLOCK_OUTBOX_MAX_ATTEMPTS" in bad.stderr, (command, bad.stderr)
        assert "Traceback" not in bad.stderr
    shown = subprocess.run([sys.executable, "-m", "ui.cli", "outbox", "retry", "--help"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and "--all" in shown.stdout


@pytest.mark.postgres
@pytest.mark.slow
def test_leases_are_skipped_while_held_and_taken_over_when_they_expire(app: AirlockApp, services: Any) -> None:
    settings = NotifySettings(webhook_url="http://127.0.0.1:9/hook", max_attempts=2)
    rows = {  # name: (status, holder, lease from now, attempts, due from now)
        "held_elsewhere": ("sending", "otherhost:1:1", "60 s", 1, "0 s"),
        "expired_elsewhere": ("sending", "otherhost:2:1", "-1 s", 1, "0 s"),
        "expired_last_try": ("sending", "otherhost:3:1", "-1 s", 2, "0 s"),
        "not_due": ("pending", None, None, 1, "60 s"),
        "locked_by_another_worker": ("pending", None, None, 0, "0 s"),
        "due": ("pending", None, None, 0, "0 s"),
    }
    ids: dict[str, int] = {}
    with services.pool.connection() as conn:
        for name, (status, holder, lease, attempts, due) in rows.items():
            ids[name] = conn.execute(
                "INSERT INTO outbox (message_key, kind, channel, audience, dedupe_ref, payload, status, holder,"
                " lease_until, attempts, next_attempt_at) VALUES (%s, 'review.decided', 'webhook', 'staff', %s, '{}',"
                " %s, %s, now() + %s::interval, %s, now() + %s::interval) RETURNING id",
                (f"k-{name}", name, status, holder, lease, attempts, due)).fetchone()["id"]
    other = psycopg.connect(services.pool.conninfo)
    try:
        # Another worker's transaction holds this row: SKIP LOCKED passes it by instead of waiting.
        other.execute("SELECT 1 FROM outbox WHERE id = %s FOR UPDATE", (ids["locked_by_another_worker"],))
        worker = OutboxWorker(pool=services.pool, settings=settings)
        assert worker.recover() == 1  # the expired lease of the last attempt is a dead letter
        claimed = {r["id"]: r for r in worker.claim(limit=10)}
    finally:
        other.rollback()
        other.close()
    assert set(claimed) == {ids["expired_elsewhere"], ids["due"]}
    assert claimed[ids["expired_elsewhere"]]["attempts"] == 2 and claimed[ids["due"]]["attempts"] == 1
    assert all(r["holder"] == worker.holder for r in claimed.values())
    status = {r["id"]: r["status"] for r in _outbox(services)}
    assert status[ids["expired_last_try"]] == "dead" and status[ids["held_elsewhere"]] == "sending"
    assert status[ids["not_due"]] == "pending" and status[ids["locked_by_another_worker"]] == "pending"
