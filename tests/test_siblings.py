"""Two sibling tool calls in one model turn; one pauses: the other executes exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from tests.helpers import CARD, RES, USER, ledger_rows, make_app, make_services, summarise, tool_payloads
from tools.airline.domain import AirlineDomain

pytestmark = pytest.mark.postgres


class CountingDomain(AirlineDomain):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.executed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def execute(self, tool, args, *, idempotency_key, guard=None):
        with self._lock:
            self.executed[tool] += 1
        return super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)


def test_sibling_call_runs_once_across_the_pause(database_url):
    holder: dict[str, CountingDomain] = {}

    def factory(*, pool):
        holder["d"] = CountingDomain(backend=AirlineDomain.from_pool(pool=pool).backend)
        return holder["d"]

    services = make_services(database_url, domain_factory=factory)
    try:
        both = AIMessage(content="", tool_calls=[
            {"name": "get_reservation_details", "args": {"reservation_id": RES}, "id": "call_read"},
            {"name": "update_reservation_baggages", "args": {
                "reservation_id": RES, "total_baggages": 4, "nonfree_baggages": 3, "payment_id": CARD},
             "id": "call_write"},
        ])
        app, model = make_app(services, [both, summarise])
        thread = app.new_thread(user_id=USER)
        paused = app.send(thread_id=thread, user_id=USER, text="show VAAOXJ and add 3 bags")
        assert [p.kind for p in paused.pending] == ["confirm"]
        assert holder["d"].executed == Counter({"get_reservation_details": 1})

        done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id,
                                  action="confirm")
        assert holder["d"].executed == Counter({"get_reservation_details": 1, "update_reservation_baggages": 1})
        results = {p.get("status") for p in tool_payloads(app.messages(thread))}
        assert "captured" in results
        tool_ids = [m.tool_call_id for m in app.messages(thread) if m.type == "tool"]
        call_ids = [c["id"] for m in app.messages(thread) if isinstance(m, AIMessage) for c in m.tool_calls]
        assert sorted(tool_ids) == sorted(call_ids) and len(set(call_ids)) == 2  # one answer per call
        assert len(ledger_rows(services, RES)) == 1 and done.pending == []
        assert model.call_count == 2
    finally:
        services.close()


class CrashingDomain(AirlineDomain):
    """Facts for one tool fail unexpectedly (a bug, a dropped connection)."""

    def facts(self, tool, args, *, user_id, conversation, conversation_id=None):
        if tool == "get_flight_status":
            raise RuntimeError("database went away")
        return super().facts(tool, args, user_id=user_id, conversation=conversation,
                             conversation_id=conversation_id)


def test_a_crashed_tool_task_does_not_strand_the_thread(database_url):
    services = make_services(database_url, domain_factory=lambda *, pool: CrashingDomain.from_pool(pool=pool))
    try:
        both = AIMessage(content="", tool_calls=[
            {"name": "get_reservation_details", "args": {"reservation_id": RES}, "id": "call_ok"},
            {"name": "get_flight_status", "args": {"flight_number": "HAT287", "date": "2024-05-24"}, "id": "call_bad"},
        ])
        app, model = make_app(services, [both, AIMessage(content="Sorry about that.")])
        thread = app.new_thread(user_id=USER)
        with pytest.raises(RuntimeError, match="database went away"):
            app.send(thread_id=thread, user_id=USER, text="status of VAAOXJ?")
        # The next turn works: the unanswered call gets an error answer right after its request.
        result = app.send(thread_id=thread, user_id=USER, text="hello again")
        assert result.reply == "Sorry about that."
        messages = app.messages(thread)
        calls = next(i for i, m in enumerate(messages) if isinstance(m, AIMessage) and m.tool_calls)
        answers = {m.tool_call_id for m in messages[calls + 1:calls + 3]}
        assert answers == {c["id"] for c in messages[calls].tool_calls} and len(answers) == 2
    finally:
        services.close()
