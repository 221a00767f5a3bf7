"""The store demo in headless Chromium: look up an order, return an item, confirm, refund in the ledger.

The app runs as ``AIRLOCK_DOMAIN=retail`` in a subprocess (tests/browser_server.py) against a
fresh database holding the store, with the offline planner and the store's demo accounts
(``tools/retail/accounts.demo.yaml``); the prompts are the store's examples
(``tools/retail/examples.py``). Needs Debian's chromium (``make browser-deps``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_server import AppServer
from tests.conftest import drop_database
from tests.retail_support import CARD, DELIVERED, LARGE, USER, retail_database
from tests.test_browser import browser, db_rows, expect, new_conversation, say, sign_in  # noqa: F401
from tools.retail.examples import app_prompts

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

AIRLINE_WORDS = re.compile(r"flight|reservation|airline|baggage", re.I)


@pytest.fixture(scope="module")
def store_db(server_url: str) -> Iterator[str]:
    name, url = retail_database(server_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def store(store_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with AppServer(store_db, data_dir=tmp_path_factory.mktemp("browser-store"),
                   env={"AIRLOCK_DOMAIN": "retail"}) as srv:
        yield srv


@pytest.fixture(autouse=True)
def store_log_on_failure(store: AppServer) -> Iterator[None]:
    """Print the end of the app's log after each test; pytest shows it when the test fails."""
    mark = len(store.log(chars=10**9))
    yield
    print(f"--- app log ({store.log_path}) ---\n{store.log(chars=10**9)[mark:][-6000:]}")


def _ledger(url: str) -> list[tuple[str, float, str, str, str]]:
    rows = db_rows(url, "SELECT kind, amount_usd, payment_method_id, user_id, order_id FROM retail_ledger ORDER BY id")
    return [(r["kind"], float(r["amount_usd"]), r["payment_method_id"], r["user_id"], r["order_id"]) for r in rows]


def test_the_sign_in_page_and_the_chat_are_the_stores(browser: Any, store: AppServer) -> None:  # noqa: F811
    context = browser.new_context()
    context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
    page = context.new_page()
    page.goto(store.url)
    expect(page.locator("body")).to_contain_text("raj_sanchez_2970")  # the store's demo accounts
    assert "lei_rossi_3206" not in page.locator("body").inner_text()
    context.close()

    context, page = sign_in(browser, store, USER, "demo")
    examples = page.locator("#examples")
    for prompt in app_prompts(USER):  # the store's examples, this customer's first
        expect(examples).to_contain_text(prompt[:50])  # Gradio shortens a long sample
    visible = page.locator("body").inner_text()
    assert not AIRLINE_WORDS.search(visible), AIRLINE_WORDS.findall(visible)
    context.close()


def test_return_an_item_confirm_and_the_refund_is_in_the_ledger(
    browser: Any, store: AppServer, store_db: str,  # noqa: F811
) -> None:
    context, page = sign_in(browser, store, USER, "demo")
    chat = page.locator("#chatbot")
    say(page, f"Show me order {DELIVERED}")
    expect(chat).to_contain_text("delivered")
    expect(chat).to_contain_text("Notebook")

    # The example, picked from the list the app offers, fills the message box.
    page.locator("#examples").get_by_text(f"Return the notebook from order {DELIVERED}").click()
    expect(page.locator("#chat-input textarea")).to_have_value(f"Return the notebook from order {DELIVERED}")
    page.locator("#chat-input textarea").press("Enter")
    gate = page.locator("#confirm-box")
    expect(gate).to_be_visible()
    expect(gate).to_contain_text("28.14")
    expect(gate).to_contain_text("Mastercard ending 2130")  # the card as the customer knows it
    expect(page.locator("#thread-select input")).to_have_value(re.compile("awaiting your confirmation"))
    assert _ledger(store_db) == []  # nothing moves before the customer confirms

    page.locator("#confirm-btn").click()
    expect(gate).to_be_hidden()
    expect(chat).to_contain_text(f"return for order {DELIVERED} is requested")
    expect(chat).to_contain_text("USD 28.14")
    expect(page.locator("#decision-summary")).to_contain_text("you confirmed")
    assert _ledger(store_db) == [("refund", 28.14, CARD, USER, DELIVERED)]
    status = db_rows(store_db, "SELECT doc->>'status' AS status FROM retail_orders WHERE order_id = %s", DELIVERED)
    assert status == [{"status": "return requested"}]
    context.close()


def test_a_large_refund_waits_in_the_reviewer_inbox(browser: Any, store: AppServer, store_db: str) -> None:  # noqa: F811
    before = _ledger(store_db)
    customer_ctx, customer = sign_in(browser, store, USER, "demo")
    new_conversation(customer)
    say(customer, f"Return all items of order {LARGE}")
    expect(customer.locator("#review-notice")).to_be_visible()
    expect(customer.locator("#confirm-box")).to_be_hidden()
    expect(customer.locator("#thread-select input")).to_have_value(re.compile("waiting for a reviewer"))
    reviews = db_rows(store_db, "SELECT * FROM reviews WHERE user_id = %s AND status = 'pending'", USER)
    assert len(reviews) == 1, reviews
    review = reviews[0]
    assert (review["assignee"], review["escalation_id"], review["tool"]) == (
        "supervisor", "large-refund", "return_delivered_order_items")
    assert _ledger(store_db) == before  # no refund while the case waits

    reviewer_ctx, reviewer = sign_in(browser, store, "sam", "review")
    expect(reviewer.locator("#inbox-table")).to_contain_text(USER)
    details = reviewer.locator("#case-details")
    expect(details).to_contain_text(review["review_id"])
    expect(details).to_contain_text("return_delivered_order_items")
    expect(details).to_contain_text(re.compile(r"refund of USD 1,?201\.55"))
    expect(reviewer.locator("#case-args")).to_contain_text(LARGE)

    # Approved, the call still waits for the customer's own confirmation before money moves.
    reviewer.locator("#approve-btn").click()
    expect(reviewer.locator("#decide-result")).to_contain_text("Approved")
    expect(customer.locator("#review-notice")).to_be_hidden()
    gate = customer.locator("#confirm-box")
    expect(gate).to_be_visible()
    expect(gate).to_contain_text(re.compile(r"1,?201\.55"))
    assert _ledger(store_db) == before
    customer.locator("#confirm-btn").click()
    expect(gate).to_be_hidden()
    refunds = [row for row in _ledger(store_db) if row[4] == LARGE]
    assert [(kind, user) for kind, _, _, user, _ in refunds] == [("refund", USER)] * len(refunds) and refunds
    assert round(sum(amount for _, amount, _, _, _ in refunds), 2) == 1201.55
    customer_ctx.close()
    reviewer_ctx.close()
