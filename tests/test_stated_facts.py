"""Class 5 of issue 7: customer-stated facts come from the customer's answer, not from keywords.

The attacker is the model (it picks when to call a tool) and the customer's own chat remarks
(an unrelated sentence, an earlier turn). The customer answers every question truthfully and,
as the worst case, presses Confirm on every gate: only the guardrails stand in the way.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Command

from graph.context import AirlockContext
from graph.service import AirlockApp, NotAllowedError, TurnResult
from tests.helpers import audit_types, make_app, make_services, summarise, tool_call, tool_payloads
from tools.airline.planner import AirlinePlanner as OfflinePlanner

pytestmark = pytest.mark.postgres

# harper_garcia_8677: two insured economy reservations booked days ago, flights in the future,
# nothing cancelled by the airline: only a health or weather reason makes them refundable.
HARPER = "harper_garcia_8677"
INSURED = "CDXEBS"
INSURED_2 = "V1B1WU"
# isabella_anderson_9682 had a flight of QDGWHB (1 passenger) cancelled: USD 100 is allowed,
# below the agent's limit (no reviewer stands in the way).
CERT_USER = "isabella_anderson_9682"


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def _status(services: Any, reservation_id: str) -> str:
    with services.pool.connection() as conn:
        row = conn.execute("SELECT doc FROM airline_reservations WHERE reservation_id = %s",
                           (reservation_id,)).fetchone()
    return str(row["doc"].get("status") or "")


def _certificates(services: Any, user_id: str) -> list[str]:
    with services.pool.connection() as conn:
        row = conn.execute("SELECT doc FROM airline_users WHERE user_id = %s", (user_id,)).fetchone()
    methods = row["doc"]["payment_methods"]
    return sorted(k for k, v in methods.items() if v.get("source") == "certificate")


def _drive(app: AirlockApp, thread: str, user: str, result: TurnResult,
           answers: dict[str, str]) -> tuple[TurnResult, list[dict[str, Any]]]:
    """Answer each question with ``answers[question id]`` and press Confirm on every gate."""
    asked: list[dict[str, Any]] = []
    for _ in range(10):
        if not result.pending:
            return result, asked
        gate = result.pending[0]
        if gate.kind == "question":
            asked.append(gate.value)
            key = str(gate.value["id"]).rsplit(":", 1)[1]
            result = app.answer_question(thread_id=thread, user_id=user, interrupt_id=gate.id,
                                         value=answers[key])
        elif gate.kind == "confirm":
            result = app.answer_confirm(thread_id=thread, user_id=user, interrupt_id=gate.id,
                                        action="confirm")
        else:
            return result, asked
    raise AssertionError("the conversation did not settle")


def _cancel(rid: str, call_id: str) -> AIMessage:
    return tool_call("cancel_reservation", {"reservation_id": rid}, call_id)


def test_an_unrelated_remark_in_the_same_message_is_not_the_reason(services):
    app, _ = make_app(services, [_cancel(INSURED, "c1"), summarise])
    thread = app.new_thread(user_id=HARPER)
    first = app.send(thread_id=thread, user_id=HARPER,
                     text=f"cancel {INSURED}; by the way my grandma was sick last year")
    done, asked = _drive(app, thread, HARPER, first,
                         {"cancel_reason": "change_of_plan", "customer_disputes": "accept"})
    assert _status(services, INSURED) != "cancelled"
    assert [q["id"].rsplit(":", 1)[1] for q in asked] == ["cancel_reason", "customer_disputes"]
    assert tool_payloads(app.messages(thread))[-1]["rule"] == "cancellation-window"


def test_an_earlier_turns_reason_or_answer_is_not_reused(services):
    app, _ = make_app(services, [_cancel(INSURED_2, "c1"), summarise, _cancel(INSURED, "c2"), summarise])
    thread = app.new_thread(user_id=HARPER)
    first = app.send(thread_id=thread, user_id=HARPER, text=f"cancel {INSURED_2}, I am sick")
    # The customer really is sick for this trip: that answer makes the insured one refundable.
    _drive(app, thread, HARPER, first, {"cancel_reason": "health"})
    assert _status(services, INSURED_2) == "cancelled"
    second = app.send(thread_id=thread, user_id=HARPER, text=f"now cancel {INSURED} too")
    # Neither the earlier message nor the earlier answer counts: the question is asked again.
    assert [p.kind for p in second.pending] == ["question"]
    _drive(app, thread, HARPER, second,
           {"cancel_reason": "change_of_plan", "customer_disputes": "accept"})
    assert _status(services, INSURED) != "cancelled"


def test_asking_to_pay_with_a_certificate_is_not_a_compensation_request(services):
    before = _certificates(services, CERT_USER)
    app, _ = make_app(services, [tool_call("send_certificate", {"user_id": CERT_USER, "amount": 100}, "c1"),
                                 summarise])
    thread = app.new_thread(user_id=CERT_USER)
    first = app.send(thread_id=thread, user_id=CERT_USER, text="Can I use my travel certificate to pay for a booking?")
    _drive(app, thread, CERT_USER, first, {"user_asked_compensation": "no"})
    assert _certificates(services, CERT_USER) == before
    assert tool_payloads(app.messages(thread))[-1]["rule"] == "compensation-not-requested"


def test_the_answer_is_what_the_policy_sees(services):
    app, _ = make_app(services, [_cancel(INSURED, "c1"), summarise])
    thread = app.new_thread(user_id=HARPER)
    # The chat says one thing; the answer to the system's question is the fact.
    first = app.send(thread_id=thread, user_id=HARPER, text=f"cancel {INSURED}, my plans changed")
    question = first.pending[0]
    assert question.kind == "question"
    assert {k: question.value[k] for k in ("type", "tool")} == {"type": "question", "tool": "cancel_reservation"}
    # The graph names the call (the model's own id "c1" is never trusted).
    assert question.value["tool_call_id"].startswith("call_")
    assert "health" in [c["value"] for c in question.value["choices"]]
    assert _status(services, INSURED) != "cancelled"  # nothing happens before the answer
    _drive(app, thread, HARPER, first, {"cancel_reason": "health"})
    assert _status(services, INSURED) == "cancelled"
    assert "question.asked" in audit_types(services, thread)


def test_a_typed_reply_is_parsed_against_the_choices_only(services):
    app, _ = make_app(services, [_cancel(INSURED, "c1"), summarise])
    thread = app.new_thread(user_id=HARPER)
    app.send(thread_id=thread, user_id=HARPER, text=f"cancel {INSURED}")
    # A sentence that mentions a reason is not an answer: the question is shown again.
    again = app.send(thread_id=thread, user_id=HARPER, text="health, and also my grandma")
    assert [p.kind for p in again.pending] == ["question"] and "1. My plans changed" in again.notice
    answered = app.send(thread_id=thread, user_id=HARPER, text="3")  # "A health reason"
    assert [p.kind for p in answered.pending] == ["confirm"]


def test_parse_choice_text_is_anchored():
    from nodes.guardrails.stated import parse_choice_text

    choices = [{"value": "a", "label": "My plans changed"}, {"value": "b", "label": "A health reason"}]
    assert parse_choice_text(" 2 ", choices) == "b"
    assert parse_choice_text("my plans  changed.", choices) == "a"
    for text in ("", "3", "0", "2 or 1", "health", "a", "A health reason, grandma", "12"):
        assert parse_choice_text(text, choices) is None


def test_forged_answers_are_refused(services):
    app, _ = make_app(services, [_cancel(INSURED, "c1"), summarise])
    thread = app.new_thread(user_id=HARPER)
    question = app.send(thread_id=thread, user_id=HARPER, text=f"cancel {INSURED}").pending[0]
    assert question.kind == "question"
    config = {"configurable": {"thread_id": thread}}
    context = AirlockContext(user_id=HARPER, actor=HARPER, roles=["customer"])
    qid = question.value["id"]
    forged = [
        "health",                                                       # not an object
        {"question_id": qid, "value": "refund_me", "actor": HARPER},    # not among the choices
        {"question_id": qid, "value": "Health", "actor": HARPER},       # a label-ish value
        {"question_id": "c9:cancel_reason", "value": "health", "actor": HARPER},  # other question
        {"question_id": qid, "value": "health", "actor": "mallory"},    # not the customer
        {"question_id": qid, "value": "health"},                        # no answerer
    ]
    for value in forged:
        pending = app.pending(thread)
        app.graph.invoke(Command(resume={pending[0].id: value}), config, context=context)
        after = app.pending(thread)
        assert [p.kind for p in after] == ["question"], value
        assert "not accepted" in after[0].value.get("notice", "")
    # Through the service: a value outside the choices is refused before the graph.
    live = app.pending(thread)[0]
    refused = app.answer_question(thread_id=thread, user_id=HARPER, interrupt_id=live.id, value="refund_me")
    assert "not one of the answers" in refused.notice and [p.id for p in refused.pending] == [live.id]
    with pytest.raises(NotAllowedError):
        app.answer_question(thread_id=thread, user_id=CERT_USER, interrupt_id=live.id, value="health")
    assert _status(services, INSURED) != "cancelled"
    assert tool_payloads(app.messages(thread)) == []


def test_readme_demo_cancel_with_the_offline_planner(services):
    user = "mohamed_silva_9265"
    app, _ = make_app(services, model=OfflinePlanner())
    thread = app.new_thread(user_id=user)
    first = app.send(thread_id=thread, user_id=user, text="Cancel reservation K1NW8N because my plans changed")
    assert [p.kind for p in first.pending] == ["question"]
    gate = app.send(thread_id=thread, user_id=user, text="1")  # "My plans changed"
    assert [p.kind for p in gate.pending] == ["confirm"]
    done = app.send(thread_id=thread, user_id=user, text="yes")
    assert not done.pending and "K1NW8N is cancelled" in done.reply
    assert _status(services, "K1NW8N") == "cancelled"


def test_the_chat_ui_shows_the_choices_as_buttons(services):
    from types import SimpleNamespace

    from ui.app import MAX_CHOICES, AirlockUI
    from ui.auth import DEMO_ACCOUNTS_PATH, load_accounts

    app, _ = make_app(services, model=OfflinePlanner())
    ui = AirlockUI(app=app, accounts=load_accounts(DEMO_ACCOUNTS_PATH))
    mia = SimpleNamespace(username="mia_li_3668")
    out = ui.on_send("Cancel reservation AIXC49 because my plans changed", None, mia)  # type: ignore[arg-type]
    # The question's state follows its buttons (a guard summary comes after it).
    thread, box, buttons, state = out[7], out[12], out[14:14 + MAX_CHOICES], out[14 + MAX_CHOICES]
    assert box.visible and state["values"][0] == "change_of_plan"
    assert [b.value for b in buttons if b.visible] == [
        "My plans changed", "The airline cancelled my flight", "A health reason", "The weather",
        "Another reason"]
    # AIXC49 (basic economy, booked weeks ago) is not refundable: the next question follows.
    after = ui.on_choice(0, thread, state, mia)  # type: ignore[arg-type]
    assert after[12].visible and [b.value for b in after[14:14 + MAX_CHOICES] if b.visible] == [
        "Yes, I dispute this: ask a supervisor", "No, keep my reservation"]
    done = ui.on_choice(1, thread, after[14 + MAX_CHOICES], mia)  # type: ignore[arg-type]
    assert not done[12].visible and app.pending(thread) == []
    assert _status(services, "AIXC49") != "cancelled"
