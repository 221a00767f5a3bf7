"""The retail backend's tool semantics on Postgres, as τ²'s retail tools define them, and its write guarantees."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from graph.db import open_pool
from graph.domain import StaleDecisionError
from tests.retail_support import (
    CARD,
    DELIVERED,
    GIFT,
    NOTEBOOK,
    NOTEBOOK_A4,
    OTHER_CARD,
    PENDING,
    USER,
    query,
    retail_db,
)
from tools.retail import RetailBackend, RetailDomain, ToolError

pytestmark = pytest.mark.postgres

GIFT_USER, GIFT_ORDER, GIFT_CARD_2 = "ethan_lopez_6291", "#W6779827", "gift_card_7219486"  # paid 4079.45, balance 49


@pytest.fixture
def pool(server_url):
    with retail_db(server_url) as url:
        p = open_pool(url, max_size=10)
        yield p
        p.close()


@pytest.fixture
def backend(pool):
    return RetailBackend(pool=pool)


def _balance(pool, method_id: str) -> float:
    return float(query(pool, "SELECT balance FROM retail_payment_methods WHERE payment_method_id = %s",
                       (method_id,))[0]["balance"])


def _ledger(pool, order_id: str) -> list[tuple[str, float, str, str]]:
    rows = query(pool, "SELECT kind, amount_usd, payment_method_id, settles FROM retail_ledger WHERE order_id = %s"
                 " ORDER BY id", (order_id,))
    return [(r["kind"], float(r["amount_usd"]), r["payment_method_id"], r["settles"]) for r in rows]


# ---------------------------------------------------------------------- reads


def test_reads_return_the_tau2_records(backend):
    assert backend.call("find_user_id_by_email", {"email": "RAJ.Sanchez2046@example.com"}) == USER
    by_name = {"first_name": "raj", "last_name": "SANCHEZ", "zip": "92147"}
    assert backend.call("find_user_id_by_name_zip", by_name) == USER
    user = backend.call("get_user_details", {"user_id": USER})
    assert user["payment_methods"][GIFT] == {"source": "gift_card", "id": GIFT, "balance": 30.0}
    assert user["orders"] == [DELIVERED, PENDING, "#W1067251"]
    assert backend.call("get_item_details", {"item_id": NOTEBOOK})["available"] is False
    product = backend.call("get_product_details", {"product_id": "1656367028"})
    assert product["name"] == "Mechanical Keyboard" and len(product["variants"]) > 1
    types = backend.call("list_all_product_types", {})
    assert len(types) == 50 and list(types) == sorted(types)
    for tool, args in (("find_user_id_by_email", {"email": "nobody@example.com"}),
                       ("get_order_details", {"order_id": "#W0000000"}),
                       ("get_item_details", {"item_id": "0000000000"})):
        with pytest.raises(ToolError, match="not found"):
            backend.call(tool, args)


@pytest.mark.parametrize(("expression", "result"), [("2 + 2", "4.0"), ("(10 - 4) / 4", "1.5"), ("-3 * 2", "-6.0")])
def test_calculate_is_arithmetic_only(backend, expression, result):
    assert backend.calculate(expression=expression) == result


@pytest.mark.parametrize("expression", ["__import__('os')", "2 ** 1000", "1 / 0", "", "2 +"])
def test_calculate_refuses_anything_else(backend, expression):
    with pytest.raises(ToolError):
        backend.call("calculate", {"expression": expression})


# ---------------------------------------------------------------------- cancel


def test_cancel_only_a_pending_order_and_refund_the_card_later(backend, pool):
    for order_id in (DELIVERED, "#W2611340"):  # delivered; processed (another customer's)
        with pytest.raises(ToolError, match="Non-pending"):
            backend.call("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"})
    with pytest.raises(ToolError, match="Invalid arguments"):
        backend.call("cancel_pending_order", {"order_id": PENDING, "reason": "found it cheaper"})
    result = backend.call("cancel_pending_order", {"order_id": PENDING, "reason": "ordered by mistake"})
    assert (result["status"], result["direction"], result["amount_usd"]) == ("cancelled", "refund", 826.7)
    order = result["order"]
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "ordered by mistake")
    assert order["payment_history"][-1] == {"transaction_type": "refund", "amount": 826.7,
                                            "payment_method_id": CARD}
    assert _ledger(pool, PENDING) == [("refund", 826.7, CARD, "in 5-7 business days")]


def test_cancel_refunds_a_gift_card_at_once(backend, pool):
    backend.call("cancel_pending_order", {"order_id": GIFT_ORDER, "reason": "no longer needed"})
    assert _balance(pool, GIFT_CARD_2) == pytest.approx(49.0 + 4079.45)
    assert _ledger(pool, GIFT_ORDER) == [("refund", 4079.45, GIFT_CARD_2, "immediately")]


# ---------------------------------------------------------------------- return


def test_return_only_delivered_items_to_the_original_method_or_a_gift_card(backend, pool):
    with pytest.raises(ToolError, match="Non-delivered"):
        backend.call("return_delivered_order_items",
                     {"order_id": PENDING, "item_ids": ["1569829406"], "payment_method_id": CARD})
    with pytest.raises(ToolError, match="Payment method not found"):  # another customer's card
        backend.call("return_delivered_order_items",
                     {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "payment_method_id": OTHER_CARD})
    with pytest.raises(ToolError, match="Some item not found"):  # one notebook, returned twice
        backend.call("return_delivered_order_items",
                     {"order_id": DELIVERED, "item_ids": [NOTEBOOK, NOTEBOOK], "payment_method_id": CARD})
    result = backend.call("return_delivered_order_items",
                          {"order_id": DELIVERED, "item_ids": [NOTEBOOK, "1096508426"], "payment_method_id": GIFT})
    order = result["order"]
    assert (order["status"], order["return_items"], order["return_payment_method_id"]) == (
        "return requested", sorted([NOTEBOOK, "1096508426"]), GIFT)
    assert result["amount_usd"] == pytest.approx(28.14 + 46.13) and result["direction"] == "refund"
    # τ² credits nothing until the items come back: the balance stays, the ledger says when.
    assert _balance(pool, GIFT) == 30.0
    assert _ledger(pool, DELIVERED) == [("refund", 74.27, GIFT, "when the items are received")]
    with pytest.raises(ToolError, match="Non-delivered"):  # one return per order
        backend.call("return_delivered_order_items",
                     {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "payment_method_id": CARD})


def test_a_refund_to_a_card_that_did_not_pay_is_refused(backend, pool):
    # mia_moore_8366's delivered #W5544629 was paid with one method; the others are refused.
    order = backend.call("get_order_details", {"order_id": "#W5544629"})
    paid_with = order["payment_history"][0]["payment_method_id"]
    other = next(m for m, v in backend.get_user_details(user_id="mia_moore_8366")["payment_methods"].items()
                 if m != paid_with and v["source"] != "gift_card")
    with pytest.raises(ToolError, match="original payment method"):
        backend.call("return_delivered_order_items", {"order_id": "#W5544629",
                                                      "item_ids": [order["items"][0]["item_id"]],
                                                      "payment_method_id": other})


# ---------------------------------------------------------------------- exchange


def test_exchange_for_an_available_option_of_the_same_product(backend, pool):
    base = {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "payment_method_id": CARD}
    with pytest.raises(ToolError, match="same product"):  # a headphone variant for a notebook
        backend.call("exchange_delivered_order_items", {**base, "new_item_ids": ["3374679624"]})
    with pytest.raises(ToolError, match="not found or available"):  # an A5 notebook out of stock
        backend.call("exchange_delivered_order_items", {**base, "new_item_ids": ["9421195098"]})
    with pytest.raises(ToolError, match="should match"):
        backend.call("exchange_delivered_order_items", {**base, "new_item_ids": [NOTEBOOK_A4, NOTEBOOK_A4]})
    result = backend.call("exchange_delivered_order_items", {**base, "new_item_ids": [NOTEBOOK_A4]})
    order = result["order"]
    assert (order["status"], order["exchange_items"], order["exchange_new_items"]) == (
        "exchange requested", [NOTEBOOK], [NOTEBOOK_A4])
    assert (order["exchange_price_difference"], result["direction"]) == (4.15, "charge")
    assert _ledger(pool, DELIVERED) == [("charge", 4.15, CARD, "when the items are received")]


def test_an_exchange_paid_by_a_gift_card_needs_the_balance(backend, pool):
    args = {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "new_item_ids": [NOTEBOOK_A4], "payment_method_id": GIFT}
    with pool.connection() as conn:
        conn.execute("UPDATE retail_payment_methods SET balance = 4.14 WHERE payment_method_id = %s", (GIFT,))
    with pytest.raises(ToolError, match="Insufficient gift card balance"):  # USD 4.15 due
        backend.call("exchange_delivered_order_items", args)
    # A cheaper option refunds the difference: no balance needed (headphones 377.97 -> 370.53).
    result = backend.call("exchange_delivered_order_items", {**args, "item_ids": ["3104857380"],
                                                             "new_item_ids": ["3374679624"]})
    assert (result["order"]["exchange_price_difference"], result["direction"]) == (-7.44, "refund")


# ---------------------------------------------------------------------- modify pending


def test_modify_items_once_with_each_item_priced_as_its_new_option(backend, pool):
    # Camera 320.55 -> 8470360507 (291.31) and purifier 506.15 -> 8302289002 (547.55): +12.16.
    args = {"order_id": PENDING, "item_ids": ["1569829406", "5826601160"],
            "new_item_ids": ["8470360507", "8302289002"], "payment_method_id": GIFT}
    result = backend.call("modify_pending_order_items", args)
    order = result["order"]
    assert order["status"] == "pending (item modified)"
    assert [(i["item_id"], i["price"]) for i in order["items"]] == [("8470360507", 291.31), ("8302289002", 547.55)]
    assert order["items"][0]["options"]["resolution"] == "2K"
    assert order["payment_history"][-1] == {"transaction_type": "payment", "amount": 12.16,
                                            "payment_method_id": GIFT}
    assert _balance(pool, GIFT) == pytest.approx(30.0 - 12.16)
    with pytest.raises(ToolError, match="Non-pending"):  # once per order
        backend.call("modify_pending_order_items", {**args, "item_ids": ["8470360507"],
                                                    "new_item_ids": ["6901578702"]})
    with pytest.raises(ToolError, match="Non-pending"):
        backend.call("cancel_pending_order", {"order_id": PENDING, "reason": "no longer needed"})


def test_modify_payment_moves_the_payment_and_checks_the_gift_card(backend, pool):
    with pytest.raises(ToolError, match="Insufficient gift card balance"):
        backend.call("modify_pending_order_payment", {"order_id": PENDING, "payment_method_id": GIFT})
    with pytest.raises(ToolError, match="different"):
        backend.call("modify_pending_order_payment", {"order_id": PENDING, "payment_method_id": CARD})
    result = backend.call("modify_pending_order_payment", {"order_id": GIFT_ORDER,
                                                           "payment_method_id": "credit_card_9789590"})
    assert [p["transaction_type"] for p in result["order"]["payment_history"]] == ["payment", "payment", "refund"]
    assert _balance(pool, GIFT_CARD_2) == pytest.approx(49.0 + 4079.45)
    with pytest.raises(ToolError, match="exactly one payment"):
        backend.call("modify_pending_order_payment", {"order_id": GIFT_ORDER, "payment_method_id": GIFT_CARD_2})


def test_addresses_change_on_pending_orders_and_profiles(backend):
    address = {"address1": "10 Main Street", "address2": "Apt 2", "city": "Springfield", "state": "IL",
               "country": "USA", "zip": "62701"}
    with pytest.raises(ToolError, match="Non-pending"):
        backend.call("modify_pending_order_address", {"order_id": DELIVERED, **address})
    assert backend.call("modify_pending_order_address", {"order_id": PENDING, **address})["order"]["address"] == address
    assert backend.call("modify_user_address", {"user_id": USER, **address})["user"]["address"] == address
    assert backend.get_user_details(user_id=USER)["address"] == address


# ---------------------------------------------------------------------- write guarantees


def test_a_key_used_twice_moves_the_money_once(backend, pool):
    args = {"order_id": PENDING, "reason": "no longer needed"}
    first = backend.call("cancel_pending_order", args, idempotency_key="k-1")
    again = backend.call("cancel_pending_order", args, idempotency_key="k-1")
    assert (again["status"], again["original_status"]) == ("deduplicated", "cancelled")
    assert again["entry_ids"] == first["entry_ids"] and len(_ledger(pool, PENDING)) == 1


def test_a_fenced_key_never_writes_later(backend, pool):
    assert backend.reconcile("late-key") is None
    result = backend.call("cancel_pending_order", {"order_id": PENDING, "reason": "no longer needed"},
                          idempotency_key="late-key")
    assert result["status"] == "deduplicated" and result["executed"] is False
    assert backend.get_order_details(order_id=PENDING)["status"] == "pending" and _ledger(pool, PENDING) == []


def test_concurrent_cancellations_refund_once(backend, pool):
    outcomes: list[Any] = []

    def cancel(key: str) -> None:
        try:
            outcomes.append(backend.call("cancel_pending_order", {"order_id": PENDING, "reason": "no longer needed"},
                                         idempotency_key=key)["status"])
        except ToolError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=cancel, args=(f"k{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Non-pending order cannot be cancelled"] * 3 + ["cancelled"]
    assert len(_ledger(pool, PENDING)) == 1


class _Guard:
    """A WriteGuard that refuses when the gift card no longer covers the quote (as a policy rule would)."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], str]] = []
        self.recorded: list[Mapping[str, Any]] = []

    thread_id = "t-1"
    user_id = USER
    conversation: Mapping[str, Any] = {}

    def verify(self, facts: dict[str, Any], state_token: str) -> None:
        self.seen.append((facts, state_token))
        if not facts["payment"]["covers_quote"]:
            raise StaleDecisionError("the gift card no longer covers it")

    def record(self, cursor: Any, result: Mapping[str, Any]) -> None:
        self.recorded.append(result)


def test_the_write_rechecks_the_decision_on_locked_rows(pool):
    domain = RetailDomain(backend=RetailBackend(pool=pool))
    args = {"order_id": DELIVERED, "item_ids": [NOTEBOOK], "new_item_ids": [NOTEBOOK_A4], "payment_method_id": GIFT}
    decided = domain.facts("exchange_delivered_order_items", args, user_id=USER, conversation={})
    assert decided["payment"]["covers_quote"] and decided["quote"]["amount_usd"] == 4.15
    token = domain.state_token("exchange_delivered_order_items", args, user_id=USER)
    # Between the decision and the write, the gift card is spent elsewhere.
    with pool.connection() as conn:
        conn.execute("UPDATE retail_payment_methods SET balance = 1 WHERE payment_method_id = %s", (GIFT,))
    guard = _Guard()
    with pytest.raises(StaleDecisionError):
        domain.execute("exchange_delivered_order_items", args, idempotency_key="k-x", guard=guard)
    assert guard.seen[0][1] == token and guard.recorded == []
    assert domain.backend.get_order_details(order_id=DELIVERED)["status"] == "delivered"
    assert _ledger(pool, DELIVERED) == []
    # Restored, the same write goes through, is recorded in its transaction and versions the order.
    with pool.connection() as conn:
        conn.execute("UPDATE retail_payment_methods SET balance = 30 WHERE payment_method_id = %s", (GIFT,))
    result = domain.execute("exchange_delivered_order_items", args, idempotency_key="k-y", guard=guard)
    assert guard.recorded == [result]
    assert domain.state_token("exchange_delivered_order_items", args, user_id=USER) != token
    assert query(pool, "SELECT conversation_id FROM retail_ledger WHERE order_id = %s", (DELIVERED,)) == [
        {"conversation_id": "t-1"}]


def test_forget_customer_erases_the_profile_contact_fields(pool):
    domain = RetailDomain(backend=RetailBackend(pool=pool))
    domain.backend.call("modify_user_address", {"user_id": USER, "address1": "10 Main Street", "address2": "",
                                                "city": "Springfield", "state": "IL", "country": "USA",
                                                "zip": "62701"})
    with pool.connection() as conn:
        counts = domain.forget_customer(conn.cursor(), USER)
    assert counts == {"retail_users": 1, "retail_events": 1}
    assert "Main Street" not in str(query(pool, "SELECT before, after FROM retail_events"))
    assert "Sunset Drive" not in str(query(pool, "SELECT before, after FROM retail_events"))
    user = domain.backend.get_user_details(user_id=USER)
    assert "email" not in user and "address" not in user and user["payment_methods"]
    assert query(pool, "SELECT email FROM retail_users WHERE user_id = %s", (USER,)) == [{"email": ""}]


def test_concurrent_start_ups_load_the_store_exactly_once(server_url):
    from tests.conftest import drop_database, make_database
    from tools.retail.loader import ensure_loaded

    name, url = make_database(server_url)  # the engine's tables, no store yet
    try:
        p = open_pool(url, max_size=6)
        loaded: list[bool] = []
        threads = [threading.Thread(target=lambda: loaded.append(ensure_loaded(p))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(loaded) == [False, False, True]
        # The engine's template already records the configured domain's (the airline's) migrations.
        assert query(p, "SELECT domain, version, name, adopted FROM domain_migrations WHERE domain = 'retail'") == [
            {"domain": "retail", "version": 1, "name": "retail", "adopted": False}]
        counts = query(p, "SELECT (SELECT count(*) FROM retail_products) AS products,"
                          " (SELECT count(*) FROM retail_users) AS users,"
                          " (SELECT count(*) FROM retail_orders) AS orders,"
                          " (SELECT count(*) FROM retail_payment_methods WHERE source = 'gift_card') AS gift_cards")
        assert counts == [{"products": 50, "users": 500, "orders": 1000, "gift_cards": 234}]
        p.close()
    finally:
        drop_database(server_url, name)
