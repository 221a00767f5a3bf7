"""Interrupt payloads and resume values are typed, and their wire format is the one checkpoints hold."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graph.interrupts import (
    ConfirmRequest,
    EscalationRequest,
    QuestionRequest,
    allowed_decisions,
    confirm_request,
    confirm_resume,
    escalation_request,
    interrupt_kind,
    question_resume,
    reviewed_args,
)
from tests.helpers import USER, bags_call, make_app, make_services, summarise, tool_call

# Payloads exactly as the previous release raised them (dict literals), i.e. as paused
# threads hold them in their checkpoints.
LEGACY_CONFIRM = {
    "type": "confirm", "tool": "update_reservation_baggages", "tool_call_id": "call_1",
    "args": {"reservation_id": "VAAOXJ"}, "summary": "Add 1 bag", "amount_usd": 50.0, "direction": "charge",
    "message": "Confirm?", "args_hash": "abc",
}
LEGACY_REVIEW = {
    "action_requests": [{"name": "transfer_to_human_agents", "args": {"summary": "s"}, "description": "d"}],
    "review_configs": [{"action_name": "transfer_to_human_agents", "allowed_decisions": ["approve", "reject"]}],
    "assignee": "supervisor", "escalation_id": "handoff", "phase": "before", "tool_call_id": "call_2",
    "timeout_s": 60.0, "timeout_action": "reject",
}
LEGACY_QUESTION = {
    "type": "question", "id": "call_3:reason", "question": "Why?",
    "choices": [{"value": "health", "label": "Health"}], "tool": "cancel_reservation", "tool_call_id": "call_3",
}


def _keys(typed: Any) -> tuple[frozenset[str], frozenset[str]]:
    return typed.__required_keys__, typed.__required_keys__ | typed.__optional_keys__


def test_builders_produce_the_wire_format_paused_threads_hold():
    assert confirm_request(
        tool="update_reservation_baggages", call_id="call_1", args={"reservation_id": "VAAOXJ"},
        summary="Add 1 bag", quote={"amount_usd": 50.0, "direction": "charge", "other": 1}, message="Confirm?",
        digest="abc",
    ) == LEGACY_CONFIRM
    assert escalation_request(
        name="transfer_to_human_agents", args={"summary": "s"}, description="d", allowed=["approve", "reject"],
        assignee="supervisor", escalation_id="handoff", phase="before", call_id="call_2", timeout=60.0,
        timeout_action="reject",
    ) == LEGACY_REVIEW
    # A quote that is not an object gives no figures (never a crash).
    assert confirm_request(tool="t", call_id="c", args={}, summary="", quote=None, message="", digest="")[
        "amount_usd"] is None
    assert confirm_resume(action="confirm", args_hash="abc", actor=USER) == {
        "action": "confirm", "args_hash": "abc", "actor": USER}
    assert question_resume(question_id="call_3:reason", value="health", actor=USER) == {
        "question_id": "call_3:reason", "value": "health", "actor": USER}


@pytest.mark.parametrize(("payload", "kind"), [
    (LEGACY_CONFIRM, "confirm"), (LEGACY_QUESTION, "question"), (LEGACY_REVIEW, "review"),
    ({"type": "other"}, "unknown"), ("confirm", "unknown"), (None, "unknown"),
])
def test_every_payload_kind_is_recognised_and_anything_else_is_unknown(payload, kind):
    assert interrupt_kind(payload) == kind


@pytest.mark.parametrize(("typed", "payload"), [
    (ConfirmRequest, LEGACY_CONFIRM), (QuestionRequest, LEGACY_QUESTION), (EscalationRequest, LEGACY_REVIEW),
])
def test_the_types_describe_the_legacy_payloads(typed, payload):
    required, known = _keys(typed)
    assert required <= payload.keys() <= known


def test_review_payload_readers_fall_back_safely():
    assert allowed_decisions(LEGACY_REVIEW) == ["approve", "reject"]
    assert allowed_decisions({}) == ["approve", "edit", "reject"]
    assert allowed_decisions({"review_configs": ["not an object"]}) == ["approve", "edit", "reject"]
    assert reviewed_args(LEGACY_REVIEW) == {"summary": "s"}
    assert reviewed_args(None) == {} and reviewed_args({"action_requests": [{"args": "x"}]}) == {}


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


@pytest.mark.postgres
def test_a_real_confirm_gate_and_review_raise_the_typed_shapes(services):
    app, _ = make_app(services, [bags_call(2, 1), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="Add a bag please")
    gate = paused.pending[0]
    required, known = _keys(ConfirmRequest)
    assert gate.kind == "confirm" and required <= gate.value.keys() <= known
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
    assert done.pending == [] and '"status": "captured"' in str(done.messages[-2].content)

    def react(messages: list[Any]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, HumanMessage):
            return tool_call("transfer_to_human_agents", {"summary": "Customer wants a human."}, "call_t")
        assert isinstance(last, ToolMessage)
        return AIMessage(content=f"Result: {last.content}")

    app, _ = make_app(services, [react, react])
    thread = app.new_thread(user_id=USER)
    review = app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent").pending[0]
    required, known = _keys(EscalationRequest)
    assert review.kind == "review" and required <= review.value.keys() <= known
