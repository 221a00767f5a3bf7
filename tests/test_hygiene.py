"""Thread hygiene: the graph assigns tool-call ids and every call is answered truthfully.

The attacking model reuses an id answered in an earlier turn, or gives two sibling calls one
id. Neither may hide a call or leave one unanswered (an OpenAI-style API rejects every later
request on such a thread). A call left without an answer by a crashed task is answered from
``tool_outcomes``: executed when its write committed, not run otherwise.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from nodes.guardrails.outcomes import OutcomeStore
from tests.helpers import OTHER_USER_RES, RES, USER, make_app, make_services, summarise, tool_call

pytestmark = pytest.mark.postgres


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def assert_chat_api_valid(messages):
    """Check the history as an OpenAI-style API does: unique ids, each call answered once, in place."""
    seen: set[str] = set()
    open_calls: set[str] = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in open_calls, f"answer to no open call: {message.tool_call_id}"
            open_calls.remove(message.tool_call_id)
            continue
        assert not open_calls, f"calls left unanswered: {open_calls}"
        if isinstance(message, AIMessage):
            for call in [*message.tool_calls, *message.invalid_tool_calls]:
                assert call["id"] not in seen, f"tool-call id used twice: {call['id']}"
                seen.add(call["id"])
                open_calls.add(call["id"])
    assert not open_calls, f"calls left unanswered: {open_calls}"


def test_an_id_reused_from_an_earlier_turn_is_still_run_and_answered(services):
    app, model = make_app(services, [
        tool_call("get_reservation_details", {"reservation_id": RES}, "call_1"), summarise,
        # Next turn, the model reuses the answered id for a new call.
        tool_call("get_user_details", {"user_id": USER}, "call_1"), summarise,
    ])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="show VAAOXJ")
    second = app.send(thread_id=thread, user_id=USER, text="and my profile")
    messages = app.messages(thread)
    assert_chat_api_valid(messages)
    answers = [m for m in messages if isinstance(m, ToolMessage)]
    assert [a.name for a in answers] == ["get_reservation_details", "get_user_details"]
    assert USER in str(answers[1].content)  # the second call really ran
    assert "Result:" in second.reply and model.call_count == 4


def test_duplicated_sibling_ids_get_one_answer_each(services):
    same = AIMessage(content="", tool_calls=[
        {"name": "get_reservation_details", "args": {"reservation_id": RES}, "id": "dup"},
        {"name": "get_reservation_details", "args": {"reservation_id": OTHER_USER_RES}, "id": "dup"},
    ])
    app, _ = make_app(services, [same, summarise, AIMessage(content="Anything else?")])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="show both")
    messages = app.messages(thread)
    assert_chat_api_valid(messages)
    calls = next(m for m in messages if isinstance(m, AIMessage) and m.tool_calls).tool_calls
    answers = {m.tool_call_id: json.loads(str(m.content)) for m in messages if isinstance(m, ToolMessage)}
    by_reservation = {c["args"]["reservation_id"]: answers[c["id"]] for c in calls}
    # Each answer belongs to its own call: the customer's reservation is shown, the other is denied.
    assert RES in json.dumps(by_reservation[RES]) and by_reservation[RES]["status"] != "denied"
    assert by_reservation[OTHER_USER_RES]["status"] == "denied"
    assert app.send(thread_id=thread, user_id=USER, text="ok").reply == "Anything else?"


def test_model_ids_never_reach_the_history(services):
    app, _ = make_app(services, [tool_call("get_reservation_details", {"reservation_id": RES}, "call_1"),
                                 summarise])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="show VAAOXJ")
    ids = {c["id"] for m in app.messages(thread) if isinstance(m, AIMessage) for c in m.tool_calls}
    assert len(ids) == 1 and "call_1" not in ids


def _strand_a_call(app, thread: str, name: str, args: dict) -> str:
    """Leave the thread as a process killed inside a tool task does: a call with no answer."""
    app.graph.update_state(
        app._config(thread),
        {"messages": [HumanMessage(content="add a bag"),
                      AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_stranded"}])]},
        as_node="guard_output",
    )
    return "call_stranded"


def test_a_dangling_call_whose_write_committed_is_answered_as_executed(services):
    app, model = make_app(services, [AIMessage(content="Done.")])
    thread = app.new_thread(user_id=USER)
    args = {"reservation_id": RES, "total_baggages": 4, "nonfree_baggages": 3, "payment_id": "credit_card_1052991"}
    call_id = _strand_a_call(app, thread, "update_reservation_baggages", args)
    recorded = {"status": "captured", "reservation_id": RES, "amount_usd": 150.0}
    with services.pool.connection() as conn, conn.cursor() as cur:  # the write's own transaction
        OutcomeStore.record(cur, thread_id=thread, call_id=call_id, tool="update_reservation_baggages",
                            user_id=USER, idempotency_key="k1", result=recorded)
    app.send(thread_id=thread, user_id=USER, text="did it work?")
    messages = app.messages(thread)
    assert_chat_api_valid(messages)
    answer = next(m for m in messages if isinstance(m, ToolMessage) and m.tool_call_id == call_id)
    payload = json.loads(str(answer.content))
    assert payload["status"] == "executed" and payload["result"]["amount_usd"] == 150.0
    assert "nothing was executed" not in str(answer.content)
    # The model saw the truth before it answered.
    assert any(isinstance(m, ToolMessage) and "executed" in str(m.content) for m in model.calls[0])


def test_a_dangling_call_without_a_committed_write_is_answered_not_run(services):
    app, _ = make_app(services, [AIMessage(content="Sorry, that did not go through.")])
    thread = app.new_thread(user_id=USER)
    call_id = _strand_a_call(app, thread, "update_reservation_baggages",
                             {"reservation_id": RES, "total_baggages": 4, "nonfree_baggages": 3,
                              "payment_id": "credit_card_1052991"})
    app.send(thread_id=thread, user_id=USER, text="did it work?")
    messages = app.messages(thread)
    assert_chat_api_valid(messages)
    answer = next(m for m in messages if isinstance(m, ToolMessage) and m.tool_call_id == call_id)
    assert json.loads(str(answer.content))["status"] == "not_run"


def test_unreadable_calls_alone_are_answered_and_the_model_asked_again(services):
    def garbage(messages):
        return AIMessage.model_construct(
            content="", tool_calls=[{"name": "get\x00reservation", "args": {}, "id": "x", "type": "tool_call"}],
            invalid_tool_calls=[{"name": "get_reservation_details", "args": "{not json", "id": "y",
                                 "error": "bad json", "type": "invalid_tool_call"}],
            additional_kwargs={}, response_metadata={}, type="ai", id="garbage-ai", name=None,
            usage_metadata=None,
        )

    app, model = make_app(services, [garbage, AIMessage(content="Let me try that differently.")])
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text="show VAAOXJ")
    assert result.reply == "Let me try that differently."
    messages = app.messages(thread)
    assert_chat_api_valid(messages)
    answers = [json.loads(str(m.content)) for m in messages if isinstance(m, ToolMessage)]
    assert [a["status"] for a in answers] == ["invalid", "invalid"]
    assert model.call_count == 2
