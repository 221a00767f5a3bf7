"""The decision is re-checked by the write itself: stale consent, splits, crashes and timeouts.

Each test models an attack or a failure seen by the adversarial suite of issue 7 and asserts on
the database (ledger, reservation, audit), never on what the model said.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from tests.helpers import (
    CARD,
    RES,
    USER,
    audit_types,
    bags_call,
    ledger_rows,
    make_app,
    make_services,
    policy_copy,
    reservation_doc,
    summarise,
    tool_payloads,
)
from tools.airline import POLICY_PATH
from tools.airline.domain import AirlineDomain

pytestmark = [pytest.mark.postgres]


def _confirm(app, thread, gate):
    return app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")


def test_consent_given_on_a_state_that_changed_does_not_write_and_asks_again(database_url):
    """Check, then act: two gates priced on the same reservation; the second is confirmed after the first wrote.

    The second gate quoted USD 100 for going from 0 to 2 paid bags. After the first write (to
    1 paid bag) the same call costs USD 50: the write must refuse the stale consent and raise
    a new gate with the new figures, never charge an amount nobody confirmed.
    """
    services = make_services(database_url)
    try:
        app, _ = make_app(services, [bags_call(2, 1, "a"), bags_call(3, 2, "b"), summarise, summarise])
        one, two = app.new_thread(user_id=USER), app.new_thread(user_id=USER)
        gate_a = app.send(thread_id=one, user_id=USER, text=f"add a bag to {RES}").pending[0]
        gate_b = app.send(thread_id=two, user_id=USER, text=f"add two bags to {RES}").pending[0]
        assert (gate_a.value["amount_usd"], gate_b.value["amount_usd"]) == (50.0, 100.0)

        assert tool_payloads(_confirm(app, one, gate_a).messages)[-1]["status"] == "captured"
        stale = _confirm(app, two, gate_b)
        assert [p.kind for p in stale.pending] == ["confirm"], "a new gate, not a write"
        fresh = stale.pending[0]
        assert fresh.value["args_hash"] != gate_b.value["args_hash"]
        assert fresh.value["amount_usd"] == 50.0
        assert "changed" in fresh.value.get("notice", "")
        assert [float(r["amount_usd"]) for r in ledger_rows(services, RES)] == [50.0]
        assert "confirm.rejected" in audit_types(services, two)

        assert tool_payloads(_confirm(app, two, fresh).messages)[-1]["status"] == "captured"
        assert [float(r["amount_usd"]) for r in ledger_rows(services, RES)] == [50.0, 50.0]
        assert reservation_doc(services, RES)["nonfree_baggages"] == 2
    finally:
        services.close()


def test_a_split_bag_request_escalates_where_the_whole_would(database_url):
    """Splitting: three additions of USD 750 instead of one of USD 2,250 (which needs a supervisor)."""
    services = make_services(database_url)
    try:
        paid = reservation_doc(services, RES)["nonfree_baggages"]
        total = reservation_doc(services, RES)["total_baggages"]
        steps = [bags_call(total + 15 * i, paid + 15 * i, f"split{i}") for i in (1, 2, 3)]
        app, _ = make_app(services, [steps[0], summarise, steps[1], summarise, steps[2], summarise])
        thread = app.new_thread(user_id=USER)
        for i in range(2):
            gate = app.send(thread_id=thread, user_id=USER, text=f"add 15 bags to {RES}").pending[0]
            assert gate.kind == "confirm" and gate.value["amount_usd"] == 750.0
            assert tool_payloads(_confirm(app, thread, gate).messages)[-1]["status"] == "captured", i
        third = app.send(thread_id=thread, user_id=USER, text=f"add 15 bags to {RES}")
        assert [p.kind for p in third.pending] == ["review"], "USD 1,500 + 750 in 24 h reaches the USD 2,000 review"
        assert third.pending[0].value["escalation_id"] == "large-charge"
        assert len(ledger_rows(services, RES)) == 2
    finally:
        services.close()


class _CrashAfterCommit(BaseException):
    """Stands for the process dying between the write's commit and the checkpoint."""


class _CrashingDomain(AirlineDomain):
    crash = True

    def execute(self, tool, args, *, idempotency_key, guard=None):
        result = super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)
        if self.tools[tool].write and _CrashingDomain.crash:
            _CrashingDomain.crash = False
            raise _CrashAfterCommit()
        return result


def test_after_a_crash_between_commit_and_checkpoint_the_customer_is_told_what_was_done(database_url, tmp_path):
    """Crash truth: the resumed node reads the recorded outcome; it neither asks again nor says 'nothing'."""
    data = yaml.safe_load(POLICY_PATH.read_text())
    # No retry wrapper here: the "crash" must end the run, as a killed process would.
    data["tools"]["update_reservation_baggages"] = [
        g for g in data["tools"]["update_reservation_baggages"] if g["type"] != "guardrail.resilience"
    ]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    services = make_services(database_url, policy=policy,
                             domain_factory=lambda *, pool: _CrashingDomain.from_pool(pool=pool))
    try:
        app, _ = make_app(services, [bags_call(2, 1, "crash"), summarise])
        thread = app.new_thread(user_id=USER)
        gate = app.send(thread_id=thread, user_id=USER, text=f"add a bag to {RES}").pending[0]
        with pytest.raises(_CrashAfterCommit):
            _confirm(app, thread, gate)
        assert len(ledger_rows(services, RES)) == 1  # committed, but the checkpoint never saw it
    finally:
        services.close()
    # A fresh process (new services) picks the paused thread up: the gate is still pending.
    services = make_services(database_url, policy=policy)
    try:
        app, _ = make_app(services, [summarise])
        pending = app.view(thread_id=thread, user_id=USER).pending
        assert [p.id for p in pending] == [gate.id]
        done = _confirm(app, thread, pending[0])
        assert not done.pending, "not asked again"
        payload = tool_payloads(done.messages)[-1]
        assert payload["status"] == "captured" and payload["amount_usd"] == 50.0
        assert len(ledger_rows(services, RES)) == 1
        types = audit_types(services, thread)
        assert types.count("tool.executed") == 1 and "tool.recovered" in types
        assert "confirm.declined" not in types
        with services.pool.connection() as conn:
            stuck = conn.execute("SELECT count(*) AS n FROM idempotency_keys WHERE status <> 'completed'").fetchone()
        assert stuck["n"] == 0
    finally:
        services.close()


class _SlowDomain(AirlineDomain):
    """The first write waits for the test's go-ahead: a backend slower than the policy's timeout."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.go = threading.Event()
        self.late_result: list[Any] = []
        self.slow = True

    def execute(self, tool, args, *, idempotency_key, guard=None):
        if self.tools[tool].write and self.slow:
            self.slow = False
            self.go.wait(timeout=120)
            result = super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)
            self.late_result.append(result)
            return result
        return super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)


def test_a_timed_out_write_is_fenced_and_its_late_attempt_changes_nothing(database_url, tmp_path):
    """Unknown outcome: the attempt outlives its timeout; the retry must not make it happen twice."""
    holder: dict[str, _SlowDomain] = {}

    def factory(*, pool):
        holder["d"] = _SlowDomain(backend=AirlineDomain.from_pool(pool=pool).backend)
        return holder["d"]

    policy = policy_copy(tmp_path, timeout="200ms", retries=0)
    services = make_services(database_url, policy=policy, domain_factory=factory)
    domain = holder["d"]
    try:
        calls = iter(range(100))

        def reactive(messages):
            last = messages[-1]
            if isinstance(last, HumanMessage):
                return bags_call(2, 1, f"slow{next(calls)}")
            assert isinstance(last, ToolMessage)
            return AIMessage(content=f"Result: {last.content}")

        app, _ = make_app(services, [reactive] * 4)
        thread = app.new_thread(user_id=USER)
        gate = app.send(thread_id=thread, user_id=USER, text=f"add a bag to {RES}").pending[0]
        first = tool_payloads(_confirm(app, thread, gate).messages)[-1]
        assert first["status"] == "unavailable" and first["executed"] is False
        domain.go.set()  # the slow attempt now reaches the database: the fence stops it
        while not domain.late_result:
            domain.go.wait(0.01)
        assert domain.late_result[0]["original_status"] == "fenced"
        assert ledger_rows(services, RES) == []

        again = app.send(thread_id=thread, user_id=USER, text=f"add a bag to {RES}")
        assert again.pending, (again.notice, again.messages[-3:])
        retry = tool_payloads(_confirm(app, thread, again.pending[0]).messages)[-1]
        assert retry["status"] == "captured"
        assert [float(r["amount_usd"]) for r in ledger_rows(services, RES)] == [50.0]
        assert json.dumps(reservation_doc(services, RES)).count(CARD) >= 1
    finally:
        services.close()


class _PausingDomain(AirlineDomain):
    """Holds call ``b`` after its gate-time checks passed, before its write's transaction starts."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.entered, self.go = threading.Event(), threading.Event()

    def execute(self, tool, args, *, idempotency_key, guard=None):
        if self.tools[tool].write and args.get("nonfree_baggages") == 2 and not self.go.is_set():
            self.entered.set()
            self.go.wait(timeout=120)
        return super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)


def test_a_write_racing_another_is_refused_by_its_own_transaction_and_asks_again(database_url):
    """Check, then act, at the same moment: B passed every gate-time check, then A wrote first.

    B's transaction locks the reservation, recomputes the quote (now USD 50, not the USD 100
    B confirmed) and refuses to write; B gets a new gate. Nothing was charged that nobody confirmed.
    """
    holder: dict[str, _PausingDomain] = {}

    def factory(*, pool):
        holder["d"] = _PausingDomain(backend=AirlineDomain.from_pool(pool=pool).backend)
        return holder["d"]

    services = make_services(database_url, domain_factory=factory)
    domain = holder["d"]
    try:
        app, _ = make_app(services, [bags_call(2, 1, "a"), bags_call(3, 2, "b"), summarise, summarise])
        one, two = app.new_thread(user_id=USER), app.new_thread(user_id=USER)
        gate_a = app.send(thread_id=one, user_id=USER, text=f"add a bag to {RES}").pending[0]
        gate_b = app.send(thread_id=two, user_id=USER, text=f"add two bags to {RES}").pending[0]
        outcome: dict[str, Any] = {}
        racer = threading.Thread(target=lambda: outcome.update(b=_confirm(app, two, gate_b)))
        racer.start()
        assert domain.entered.wait(timeout=120)
        assert tool_payloads(_confirm(app, one, gate_a).messages)[-1]["status"] == "captured"
        domain.go.set()
        racer.join(timeout=120)
        stale = outcome["b"]
        assert [p.kind for p in stale.pending] == ["confirm"]
        assert stale.pending[0].value["amount_usd"] == 50.0
        assert "changed" in stale.pending[0].value.get("notice", "")
        assert [float(r["amount_usd"]) for r in ledger_rows(services, RES)] == [50.0]
        assert "guardrail.revalidated" in audit_types(services, two)
        assert reservation_doc(services, RES)["nonfree_baggages"] == 1
    finally:
        domain.go.set()
        services.close()
