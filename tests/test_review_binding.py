"""Approval binding: a reviewer's signed approval authorises one case, one exact call, nothing else.

The attacker holds a genuine signed approval (the resume value the application sent for case
1, as seen on the wire or in a checkpoint) and can resume the graph directly (as anyone can
through a LangGraph server). They submit it for the sibling case 2 of the same turn (whose
call the model gave the same id, or another id), and for case 1 itself after its figures
changed. None may be accepted: the case stays pending and nothing is executed.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Command

from graph.context import AirlockContext
from graph.service import AirlockApp
from nodes.model.scripted import ScriptedChatModel
from tests.helpers import CARD, RES, USER, audit_types, bags_call, ledger_rows, make_services, summarise

pytestmark = pytest.mark.postgres

REVIEWER = ["reviewer", "supervisor"]


class WireTap(AirlockApp):
    """The application, with every resume value it sends recorded (what an eavesdropper sees)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.sent: list[dict[str, Any]] = []

    def _invoke(self, payload, thread_id, context, before):  # type: ignore[no-untyped-def]
        if isinstance(payload, Command) and isinstance(payload.resume, dict):
            self.sent.append(dict(payload.resume))
        return super()._invoke(payload, thread_id, context, before)


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def _two_cases(services, first: dict[str, Any], second: dict[str, Any]):
    """One model turn with two sibling calls that both need a supervisor (charges over USD 2,000)."""
    turn = AIMessage(content="", tool_calls=[
        {"name": "update_reservation_baggages", "args": first, "id": first.pop("_id")},
        {"name": "update_reservation_baggages", "args": second, "id": second.pop("_id")},
    ])
    app = WireTap(services=services, model=ScriptedChatModel(script=[turn, summarise, summarise]))
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add lots of bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["review", "review"]
    return app, thread


def _bags(total: int, nonfree: int, call_id: str) -> dict[str, Any]:
    return {"reservation_id": RES, "total_baggages": total, "nonfree_baggages": nonfree, "payment_id": CARD,
            "_id": call_id}


def _replay(app, thread, interrupt_id, value):
    """Resume the graph directly, as a client of the LangGraph API can."""
    app.graph.invoke(Command(resume={interrupt_id: value}), app._config(thread),
                     context=AirlockContext(user_id=USER, actor="mallory", roles=REVIEWER))


def _review_waiting_for(app, thread, call_id: str) -> bool:
    return any(p.kind == "review" and p.value.get("tool_call_id") == call_id for p in app.pending(thread))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((46, 45, "dup"), (50, 49, "dup"), id="same-model-id-different-args"),
        pytest.param((46, 45, "dup"), (46, 45, "dup"), id="same-model-id-identical-args"),
        pytest.param((46, 45, "call_a"), (50, 49, "call_b"), id="different-model-ids"),
        pytest.param((46, 45, "call_a"), (46, 45, "call_b"), id="different-model-ids-identical-args"),
    ],
)
def test_approval_of_case_1_is_refused_for_its_sibling_case_2(services, first, second):
    app, thread = _two_cases(services, _bags(*first), _bags(*second))
    inbox = {row["interrupt_id"]: row for row in app.list_reviews(roles=REVIEWER)}
    case1, case2 = app.pending(thread)
    call2 = case2.value["tool_call_id"]
    # The reviewer approves case 1 for real; the attacker keeps the signed value.
    app.decide_review(review_id=inbox[case1.id]["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    stolen = app.sent[-1][case1.id]
    assert _review_waiting_for(app, thread, call2)
    case2_now = next(p for p in app.pending(thread) if p.value.get("tool_call_id") == call2)

    _replay(app, thread, case2_now.id, stolen)

    assert _review_waiting_for(app, thread, call2)  # still waiting for a supervisor
    again = next(p for p in app.pending(thread) if p.value.get("tool_call_id") == call2)
    assert "not accepted" in again.value.get("notice", "")
    assert "escalation.refused" in audit_types(services, thread)
    assert [p.kind for p in app.pending(thread)].count("confirm") == 1  # only case 1 reached its gate
    assert ledger_rows(services) == []  # nothing executed


def test_approval_replayed_for_the_sibling_before_case_1_is_decided(services):
    """The attacker replays at once, in the same turn, before case 1 is even resumed."""
    app, thread = _two_cases(services, _bags(46, 45, "dup"), _bags(50, 49, "dup"))
    case1, case2 = app.pending(thread)
    row1 = next(r for r in app.list_reviews(roles=REVIEWER) if r["interrupt_id"] == case1.id)
    from graph.reviews import signed_resume

    genuine = signed_resume(services.review_key, row=row1, decision={"type": "approve"}, reviewer="sam")
    _replay(app, thread, case2.id, genuine)
    assert [p.kind for p in app.pending(thread)] == ["review", "review"]
    assert ledger_rows(services) == []
    # The genuine value still works for the case it was signed for.
    _replay(app, thread, case1.id, genuine)
    assert sorted(p.kind for p in app.pending(thread)) == ["confirm", "review"]
    assert ledger_rows(services) == []


def test_approval_is_refused_once_the_calls_figures_changed(services):
    """Signed for a USD 2,250 charge; by the time it arrives the same call would charge another amount."""
    app = WireTap(services=services, model=ScriptedChatModel(script=[bags_call(46, 45), summarise]))
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add 45 bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["review"]
    old_hash = paused.pending[0].value.get("call_hash")
    row = app.list_reviews(roles=REVIEWER)[0]
    # Meanwhile one paid bag is added elsewhere: the same call now charges for 44 bags, not 45.
    with services.pool.connection() as conn:
        conn.execute(
            "UPDATE airline_reservations SET doc = jsonb_set(jsonb_set(doc, '{nonfree_baggages}', to_jsonb("
            "(doc->>'nonfree_baggages')::int + 1)), '{total_baggages}', to_jsonb((doc->>'total_baggages')::int + 1))"
            " WHERE reservation_id = %s", (RES,),
        )
    after = app.decide_review(review_id=row["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert [p.kind for p in after.pending] == ["review"]  # asked again, with the new figures
    assert after.pending[0].value.get("call_hash") != old_hash
    assert "not accepted" in after.pending[0].value.get("notice", "")
    assert ledger_rows(services) == []
    # A decision on the case as it is now goes through to the customer's gate.
    fresh = next(r for r in app.list_reviews(roles=REVIEWER) if r["interrupt_id"] == after.pending[0].id)
    done = app.decide_review(review_id=fresh["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert [p.kind for p in done.pending] == ["confirm"]
