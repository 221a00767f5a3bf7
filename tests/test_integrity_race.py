"""Check, then act: confirmations released together on the same rows (issue 7, class 1).

A confirmation authorises exactly one (tool, canonical arguments, quote, state version). The
attacker (a model, or simply a busy customer with two chats open) raises several gates on the
same reservation from the same state, then has them all confirmed at the same moment: each
gate was evaluated against a state that the first executed write invalidates. Whatever the
implementation, the database must show only writes the customer confirmed, at the amount
they confirmed; a call whose state changed gets a new gate (or a review), never a charge.

The race is made deterministic without sleeps: the test holds the reservation's row lock in
its own connection, releases the confirmations, waits until the writes are blocked on that
lock (pg_stat_activity shows them waiting), then lets them all go at once.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from langgraph.types import Command

from graph.context import AirlockContext
from graph.service import AirlockApp, PendingInterrupt, TurnResult
from tests.helpers import (
    CARD,
    RES,
    USER,
    HeldLock,
    bags_plan,
    executed_results,
    ledger_rows,
    lock_waiters,
    make_app,
    make_services,
    reactive_model,
    reservation_doc,
    tool_payloads,
    wait_until,
)

pytestmark = pytest.mark.postgres

RES_ROW_LOCK = "SELECT 1 FROM airline_reservations WHERE reservation_id = %s FOR UPDATE"
USER_ROW_LOCK = "SELECT 1 FROM airline_users WHERE user_id = %s FOR UPDATE"
# A customer eligible for one USD 100 certificate (USD 200 would need a supervisor).
CERT_USER = "emma_smith_9363"


@dataclass(kw_only=True)
class Attempt:
    """One confirmed gate and what came of it."""

    thread_id: str
    plan: dict[str, Any]
    gate: PendingInterrupt
    result: TurnResult | None = None
    error: BaseException | None = None
    executed: list[dict[str, Any]] = field(default_factory=list)


def _ledger_total(services, *, user_id: str | None = None) -> Decimal:
    rows = ledger_rows(services)
    total = Decimal(0)
    for row in rows:
        if user_id is not None and row["user_id"] != user_id:
            continue
        sign = 1 if row["kind"] == "charge" else -1
        total += sign * Decimal(str(row["amount_usd"]))
    return total


def _signed(payload: dict[str, Any]) -> Decimal:
    amount = Decimal(str(payload.get("amount_usd") or 0))
    return -amount if payload.get("direction") == "refund" else amount


def _gate_signed(gate: PendingInterrupt) -> Decimal:
    amount = Decimal(str(gate.value.get("amount_usd") or 0))
    return -amount if gate.value.get("direction") == "refund" else amount


def assert_only_confirmed_writes(services, attempts: list[Attempt], *, user_id: str = USER) -> None:
    """Every executed write equals its confirmed quote; the ledger holds nothing else."""
    ledger = {row["charge_id"]: row for row in ledger_rows(services)}
    confirmed_total = Decimal(0)
    for a in attempts:
        assert a.error is None, f"{a.plan}: the confirm raised {a.error!r}"
        assert a.result is not None
        for payload in a.executed:
            # The amount written is the amount the customer confirmed for this exact call.
            assert _signed(payload) == _gate_signed(a.gate), (
                f"{a.plan['name']} {a.plan['args']}: confirmed {a.gate.value.get('amount_usd')}"
                f" {a.gate.value.get('direction')}, executed {payload.get('amount_usd')}"
                f" {payload.get('direction')}"
            )
            rows = [ledger[c] for c in payload.get("charge_ids", [])]
            assert sum((Decimal(str(r["amount_usd"])) for r in rows), Decimal(0)) == abs(_signed(payload))
            confirmed_total += _signed(payload)
        if not a.executed:
            # Not executed: asked again with new figures, sent to review, or refused; if a new
            # gate is pending it is a different gate (a different hash), never the old one.
            for p in a.result.pending:
                if p.kind == "confirm":
                    assert p.value.get("args_hash") != a.gate.value.get("args_hash"), a.plan
    assert _ledger_total(services, user_id=user_id) == confirmed_total, (
        f"ledger {_ledger_total(services, user_id=user_id)} != confirmed quotes of executed calls"
        f" {confirmed_total}"
    )


def _open_gate(app: AirlockApp, user: str, n: int) -> tuple[str, PendingInterrupt]:
    thread = app.new_thread(user_id=user)
    result = app.send(thread_id=thread, user_id=user, text=f"please make the change, request r{n}")
    gates = [p for p in result.pending if p.kind == "confirm"]
    assert len(gates) == 1, (n, result.pending, tool_payloads(result.messages))
    return thread, gates[0]


def _confirm(app: AirlockApp, attempt: Attempt, user: str, barrier: threading.Barrier | None) -> None:
    if barrier is not None:
        barrier.wait()
    try:
        attempt.result = app.answer_confirm(
            thread_id=attempt.thread_id, user_id=user, interrupt_id=attempt.gate.id, action="confirm",
        )
        attempt.executed = executed_results(attempt.result.messages)
    except BaseException as exc:  # noqa: BLE001 - reported by the assertion, not swallowed
        attempt.error = exc


def _release_together(database_url: str, lock_sql: str, key: str, n_writes: int, start) -> None:
    """Hold ``lock_sql``; run ``start``; wait until ``n_writes`` writers block on it; release."""
    with HeldLock(database_url, lock_sql, (key,)) as held:
        workers = start()
        wait_until(
            lambda: len(lock_waiters(database_url, exclude=[held.pid])) >= n_writes
            or sum(not w.is_alive() for w in workers) + len(lock_waiters(database_url)) >= n_writes,
            f"{n_writes} confirmed writes wait on the held lock",
        )
    for w in workers:
        w.join()


def test_two_threads_confirm_bag_changes_on_one_reservation_at_once(database_url):
    """Two chats of one customer each confirm a bag change of VAAOXJ at the same moment.

    Attack: chat A asks for 5 bags (4 paid, USD 200), chat B for 4 bags (3 paid, USD 150);
    both gates were computed on the reservation's 1 free bag. On today's main the write
    recomputes the fee against the state the other chat left: the second one either removes a
    paid bag (5/4 -> 4/3) or charges USD 50 where USD 200 was confirmed.
    """
    services = make_services(database_url)
    try:
        plans = {1: [bags_plan(5, 4)], 2: [bags_plan(4, 3)]}
        app, _ = make_app(services, model=reactive_model(plans))
        attempts = []
        for n, plan in plans.items():
            thread, gate = _open_gate(app, USER, n)
            attempts.append(Attempt(thread_id=thread, plan=plan[0], gate=gate))
        assert sorted(a.gate.value["amount_usd"] for a in attempts) == [150.0, 200.0]
        barrier = threading.Barrier(len(attempts))

        def start():
            ts = [threading.Thread(target=_confirm, args=(app, a, USER, barrier)) for a in attempts]
            for t in ts:
                t.start()
            return ts

        _release_together(database_url, RES_ROW_LOCK, RES, len(attempts), start)

        assert_only_confirmed_writes(services, attempts)
        done = [a for a in attempts if a.executed]
        assert done, "the first write, on an unchanged state, executes"
        doc = reservation_doc(services, RES)
        for a in done:  # a paid bag is never removed
            assert doc["nonfree_baggages"] >= a.plan["args"]["nonfree_baggages"], doc
            assert doc["total_baggages"] >= a.plan["args"]["total_baggages"], doc
    finally:
        services.close()


def test_two_sibling_gates_of_one_turn_confirmed_together(database_url):
    """One model turn asks for two bag changes of one reservation; both gates confirmed at once.

    Attack: the model emits sibling calls (5 bags/4 paid and 4 bags/3 paid); the customer's
    client answers both pending gates in one resume. Both tasks re-check against the same
    state, then both write: on today's main the second applies a recomputed change nobody
    confirmed (a paid bag removed, or a different charge).
    """
    services = make_services(database_url)
    try:
        plans = {1: [bags_plan(5, 4), bags_plan(4, 3)]}
        app, _ = make_app(services, model=reactive_model(plans))
        thread = app.new_thread(user_id=USER)
        paused = app.send(thread_id=thread, user_id=USER, text="two bag changes please, request r1")
        gates = [p for p in paused.pending if p.kind == "confirm"]
        assert len(gates) == 2, paused.pending
        before = len(app.messages(thread))
        outcome: dict[str, Any] = {}

        def resume_both() -> None:
            try:
                app.graph.invoke(
                    Command(resume={g.id: {"action": "confirm", "args_hash": g.value["args_hash"],
                                           "actor": USER} for g in gates}),
                    {"configurable": {"thread_id": thread}, "recursion_limit": 80},
                    context=AirlockContext(user_id=USER, actor=USER, roles=["customer"]),
                )
            except BaseException as exc:  # noqa: BLE001
                outcome["error"] = exc

        def start():
            t = threading.Thread(target=resume_both)
            t.start()
            return [t]

        _release_together(database_url, RES_ROW_LOCK, RES, 2, start)
        assert "error" not in outcome, outcome
        messages = app.messages(thread)[before:]
        by_call = {}
        for m in messages:
            if m.type == "tool":
                by_call[m.tool_call_id] = m
        attempts = []
        calls = next(m for m in app.messages(thread) if getattr(m, "tool_calls", None)).tool_calls
        gate_of = {g.value["tool_call_id"]: g for g in gates}
        assert sorted(gate_of) == sorted(c["id"] for c in calls)
        for call in calls:
            gate = gate_of[call["id"]]
            msg = by_call.get(call["id"])
            attempt = Attempt(thread_id=thread, plan={"name": call["name"], "args": call["args"]}, gate=gate,
                              result=app.view(thread_id=thread, user_id=USER))
            attempt.executed = executed_results([msg]) if msg is not None else []
            attempts.append(attempt)
        assert_only_confirmed_writes(services, attempts)
        doc = reservation_doc(services, RES)
        for a in attempts:
            if a.executed:
                assert doc["nonfree_baggages"] >= a.plan["args"]["nonfree_baggages"], doc
    finally:
        services.close()


# ------------------------------------------------------------------ the race: 200+ confirmations


def _race_plans(n: int, offset: int = 0) -> dict[int, list[dict[str, Any]]]:
    """Mix bag additions, cabin changes and certificate requests on the same rows."""
    plans: dict[int, list[dict[str, Any]]] = {}
    for i in range(n):
        k = offset + i
        kind = k % 10
        if kind < 7:  # bag additions to distinct targets: each write invalidates the others
            paid = 1 + k % 40
            plans[k] = [bags_plan(paid + 1, paid)]
        elif kind < 9:  # cabin changes of the same flights (upgrades charge, downgrades refund)
            cabin = "business" if kind == 7 else "economy"
            plans[k] = [{"name": "update_reservation_flights", "args": {
                "reservation_id": RES, "cabin": cabin, "payment_id": CARD,
                "flights": [{"flight_number": "HAT287", "date": "2024-05-24"},
                            {"flight_number": "HAT235", "date": "2024-05-24"}]}}]
        else:
            # 100, 100.001, ...: the same money once rounded, different raw arguments.
            plans[k] = [{"name": "send_certificate",
                         "args": {"user_id": CERT_USER, "amount": 100 + (k // 10 % 4) / 1000}}]
    return plans


def _user_of(plan: list[dict[str, Any]]) -> str:
    return CERT_USER if plan[0]["name"] == "send_certificate" else USER


def _text(n: int, plan: list[dict[str, Any]]) -> str:
    if plan[0]["name"] == "send_certificate":
        return f"my flight was cancelled, I want compensation, request r{n}"
    return f"please make the change, request r{n}"


def _race_round(database_url: str, plans: dict[int, list[dict[str, Any]]],
                barrier_parties: int | None = None, ready=None, go=None) -> list[dict[str, Any]]:
    """Open every gate, then confirm all at once; return plain-data attempts."""
    services = make_services(database_url)
    try:
        app, _ = make_app(services, model=reactive_model(plans, calls=20 * len(plans) + 100))
        opened: list[Attempt] = []
        refused: list[dict[str, Any]] = []

        def open_one(n: int) -> None:
            user = _user_of(plans[n])
            thread = app.new_thread(user_id=user)
            result = app.send(thread_id=thread, user_id=user, text=_text(n, plans[n]))
            for question in [p for p in result.pending if p.kind == "question"]:
                # The system asks whether the customer wants compensation; the attacker says yes.
                result = app.answer_question(thread_id=thread, user_id=user, interrupt_id=question.id, value="yes")
            gates = [p for p in result.pending if p.kind == "confirm"]
            if gates:
                opened.append(Attempt(thread_id=thread, plan=plans[n][0], gate=gates[0]))
            else:  # refused or escalated already at gate time: nothing to confirm
                refused.append({"n": n, "pending": [p.kind for p in result.pending],
                                "executed": executed_results(result.messages)})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(open_one, sorted(plans)))
        if ready is not None:
            ready.wait()  # every process has opened its gates
            go.wait()
        barrier = threading.Barrier(len(opened)) if opened else None
        with ThreadPoolExecutor(max_workers=max(1, len(opened))) as pool:
            list(pool.map(lambda a: _confirm(app, a, _user_of([a.plan]), barrier), opened))
        return [
            {"plan": a.plan, "gate": {"amount_usd": a.gate.value.get("amount_usd"),
                                       "direction": a.gate.value.get("direction"),
                                       "args_hash": a.gate.value.get("args_hash")},
             "error": repr(a.error) if a.error else None,
             "executed": a.executed,
             "pending": [{"kind": p.kind, "args_hash": p.value.get("args_hash")}
                         for p in (a.result.pending if a.result else [])]}
            for a in opened
        ] + [{"plan": plans[r["n"]][0], "gate": None, "error": None, "executed": r["executed"],
              "pending": r["pending"]} for r in refused]
    finally:
        services.close()


def _check_race(database_url: str, rounds: list[dict[str, Any]]) -> None:
    services = make_services(database_url)
    try:
        errors = [r for r in rounds if r["error"]]
        assert not errors, errors[:3]
        confirmed = {USER: Decimal(0), CERT_USER: Decimal(0)}
        bag_targets = []
        certificates = 0
        for r in rounds:
            for payload in r["executed"]:
                assert r["gate"] is not None, f"executed without a confirmation: {r['plan']}"
                gate_amount = Decimal(str(r["gate"]["amount_usd"] or 0))
                if r["gate"]["direction"] == "refund":
                    gate_amount = -gate_amount
                assert _signed(payload) == gate_amount, (r["plan"], r["gate"], payload)
                confirmed[_user_of([r["plan"]])] += _signed(payload) if payload.get("charge_ids") else 0
                if r["plan"]["name"] == "update_reservation_baggages":
                    bag_targets.append(r["plan"]["args"])
                if r["plan"]["name"] == "send_certificate":
                    certificates += 1
            if not r["executed"] and r["gate"] is not None:
                assert all(p["args_hash"] != r["gate"]["args_hash"] for p in r["pending"]
                           if p["kind"] == "confirm"), r
        assert _ledger_total(services, user_id=USER) == confirmed[USER]
        doc = reservation_doc(services, RES)
        for target in bag_targets:  # bags never decrease
            assert doc["nonfree_baggages"] >= target["nonfree_baggages"], (doc["nonfree_baggages"], target)
        # Only one certificate without a supervisor (the policy escalates a repeat).
        assert certificates <= 1, f"{certificates} certificates issued without a supervisor"
        with services.pool.connection() as conn:
            user = conn.execute("SELECT doc FROM airline_users WHERE user_id = %s", (USER,)).fetchone()
        for method in user["doc"]["payment_methods"].values():
            if method.get("source") == "gift_card":
                assert method["amount"] >= 0
    finally:
        services.close()


@pytest.mark.slow
def test_two_hundred_confirmations_released_at_once_in_threads(database_url):
    """Release 210 confirmed gates (bags, cabin changes, certificates) on the same rows at once.

    Attack: every gate was computed on the same starting state; the confirmations race. The
    executed writes must each equal a confirmed quote, bags never decrease, at most one
    certificate is issued without a supervisor, and the ledger equals the confirmed quotes.
    """
    plans = _race_plans(210)
    box: list[list[dict[str, Any]]] = []
    # Set the database up first: the checkpointer's CREATE INDEX CONCURRENTLY would wait for the
    # held lock's transaction, and nothing would ever open.
    _set_up(database_url)
    with HeldLock(database_url, RES_ROW_LOCK, (RES,)) as held:
        # Gates open (reads are not blocked); the confirmed writes pile up on the row lock.
        ready, go = threading.Barrier(2), threading.Event()
        worker = threading.Thread(
            target=lambda: box.append(_race_round(database_url, plans, ready=ready, go=go)))
        worker.start()
        ready.wait()  # every gate is open (the deadline below covers only the release)
        go.set()
        wait_until(lambda: len(lock_waiters(database_url, exclude=[held.pid])) >= 5 or not worker.is_alive(),
                   "confirmed writes wait on the reservation")
    worker.join()
    assert box, "the round crashed"
    rounds = box[0]
    assert sum(1 for r in rounds if r["gate"] is not None) >= 200
    _check_race(database_url, rounds)


def _set_up(database_url: str) -> None:
    """Migrate and set the checkpointer up (an app does) before the test holds any lock."""
    services = make_services(database_url)
    try:
        make_app(services)
    finally:
        services.close()


def _process_round(database_url: str, offset: int, n: int, ready, go, out) -> None:
    out.put(_race_round(database_url, _race_plans(n, offset), ready=ready, go=go))


@pytest.mark.slow
def test_two_hundred_confirmations_released_at_once_in_processes(database_url):
    """The same race from four processes, each with its own app on the same database."""
    ctx = multiprocessing.get_context("spawn")
    n_proc, per_proc = 4, 52
    ready, go = ctx.Barrier(n_proc + 1), ctx.Event()
    out = ctx.Queue()
    _set_up(database_url)  # before any lock is held (see above)
    procs = [ctx.Process(target=_process_round, args=(database_url, i * per_proc, per_proc, ready, go, out))
             for i in range(n_proc)]
    for p in procs:
        p.start()
    with HeldLock(database_url, RES_ROW_LOCK, (RES,)) as held:
        ready.wait()
        go.set()
        wait_until(lambda: len(lock_waiters(database_url, exclude=[held.pid])) >= 5
                   or not any(p.is_alive() for p in procs), "confirmed writes wait on the reservation")
    rounds: list[dict[str, Any]] = []
    for _ in procs:
        rounds.extend(out.get(timeout=600))
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert sum(1 for r in rounds if r["gate"] is not None) >= 200
    _check_race(database_url, rounds)
