"""Unknown outcomes and crashes between the write and the checkpoint (issue 7, classes 7 and 10).

The backend is made slow deterministically: the test holds a Postgres lock the write needs, so
the write blocks (past the policy's resilience timeout, or until the test kills the process),
and releases it when the scenario says. No sleeps: the test waits on pg_stat_activity.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    CARD,
    RES,
    USER,
    HeldLock,
    audit_types,
    ledger_rows,
    lock_waiters,
    make_app,
    make_services,
    policy_copy,
    reactive_model,
    tool_payloads,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
USER_ROW_LOCK = "SELECT 1 FROM airline_users WHERE user_id = %s FOR UPDATE"

BOOKING = {"name": "book_reservation", "args": {
    "user_id": USER, "origin": "PHL", "destination": "LGA", "flight_type": "one_way",
    "cabin": "business", "flights": [{"flight_number": "HAT001", "date": "2024-05-24"}],
    "passengers": [{"first_name": "Ana", "last_name": "Rossi", "dob": "1990-01-01"}],
    "payment_methods": [{"payment_id": CARD, "amount": 475}],
    "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no",
}}


def _bookings(services) -> list[dict]:
    return [r for r in ledger_rows(services) if r["tool"] == "book_reservation"]


def test_a_timed_out_booking_is_not_booked_again_by_the_retry(database_url, tmp_path):
    """A slow backend times the booking out; it commits later; the customer's retry must not rebook.

    Attack (class 7): the first attempt blocks on the customer's row past the 1 s resilience
    timeout; on today's main the claim is released as if the write failed, the attempt commits
    when the row is free, and the customer's retry of the same request books and charges again.
    """
    policy = policy_copy(tmp_path, timeout="1s", retries=0)
    services = make_services(database_url, policy=policy)
    try:
        app, _ = make_app(services, model=reactive_model({1: [BOOKING]}))
        thread = app.new_thread(user_id=USER)
        gate = app.send(thread_id=thread, user_id=USER, text="Please book HAT001 for me, request r1").pending[0]
        with HeldLock(database_url, USER_ROW_LOCK, (USER,)):
            first = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
            # The attempt is still blocked on the row (an unknown outcome), nothing committed yet.
            assert lock_waiters(database_url), "the timed-out attempt is still waiting in the database"
            assert _bookings(services) == []
        # The late attempt commits once the row is free.
        wait_until(lambda: len(_bookings(services)) >= 1, "the timed-out attempt committed")
        first_status = tool_payloads(first.messages)[-1]["status"]
        # The customer tries again: the same request, confirmed on every gate.
        retry = app.send(thread_id=thread, user_id=USER, text="please try booking again, request r1")
        for _ in range(3):
            gates = [p for p in retry.pending if p.kind == "confirm"]
            if not gates:
                break
            retry = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gates[0].id, action="confirm")
        rows = _bookings(services)
        assert len(rows) == 1, f"booked {len(rows)} times (first attempt said {first_status!r})"
        with services.pool.connection() as conn:
            n = conn.execute("SELECT count(*) AS n FROM airline_reservations WHERE doc->>'user_id' = %s"
                             " AND doc->>'origin' = 'PHL' AND doc->>'destination' = 'LGA'", (USER,)).fetchone()["n"]
        assert n == 1
    finally:
        services.close()


SPEC = [
    {"content": "", "tool_calls": [{"name": "update_reservation_baggages", "id": "call_bags", "args": {
        "reservation_id": RES, "total_baggages": 4, "nonfree_baggages": 3, "payment_id": CARD}}]},
    "Your bags were added.",
    "Anything else?",
    "Anything else?",
]

CHILD = """
import json, os, sys
from pathlib import Path
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from nodes.model.scripted import ScriptedChatModel
url, spec, policy, thread, action = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
services = AirlockServices.start(AirlockSettings(database_url=url, model_provider="offline",
                                                 policy_path=Path(policy)))
app = AirlockApp(services=services, model=ScriptedChatModel.from_spec(spec, cursor="conversation"))
print(json.dumps({"pid": os.getpid()}), flush=True)
out = {}
if action == "confirm":
    gates = [p for p in app.pending(thread) if p.kind == "confirm"]
    if gates:  # the customer presses Confirm again on the gate they were shown
        r = app.answer_confirm(thread_id=thread, user_id="lei_rossi_3206", interrupt_id=gates[0].id,
                               action="confirm", args_hash=gates[0].value["args_hash"])
    else:  # the gate is gone: the customer reopens the conversation
        r = app.view(thread_id=thread, user_id="lei_rossi_3206")
    out["confirm"] = {"reply": r.reply, "pending": [p.kind for p in r.pending],
                      "tool": [m.content for m in r.messages if m.type == "tool"]}
    # A customer who is asked again declines: what are they told?
    for p in [p for p in r.pending if p.kind == "confirm"]:
        r = app.answer_confirm(thread_id=thread, user_id="lei_rossi_3206", interrupt_id=p.id, action="cancel")
        out["declined"] = {"reply": r.reply, "tool": [m.content for m in r.messages if m.type == "tool"]}
    # The thread is usable at once.
    r = app.send(thread_id=thread, user_id="lei_rossi_3206", text="thanks, anything else?")
    out["next"] = {"reply": r.reply, "notice": r.notice, "pending": [p.kind for p in r.pending]}
print(json.dumps(out), flush=True)
"""


def _child(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("freeze", [
    "LOCK TABLE checkpoint_writes IN EXCLUSIVE MODE",
    "LOCK TABLE checkpoints IN EXCLUSIVE MODE",
])
def test_killed_after_the_charge_committed_the_resumed_thread_tells_the_truth(database_url, tmp_path, freeze):
    """SIGKILL a confirmed bag charge after it committed, before the checkpoint; resume elsewhere.

    Attack (class 10): a process dies between the domain commit and the checkpoint. The thread,
    resumed in a fresh process, must say what was executed (not ask again, never "nothing was
    changed"), the audit must show `tool.executed`, the ledger one charge, and the thread must be
    usable at once: idempotency waits are set to an hour, so waiting on the dead process's claim
    hangs until the subprocess guard fails the test.
    """
    policy = policy_copy(tmp_path, wait_timeout="1h")
    services = make_services(database_url, policy=policy)
    try:
        from nodes.model.scripted import ScriptedChatModel

        app, _ = make_app(services, model=ScriptedChatModel.from_spec(SPEC, cursor="conversation"))
        thread = app.new_thread(user_id=USER)
        assert app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ").pending
        spec = json.dumps(SPEC)
        with HeldLock(database_url, freeze) as held:
            child = _child(database_url, spec, str(policy), thread, "confirm")
            wait_until(lambda: bool(lock_waiters(database_url, exclude=[held.pid])) or child.poll() is not None,
                       "the confirmed write is frozen at the checkpoint")
            assert child.poll() is None, child.communicate()[1][-3000:]
            committed = len(ledger_rows(services, RES))
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert committed == 1, "the freeze point is after the domain commit"

        resumed = _child(database_url, spec, str(policy), thread, "confirm")
        try:
            out, err = resumed.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            resumed.kill()
            pytest.fail("the resumed thread waited on the dead process's claim")
        assert resumed.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        told = " ".join([*result["confirm"]["tool"], result["confirm"]["reply"],
                         *result.get("declined", {}).get("tool", []), result.get("declined", {}).get("reply", "")])
        assert result["confirm"]["pending"] == [], f"asked again after the charge: {result}"
        assert "nothing was executed" not in told.lower() and "nothing was changed" not in told.lower(), told
        statuses = [json.loads(t).get("original_status") or json.loads(t).get("status")
                    for t in result["confirm"]["tool"]]
        assert "captured" in statuses, result
        assert result["next"]["pending"] == [] and result["next"]["reply"], result
        assert len(ledger_rows(services, RES)) == 1
        events = audit_types(services, thread)
        assert "tool.executed" in events and "confirm.declined" not in events, events
    finally:
        services.close()
