"""Invalid input never raises: bad tool arguments and bad customer input come back as refusals.

An attacking model sends NaN, Infinity, NUL bytes, lone surrogates, control characters, huge or
deeply nested arguments, or arguments that are not an object at all; a client sends the same in
the customer's text or in a confirmation. Every one must come back as an ``invalid`` result
(a ToolMessage for the model, a refusal for the client), change nothing, and leave the thread
usable for the next turn.
"""

from __future__ import annotations

import json
import math

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from nodes.guardrails.canonical import (
    MAX_DEPTH,
    InvalidArgumentsError,
    canonical_arguments,
    canonical_text,
)
from tests.helpers import (
    CARD,
    RES,
    USER,
    bags_call,
    ledger_rows,
    make_app,
    make_services,
    reservation_doc,
    summarise,
    tool_call,
    tool_payloads,
)

pytestmark = pytest.mark.postgres


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_ARGUMENTS = {
    "nan": {"reservation_id": RES, "total_baggages": math.nan, "nonfree_baggages": 0, "payment_id": CARD},
    "infinity": {"reservation_id": RES, "total_baggages": math.inf, "nonfree_baggages": 0, "payment_id": CARD},
    "minus-infinity": {"reservation_id": RES, "total_baggages": 2, "nonfree_baggages": -math.inf,
                       "payment_id": CARD},
    "nul": {"reservation_id": RES + "\x00", "total_baggages": 2, "nonfree_baggages": 0, "payment_id": CARD},
    "lone-surrogate": {"reservation_id": RES, "total_baggages": 2, "nonfree_baggages": 0,
                       "payment_id": CARD + "\ud800"},
    "escape-sequence": {"reservation_id": "\x1b[2J" + RES, "total_baggages": 2, "nonfree_baggages": 0,
                        "payment_id": CARD},
    "nul-in-key": {"reservation_id": RES, "total\x00": 2, "nonfree_baggages": 0, "payment_id": CARD},
    "too-deep": {"reservation_id": RES, "total_baggages": 2, "nonfree_baggages": 0, "payment_id": CARD,
                 "extra": _nested(MAX_DEPTH + 2)},
    "too-large": {"reservation_id": RES, "total_baggages": 2, "nonfree_baggages": 0, "payment_id": CARD,
                  "extra": list(range(5_000))},
    "huge-int": {"reservation_id": RES, "total_baggages": 10**400, "nonfree_baggages": 0, "payment_id": CARD},
    "bytes": {"reservation_id": RES.encode(), "total_baggages": 2, "nonfree_baggages": 0, "payment_id": CARD},
}


# -- the canonical form, as a unit ------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_canonical_arguments_refuses_with_a_reason_naming_the_path(case):
    with pytest.raises(InvalidArgumentsError) as caught:
        canonical_arguments(BAD_ARGUMENTS[case])
    assert caught.value.reason.startswith("args")
    # The reason is for the model: it never echoes the offending value.
    assert "\x00" not in caught.value.reason and "\ud800" not in caught.value.reason


@pytest.mark.parametrize("raw", [None, [1, 2], "args", 5, math.nan, b"{}", {1: "a"}])
def test_canonical_arguments_refuses_anything_but_an_object_of_json(raw):
    with pytest.raises(InvalidArgumentsError):
        canonical_arguments(raw)


def test_canonical_arguments_normalises_strings_and_keeps_types():
    decomposed = "Jose\u0301"  # "José" with a combining accent
    out = canonical_arguments({"name": decomposed, "n": 2, "x": 1.5, "ok": True, "none": None,
                               "list": [decomposed, {"k\u0301": 1}]})
    assert out == {"name": "Jos\u00e9", "n": 2, "x": 1.5, "ok": True, "none": None,
                   "list": ["Jos\u00e9", {"\u1e31": 1}]}
    assert type(out["ok"]) is bool and type(out["n"]) is int
    # Two keys that become equal under NFC are refused rather than silently merged.
    with pytest.raises(InvalidArgumentsError, match="duplicate"):
        canonical_arguments({"Jos\u00e9": 1, decomposed: 2})


def test_canonical_text_allows_ordinary_whitespace_only():
    assert canonical_text("two lines\nand\ta tab\r\n") == "two lines\nand\ta tab\r\n"
    for bad in ("\x00", "\x07bell", "\x7f", "\x85", "\udc00"):
        with pytest.raises(InvalidArgumentsError):
            canonical_text(bad)


# -- through the graph: a model that sends garbage ----------------------------------------------
@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_model_sending_garbage_arguments_gets_an_invalid_result(services, case):
    before = reservation_doc(services, RES)
    ledger_before = ledger_rows(services)
    attack = tool_call("update_reservation_baggages", BAD_ARGUMENTS[case], "call_garbage")
    app, model = make_app(services, [attack, summarise, AIMessage(content="Anything else?")])
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text="add bags to VAAOXJ")
    assert result.pending == []  # no gate was raised for an unreadable call
    answers = [m for m in app.messages(thread) if isinstance(m, ToolMessage)]
    assert len(answers) == 1 and answers[0].status == "error"
    payload = json.loads(str(answers[0].content))
    assert payload["status"] == "invalid" and "invalid arguments" in payload["error"]
    assert reservation_doc(services, RES) == before and ledger_rows(services) == ledger_before
    # The thread stays usable: the next turn runs normally.
    assert app.send(thread_id=thread, user_id=USER, text="thanks").reply == "Anything else?"
    assert model.call_count == 3


def test_model_sending_non_object_arguments_gets_an_invalid_result(services):
    def forged(messages):
        # A model client that skips validation: the arguments are a JSON array.
        return AIMessage.model_construct(
            content="", tool_calls=[{"name": "get_reservation_details", "args": [RES], "id": "x",
                                     "type": "tool_call"}],
            invalid_tool_calls=[], additional_kwargs={}, response_metadata={}, type="ai",
            id="forged-ai", name=None, usage_metadata=None,
        )

    app, _ = make_app(services, [forged, summarise, AIMessage(content="Anything else?")])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="show VAAOXJ")
    payloads = tool_payloads(app.messages(thread))
    assert [p["status"] for p in payloads] == ["invalid"]
    assert "JSON object" in payloads[0]["error"]
    assert app.send(thread_id=thread, user_id=USER, text="ok").reply == "Anything else?"


def test_a_confirmed_write_still_runs_after_a_garbage_sibling(services):
    """Control: the canonical check refuses garbage, not the valid call next to it."""
    both = AIMessage(content="", tool_calls=[
        {"name": "get_reservation_details", "args": {"reservation_id": RES + "\x00"}, "id": "bad"},
        bags_call(4, 3).tool_calls[0],
    ])
    app, _ = make_app(services, [both, summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["confirm"]
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id, action="confirm")
    statuses = [p["status"] for p in tool_payloads(app.messages(thread))]
    assert sorted(statuses) == ["captured", "invalid"]
    assert done.pending == []


# -- through the service: a client that sends garbage -------------------------------------------
BAD_TEXTS = ["hello\x00world", "lone \ud83d surrogate", "\x1b[31mred", "bell\x07", None, 42, b"bytes",
             {"text": "hi"}, ["hi"], math.nan, "x" * 200_000]


@pytest.mark.parametrize("text", BAD_TEXTS, ids=repr)
def test_send_with_invalid_text_is_refused_and_loses_nothing(services, text):
    app, model = make_app(services, [AIMessage(content="Hello!"), AIMessage(content="Still here.")])
    thread = app.new_thread(user_id=USER)
    assert app.send(thread_id=thread, user_id=USER, text="hi").reply == "Hello!"
    history = app.messages(thread)
    refused = app.send(thread_id=thread, user_id=USER, text=text)
    assert refused.invalid and refused.notice and refused.messages == []
    assert [m.id for m in app.messages(thread)] == [m.id for m in history]  # nothing lost, nothing added
    assert model.call_count == 1
    assert app.send(thread_id=thread, user_id=USER, text="hi again").reply == "Still here."


def test_send_normalises_text_to_nfc(services):
    app, _ = make_app(services, [AIMessage(content="Hello!")])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="a cafe\u0301 please")
    human = next(m for m in app.messages(thread) if isinstance(m, HumanMessage))
    assert human.content == "a caf\u00e9 please"


GARBAGE_ANSWERS = [
    {"action": "yes"}, {"action": None}, {"action": 1}, {"action": math.nan}, {"action": {"a": 1}},
    {"action": "confirm", "args_hash": math.nan}, {"action": "confirm", "args_hash": math.inf},
    {"action": "confirm", "args_hash": {"h": 1}}, {"action": "confirm", "args_hash": "\x00"},
    {"action": "confirm", "args_hash": "\ud800"}, {"action": "confirm\x00"},
]


@pytest.mark.parametrize("answer", GARBAGE_ANSWERS, ids=repr)
def test_answer_confirm_with_garbage_is_refused_and_the_gate_stays(services, answer):
    app, _ = make_app(services, [bags_call(4, 3), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ")
    gate = paused.pending[0]
    ledger_before = ledger_rows(services)
    refused = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, **answer)
    assert refused.invalid and refused.notice
    assert [p.id for p in app.pending(thread)] == [gate.id]  # the same gate still waits
    assert ledger_rows(services) == ledger_before
    # The customer can still answer it properly.
    app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="cancel")
    assert app.pending(thread) == []
    assert ledger_rows(services) == ledger_before


@pytest.mark.parametrize("interrupt_id", [None, 7, math.nan, {"id": 1}, "\x00", "\ud800"], ids=repr)
def test_answer_confirm_with_a_garbage_interrupt_id_is_refused(services, interrupt_id):
    app, _ = make_app(services, [bags_call(4, 3), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ")
    refused = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=interrupt_id, action="confirm")
    assert refused.invalid
    assert [p.id for p in app.pending(thread)] == [paused.pending[0].id]
