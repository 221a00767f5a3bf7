"""Lists that do not load states (issue 13): the thread list and the reviewer inbox come from tables.

The thread list reads ``threads`` only (its ``status`` and ``pending`` columns follow the
interrupts as turns run); the inbox pages with a keyset cursor and says the true count.
Real service and database; no timings: reads of checkpoint state are counted.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from graph.paging import InvalidCursorError
from graph.service import AirlockApp
from tests.helpers import USER, bags_call, make_app, make_services, summarise
from ui.app import AirlockUI
from ui.auth import DEMO_ACCOUNTS_PATH, load_accounts
from ui.review_cli import review_main

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
REVIEWER = ["reviewer", "supervisor"]
HUMAN = "Please transfer me to a human agent"


@pytest.fixture
def services(database_url: str) -> Iterator[Any]:
    s = make_services(database_url)
    yield s
    s.close()


@pytest.fixture
def app(services: Any) -> AirlockApp:
    return AirlockApp(services=services)


class _Counted:
    """Count the calls of ``graph.get_state`` (a read of one thread's checkpoint)."""

    def __init__(self, app: AirlockApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = app.graph.get_state

        def counted(config: Any, *args: Any, **kw: Any) -> Any:
            self.calls.append(str(config["configurable"]["thread_id"]))
            return real(config, *args, **kw)

        monkeypatch.setattr(app.graph, "get_state", counted)


def _customer() -> Any:
    accounts = load_accounts(DEMO_ACCOUNTS_PATH)
    return next(a for a in accounts.accounts.values() if a.customer_id == USER)


# -- the thread list ---------------------------------------------------------------------------
def test_the_chat_view_reads_the_state_of_the_shown_thread_only(app, monkeypatch):
    threads = [app.new_thread(user_id=USER) for _ in range(6)]
    app.send(thread_id=threads[0], user_id=USER, text=HUMAN)  # paused for a reviewer
    app.send(thread_id=threads[1], user_id=USER, text="What can you help me with?")
    counted = _Counted(app, monkeypatch)

    rows = app.list_threads(user_id=USER)
    assert {r["thread_id"] for r in rows} == set(threads)
    assert counted.calls == []
    assert next(r for r in rows if r["thread_id"] == threads[0])["pending"] == ["review"]

    ui = AirlockUI(app=app, accounts=load_accounts(DEMO_ACCOUNTS_PATH))
    view = ui.chat_view(_customer(), None)
    assert len(view.threads) == 6
    assert counted.calls == [view.thread_id]  # the thread shown, not every listed one


def test_the_status_follows_the_interrupts(services, monkeypatch):
    app, _ = make_app(services, [bags_call(3, 2), summarise])
    gated = app.new_thread(user_id=USER)
    paused = app.send(thread_id=gated, user_id=USER, text="add 2 bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["confirm"]
    review_app = AirlockApp(services=services)
    asked = review_app.new_thread(user_id=USER)
    review_app.send(thread_id=asked, user_id=USER, text=HUMAN)
    quiet = app.new_thread(user_id=USER)

    def status() -> dict[str, tuple[str, list[str]]]:
        return {r["thread_id"]: (r["status"], r["pending"]) for r in app.list_threads(user_id=USER)}

    assert status() == {gated: ("waiting_customer", ["confirm"]), asked: ("waiting_review", ["review"]),
                        quiet: ("idle", [])}
    app.answer_confirm(thread_id=gated, user_id=USER, interrupt_id=paused.pending[0].id, action="confirm")
    (case,) = review_app.list_reviews(roles=REVIEWER)
    review_app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert status() == {gated: ("idle", []), asked: ("idle", []), quiet: ("idle", [])}


def test_a_status_read_from_an_older_checkpoint_never_overwrites_a_newer_one(app):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text=HUMAN)
    paused = app._snapshot(thread)  # read by a slow process, before another one resumes the thread
    (case,) = app.list_reviews(roles=REVIEWER)
    app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    app._record_status(thread, paused)  # the slow process writes what it read
    (row,) = app.list_threads(user_id=USER)
    assert (row["status"], row["pending"]) == ("idle", [])


def test_a_thread_from_before_the_columns_is_read_once_then_from_the_table(app, monkeypatch):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text=HUMAN)
    with app.services.pool.connection() as conn:  # as migration 018 leaves an existing row
        conn.execute("UPDATE threads SET status = NULL, pending = '{}' WHERE thread_id = %s", (thread,))
    counted = _Counted(app, monkeypatch)
    (row,) = app.list_threads(user_id=USER)
    assert (row["status"], row["pending"]) == ("waiting_review", ["review"])
    assert counted.calls == [thread]
    app.list_threads(user_id=USER)
    assert counted.calls == [thread]  # stored: not read again


def test_thread_pages_return_every_thread_once_while_threads_are_added(app):
    first = [app.new_thread(user_id=USER) for _ in range(7)]
    app.new_thread(user_id="someone_else_1")
    seen: list[str] = []
    cursor = None
    while True:
        page = app.thread_page(user_id=USER, limit=3, cursor=cursor)
        seen += [r["thread_id"] for r in page.items]
        assert page.total >= 7
        app.new_thread(user_id=USER)  # a new thread while the customer pages: it goes to the front
        if page.next is None:
            break
        cursor = page.next
    assert len(seen) == len(set(seen))
    assert set(first) <= set(seen)
    with pytest.raises(InvalidCursorError):
        app.thread_page(user_id=USER, cursor="not-a-cursor")


RESUME = """
import json, sys
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
url, thread = sys.argv[1], sys.argv[2]
services = AirlockServices.start(AirlockSettings(database_url=url, model_provider="offline"))
app = AirlockApp(services=services)
(case,) = [r for r in app.list_reviews(roles=["reviewer", "supervisor"]) if r["thread_id"] == thread]
result = app.decide_review(review_id=case["review_id"], reviewer="sam", roles=["reviewer", "supervisor"],
                           action="approve")
print(json.dumps({"pending": len(result.pending)}), flush=True)
services.close()
"""


@pytest.mark.slow
def test_the_status_follows_a_resume_in_another_process(app, database_url):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text=HUMAN)
    assert app.list_threads(user_id=USER)[0]["status"] == "waiting_review"
    done = subprocess.run([sys.executable, "-c", RESUME, database_url, thread], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"pending": 0}
    (row,) = app.list_threads(user_id=USER)
    assert (row["status"], row["pending"]) == ("idle", [])


# -- the inbox --------------------------------------------------------------------------------
def _pending_cases(services: Any, n: int, *, assignee: str = "supervisor", due_in: float = 3600.0,
                   spread: float = 1.0) -> list[str]:
    """Insert ``n`` pending cases directly (no graph); return their ids."""
    ids = [uuid.uuid4().hex[:16] for _ in range(n)]
    payload = Jsonb({"action_requests": [{"name": "transfer_to_human_agents", "args": {}, "description": "x"}]})
    with services.pool.connection() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reviews (review_id, thread_id, interrupt_id, user_id, assignee, tool, escalation_id, phase,"
            " payload, timeout_action, due_at) VALUES (%s, %s, %s, %s, %s, 'transfer_to_human_agents', 'handoff',"
            " 'before', %s, 'reject', now() + make_interval(secs => %s))",
            [(rid, f"t-{rid}", f"i-{rid}", USER, assignee, payload, due_in + (i % 17) * spread)
             for i, rid in enumerate(ids)],
        )
    return ids


def test_the_inbox_says_the_true_count_over_200(app, services):
    mine = _pending_cases(services, 260)
    _pending_cases(services, 5, assignee="billing")  # another team's cases are not counted
    page = app.review_page(roles=REVIEWER, limit=50)
    assert page.total == 260
    assert len(page.items) == 50 and page.next is not None
    assert len(app.list_reviews(roles=REVIEWER)) == 260  # no silent cap either
    assert {r["review_id"] for r in app.list_reviews(roles=REVIEWER)} == set(mine)


def test_inbox_pages_return_every_case_once_while_cases_are_added(app, services):
    before = _pending_cases(services, 45)
    seen: list[str] = []
    cursor = None
    keys = []
    while True:
        page = app.review_page(roles=REVIEWER, limit=10, cursor=cursor)
        seen += [r["review_id"] for r in page.items]
        keys += [(r["due_at"], r["review_id"]) for r in page.items]
        # New cases arrive while the reviewer pages: some due sooner, some later.
        _pending_cases(services, 3, due_in=60.0)
        _pending_cases(services, 3, due_in=7200.0)
        if page.next is None:
            break
        cursor = page.next
    assert len(seen) == len(set(seen))  # none twice
    assert set(before) <= set(seen)  # none of those already there is lost
    assert keys == sorted(keys)  # one stable order: due time, then id
    with pytest.raises(InvalidCursorError):
        app.review_page(roles=REVIEWER, cursor="bm90IGEgY3Vyc29y")


def test_the_cli_pages_the_inbox(app, services, monkeypatch, capsys):
    _pending_cases(services, 5)
    monkeypatch.setattr(sys, "stdin", io.StringIO("review\n"))
    assert review_main(["--user", "sam", "--password-stdin", "list", "--limit", "2", "--json"], app=app) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("review\n"))
    assert review_main(["--user", "sam", "--password-stdin", "list", "--limit", "2",
                        "--cursor", page["next"]], app=app) == 0
    text = capsys.readouterr().out
    assert "3–4 of 5 pending" in text and "--cursor" in text


def _ids(table: Any) -> list[str]:
    data = table.value["data"] if isinstance(table.value, dict) else table.value
    return [row[-1] for row in data]


def test_the_inbox_tab_pages_with_the_true_count(app, services):
    ids = _pending_cases(services, 30)
    ui = AirlockUI(app=app, accounts=load_accounts(DEMO_ACCOUNTS_PATH))
    request: Any = type("R", (), {"username": "sam"})()
    table, _choices, summary, _sig, cursors, *_ = ui.on_inbox(None, None, request, page_size=20)
    assert "30 pending" in summary.value and "1–20" in summary.value
    first = _ids(table)
    table, _choices, summary, _sig, cursors, *_ = ui.on_inbox_page(None, cursors, "next", request, page_size=20)
    assert "21–30 of 30" in summary.value
    second = _ids(table)
    assert sorted(first + second) == sorted(ids)
    table, _choices, summary, _sig, cursors, *_ = ui.on_inbox_page(None, cursors, "prev", request, page_size=20)
    assert _ids(table) == first
