"""Numbers: conditions see the canonical value that is written (issue 7, class 3).

Money is decimal cents rounded the way the backend rounds, and only finite numbers are
accepted; anything else is an ``invalid`` tool result, never an exception out of the service.
"""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import AIMessage

from tests.helpers import make_app, make_services, tool_call, tool_payloads

pytestmark = pytest.mark.postgres

# Eligible for a USD 200 certificate (cancelled two-passenger trip); 200 needs a supervisor.
CERT_USER = "lei_rossi_4874"
STAFF = ["reviewer", "supervisor"]


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def _certificates(services, user_id: str) -> list[dict]:
    with services.pool.connection() as conn:
        row = conn.execute("SELECT doc FROM airline_users WHERE user_id = %s", (user_id,)).fetchone()
    return [m for m in row["doc"]["payment_methods"].values() if m.get("source") == "certificate"]


def test_certificate_just_under_the_limit_is_seen_as_the_rounded_amount(services):
    """A certificate of USD 199.995 is USD 200.00 for the conditions, so a supervisor decides.

    Attack: the model asks for 199.995; the escalation `args.amount >= 200` saw the raw float
    and let it through, while the backend rounded it to 200.00 and issued it. The customer
    presses Confirm on whatever gate appears.
    """
    before = _certificates(services, CERT_USER)
    cert = tool_call("send_certificate", {"user_id": CERT_USER, "amount": 199.995}, "call_cert")
    app, _ = make_app(services, [cert, AIMessage(content="Done.")])
    thread = app.new_thread(user_id=CERT_USER)
    result = app.send(thread_id=thread, user_id=CERT_USER,
                      text="my flight was cancelled, I would like compensation")
    for question in [p for p in result.pending if p.kind == "question"]:
        # The customer does ask for compensation (the system asks; the answer is the fact).
        result = app.answer_question(thread_id=thread, user_id=CERT_USER, interrupt_id=question.id, value="yes")
    for gate in [p for p in result.pending if p.kind == "confirm"]:
        assert "199.995" not in gate.value["message"], gate.value  # shown as it would be written
        result = app.answer_confirm(thread_id=thread, user_id=CERT_USER, interrupt_id=gate.id, action="confirm")
    cases = [r for r in app.list_reviews(roles=STAFF) if r["thread_id"] == thread]
    issued = [c for c in _certificates(services, CERT_USER) if c not in before]
    assert issued == [], f"a USD {issued[0]['amount']} certificate was issued without a supervisor"
    assert [c["escalation_id"] for c in cases] == ["compensation-over-limit"], cases


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf])
def test_non_finite_certificate_amount_is_an_invalid_result(services, amount):
    """NaN / Infinity in a money argument come back to the model as an `invalid` tool result.

    Attack: the model sends a non-finite amount; on today's main a condition or the gate
    raises out of `send` instead of answering the call.
    """
    cert = tool_call("send_certificate", {"user_id": CERT_USER, "amount": amount}, "call_cert")
    app, _ = make_app(services, [cert, AIMessage(content="Sorry.")])
    thread = app.new_thread(user_id=CERT_USER)
    before = _certificates(services, CERT_USER)
    result = app.send(thread_id=thread, user_id=CERT_USER, text="my flight was cancelled, I want compensation")
    assert result.pending == []
    assert [p["status"] for p in tool_payloads(result.messages)] == ["invalid"]
    assert _certificates(services, CERT_USER) == before


@pytest.mark.parametrize("amount", [math.nan, math.inf])
def test_non_finite_payment_amount_in_a_booking_is_an_invalid_result(services, amount):
    """A booking whose payment amount is NaN / Infinity is answered `invalid`, nothing booked."""
    book = tool_call("book_reservation", {
        "user_id": "lei_rossi_3206", "origin": "PHL", "destination": "LGA", "flight_type": "one_way",
        "cabin": "business", "flights": [{"flight_number": "HAT001", "date": "2024-05-24"}],
        "passengers": [{"first_name": "Ana", "last_name": "Rossi", "dob": "1990-01-01"}],
        "payment_methods": [{"payment_id": "credit_card_1052991", "amount": amount}],
        "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no",
    }, "call_book")
    app, _ = make_app(services, [book, AIMessage(content="Sorry.")])
    thread = app.new_thread(user_id="lei_rossi_3206")
    result = app.send(thread_id=thread, user_id="lei_rossi_3206", text="book HAT001 for me")
    assert result.pending == []
    assert [p["status"] for p in tool_payloads(result.messages)] == ["invalid"]
