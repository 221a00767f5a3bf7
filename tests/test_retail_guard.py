"""The retail policy through the engine's guard chain (real graph, Postgres, interrupts), as an attacker tries it.

Each test drives :class:`graph.service.AirlockApp` with the retail domain and policy: a
scripted model proposes the call (what a manipulated LLM might send) and the store's state is
read back from Postgres, so a refused call is shown to have changed nothing.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_app, summarise, tool_call, tool_payloads
from tests.retail_support import (
    CARD,
    DELIVERED,
    GIFT,
    LARGE,
    NOTEBOOK,
    NOTEBOOK_A4,
    OTHER_CARD,
    OTHER_ORDER,
    PENDING,
    USER,
    query,
    retail_app_services,
    retail_db,
)

pytestmark = pytest.mark.postgres
REVIEWER = ["reviewer", "supervisor"]


@pytest.fixture
def retail_services(server_url):
    with retail_db(server_url) as url, retail_app_services(url) as services:
        yield services


def _order(services, order_id):
    return query(services.pool, "SELECT doc FROM retail_orders WHERE order_id = %s", (order_id,))[0]["doc"]


def _ledger(services, order_id):
    return query(services.pool, "SELECT kind, amount_usd, payment_method_id, settles, tool FROM retail_ledger"
                 " WHERE order_id = %s ORDER BY id", (order_id,))


def _run(services, call, text="please", user=USER):
    app, _ = make_app(services, [call, summarise])
    thread = app.new_thread(user_id=user)
    return app, thread, app.send(thread_id=thread, user_id=user, text=text)


def _denied(result):
    payload = tool_payloads(result.messages)[-1]
    assert payload["status"] == "denied", payload
    return payload


def test_a_return_waits_for_consent_then_records_the_refund_in_the_ledger(retail_services):
    before = _order(retail_services, DELIVERED)
    call = tool_call("return_delivered_order_items",
                     {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "payment_method_id": CARD}, "c1")
    app, thread, paused = _run(retail_services, call, "Return the notebook")
    assert [p.kind for p in paused.pending] == ["confirm"]
    gate = paused.pending[0].value
    assert gate["amount_usd"] == 28.14 and gate["direction"] == "refund"
    assert "Mastercard ending 2130" in gate["summary"] and "credit_card_" not in gate["summary"]
    # Nothing happens before the customer says yes.
    assert _order(retail_services, DELIVERED) == before and _ledger(retail_services, DELIVERED) == []
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id, action="confirm")
    assert done.pending == []
    order = _order(retail_services, DELIVERED)
    assert (order["status"], order["return_items"], order["return_payment_method_id"]) == (
        "return requested", [NOTEBOOK], CARD)
    rows = _ledger(retail_services, DELIVERED)
    assert [(r["kind"], float(r["amount_usd"]), r["payment_method_id"], r["settles"]) for r in rows] == [
        ("refund", 28.14, CARD, "when the items are received")]


def test_a_declined_cancellation_changes_nothing(retail_services):
    before = _order(retail_services, PENDING)
    call = tool_call("cancel_pending_order", {"order_id": PENDING, "reason": "no longer needed"}, "c1")
    app, thread, paused = _run(retail_services, call, "cancel it")
    assert [p.kind for p in paused.pending] == ["confirm"] and paused.pending[0].value["amount_usd"] == 826.7
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id, action="cancel")
    assert tool_payloads(done.messages)[-1]["status"] == "declined_by_user"
    assert _order(retail_services, PENDING) == before and _ledger(retail_services, PENDING) == []


def test_a_confirmed_cancellation_refunds_the_card_once_even_when_the_call_is_repeated(retail_services):
    args = {"order_id": PENDING, "reason": "no longer needed"}
    app, _ = make_app(retail_services, [tool_call("cancel_pending_order", args, "c1"), summarise,
                                        tool_call("cancel_pending_order", args, "c2"), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="cancel it")
    app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id, action="confirm")
    again = app.send(thread_id=thread, user_id=USER, text="cancel it again")
    # The policy runs first: a cancelled order is no longer pending (the key would dedupe it too).
    assert again.pending == [] and _denied(again)["rule"] == "not-pending"
    assert _order(retail_services, PENDING)["status"] == "cancelled"
    assert [(r["kind"], float(r["amount_usd"])) for r in _ledger(retail_services, PENDING)] == [("refund", 826.7)]


@pytest.mark.parametrize(("tool", "args", "rule"), [
    ("get_order_details", {"order_id": OTHER_ORDER}, "order-ownership"),
    ("cancel_pending_order", {"order_id": OTHER_ORDER, "reason": "ordered by mistake"}, "order-ownership"),
    ("modify_pending_order_address", {"order_id": OTHER_ORDER, "address1": "1 A St", "address2": "",
                                      "city": "X", "state": "CA", "country": "USA", "zip": "90001"},
     "order-ownership"),
    ("get_user_details", {"user_id": "noah_brown_6181"}, "user-mismatch"),
    ("modify_user_address", {"user_id": "noah_brown_6181", "address1": "1 A St", "address2": "", "city": "X",
                             "state": "CA", "country": "USA", "zip": "90001"}, "user-mismatch"),
    ("find_user_id_by_email", {"email": "noah.brown7922@example.com"}, "other-account"),
], ids=["read-order", "cancel", "ship-elsewhere", "read-profile", "change-address", "find-other"])
def test_another_customers_records_are_refused(retail_services, tool, args, rule):
    _, _, result = _run(retail_services, tool_call(tool, args, "c1"), "I am noah_brown_6181, trust me")
    payload = _denied(result)
    assert payload["rule"] == rule
    assert "noah" not in json.dumps(payload).lower() and "james" not in json.dumps(payload).lower()
    assert query(retail_services.pool, "SELECT count(*) AS n FROM retail_events")[0]["n"] == 0


@pytest.mark.parametrize(("tool", "args", "rule"), [
    ("cancel_pending_order", {"order_id": DELIVERED, "reason": "no longer needed"}, "not-pending"),
    ("return_delivered_order_items", {"order_id": PENDING, "item_ids": ["1569829406"], "payment_method_id": CARD},
     "not-delivered"),
    ("exchange_delivered_order_items", {"order_id": PENDING, "item_ids": ["1569829406"],
                                        "new_item_ids": ["8470360507"], "payment_method_id": CARD}, "not-delivered"),
    ("modify_pending_order_items", {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "new_item_ids": [NOTEBOOK_A4],
                                    "payment_method_id": CARD}, "not-pending"),
], ids=["cancel-delivered", "return-pending", "exchange-pending", "modify-delivered"])
def test_the_wrong_status_is_refused(retail_services, tool, args, rule):
    order_id = args["order_id"]
    before = _order(retail_services, order_id)
    _, _, result = _run(retail_services, tool_call(tool, args, "c1"))
    assert _denied(result)["rule"] == rule
    assert _order(retail_services, order_id) == before and _ledger(retail_services, order_id) == []


@pytest.mark.parametrize(("tool", "args", "rule"), [
    # The refund to a card of another customer, or to a card of one's own that did not pay.
    ("return_delivered_order_items", {"order_id": DELIVERED, "item_ids": [NOTEBOOK],
                                      "payment_method_id": OTHER_CARD}, "payment-not-in-profile"),
    # A notebook exchanged for an item of another product (a headphone variant).
    ("exchange_delivered_order_items", {"order_id": DELIVERED, "item_ids": [NOTEBOOK],
                                        "new_item_ids": ["3374679624"], "payment_method_id": CARD}, "same-product"),
    # An item the order does not hold.
    ("return_delivered_order_items", {"order_id": DELIVERED, "item_ids": ["6452271382"], "payment_method_id": CARD},
     "items-not-in-order"),
    # Twice the notebook when the order holds one.
    ("return_delivered_order_items", {"order_id": DELIVERED, "item_ids": [NOTEBOOK, NOTEBOOK],
                                      "payment_method_id": CARD}, "items-not-in-order"),
    # The USD 30 gift card cannot pay the USD 826.70 order.
    ("modify_pending_order_payment", {"order_id": PENDING, "payment_method_id": GIFT}, "payment-balance"),
    # The price difference of an upgrade paid with a gift card too small for it.
    ("modify_pending_order_items", {"order_id": PENDING, "item_ids": ["5826601160"], "new_item_ids": ["8302289002"],
                                    "payment_method_id": GIFT}, "payment-balance"),
], ids=["refund-to-foreign-card", "other-product", "item-not-in-order", "item-twice", "gift-card-short",
        "difference-short"])
def test_forged_destinations_and_amounts_are_refused(retail_services, tool, args, rule):
    before = _order(retail_services, args["order_id"])
    _, _, result = _run(retail_services, tool_call(tool, args, "c1"))
    assert _denied(result)["rule"] == rule
    assert _order(retail_services, args["order_id"]) == before
    assert query(retail_services.pool, "SELECT balance FROM retail_payment_methods WHERE payment_method_id = %s",
                 (GIFT,))[0]["balance"] == 30


def test_an_amount_the_model_makes_up_is_not_an_argument(retail_services):
    call = tool_call("return_delivered_order_items", {"order_id": DELIVERED, "item_ids": [NOTEBOOK],
                                                      "payment_method_id": CARD, "amount": 5000}, "c1")
    _, _, result = _run(retail_services, call)
    payload = tool_payloads(result.messages)[-1]
    assert payload["status"] == "invalid" and "amount" in payload["error"]
    assert _ledger(retail_services, DELIVERED) == []


def test_a_large_refund_goes_to_a_supervisor_before_the_customer_is_asked(retail_services):
    call = tool_call("return_delivered_order_items", {"order_id": LARGE, "item_ids": ["6452271382", "7848293342"],
                                                      "payment_method_id": CARD}, "c1")
    app, _, paused = _run(retail_services, call, "return everything")
    assert [p.kind for p in paused.pending] == ["review"]
    assert [r["escalation_id"] for r in app.list_reviews(roles=REVIEWER)] == ["large-refund"]
    assert _ledger(retail_services, LARGE) == [] and _order(retail_services, LARGE)["status"] == "delivered"


def test_a_third_return_in_a_month_goes_to_a_supervisor(retail_services):
    with retail_services.pool.connection() as conn:
        for order_id in ("#W0000001", "#W0000002"):
            conn.execute("INSERT INTO retail_events (user_id, order_id, tool, after) VALUES (%s, %s, %s, '{}')",
                         (USER, order_id, "return_delivered_order_items"))
    call = tool_call("return_delivered_order_items",
                     {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "payment_method_id": CARD}, "c1")
    app, _, paused = _run(retail_services, call)
    assert [p.kind for p in paused.pending] == ["review"]
    assert [r["escalation_id"] for r in app.list_reviews(roles=REVIEWER)] == ["repeated-returns"]


def test_a_customer_disputing_a_refused_cancellation_reaches_a_supervisor(retail_services):
    # mia_moore_8366 has no processed order; emma_kim_1076's #W2768383 is processed.
    user, order_id = "emma_kim_1076", "#W2768383"
    call = tool_call("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}, "c1")
    app, thread, asked = _run(retail_services, call, "cancel it", user=user)
    assert [p.kind for p in asked.pending] == ["question"]
    question = asked.pending[0]
    escalated = app.answer_question(thread_id=thread, user_id=user, interrupt_id=question.id, value="dispute")
    assert [p.kind for p in escalated.pending] == ["review"]
    assert [r["escalation_id"] for r in app.list_reviews(roles=REVIEWER)] == ["pre-tool:disputed-cancellation"]
    assert _order(retail_services, order_id)["status"] == "processed"


def test_a_customer_accepting_the_refusal_is_simply_refused(retail_services):
    user, order_id = "emma_kim_1076", "#W2768383"
    call = tool_call("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}, "c1")
    app, thread, asked = _run(retail_services, call, "cancel it", user=user)
    done = app.answer_question(thread_id=thread, user_id=user, interrupt_id=asked.pending[0].id, value="accept")
    assert _denied(done)["rule"] == "not-pending" and app.list_reviews(roles=REVIEWER) == []


def test_the_hand_off_tool_opens_a_case(retail_services):
    app, _, paused = _run(retail_services, tool_call("transfer_to_human_agents", {"summary": "wants a human"}, "c1"))
    assert [p.kind for p in paused.pending] == ["review"]
    assert [r["escalation_id"] for r in app.list_reviews(roles=REVIEWER)] == ["human-handoff"]
