"""What customers and reviewers read, in headless Chromium (issue 10: items 6, 12 and "How it looks").

Plain-language gate boxes and call boxes for customers (no tool names, JSON or payment ids),
a compact guard panel, a thumb that opens the feedback comment, a stale confirm from a second
tab shown as a notice (not error badges), an inbox that never carries a comment over to the
next case, and layout checks measured on the rendered page (labels, arrows, table cells).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest

import tests.test_browser as base
from tests.browser_server import AppServer
from tests.test_browser import SHOTS, db_rows, expect, new_conversation, say, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
# The same fixtures as tests/test_browser.py (this module gets its own app and database).
app_db = base.app_db
server = base.server
browser = base.browser
server_log_on_failure = base.server_log_on_failure


def emoji_in(text: str) -> list[str]:
    """Return the pictographs in text (symbols a machine without an emoji font shows as boxes)."""
    return sorted({ch for ch in text if ord(ch) >= 0x2300 and unicodedata.category(ch) == "So"})


def box(locator: Any) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, locator
    return found


def test_customer_reads_a_plain_gate_and_a_compact_guard_panel(
    browser: Any, server: AppServer, app_db: str
) -> None:
    context, page = sign_in(browser, server, "lei_rossi_3206", "demo")
    say(page, "Add 2 checked bags to reservation VAAOXJ")
    gate = page.locator("#confirm-box")
    expect(gate).to_be_visible()
    # The action, the amount and the card as the customer knows it ...
    expect(gate).to_contain_text("checked bags of reservation VAAOXJ")
    expect(gate).to_contain_text("USD 100.00")
    expect(gate).to_contain_text("Mastercard ending 1780")
    # ... and none of the internals.
    for internal in ("update_reservation_baggages", "credit_card_1052991", "payment_id", "{"):
        expect(gate).not_to_contain_text(internal)
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Look up reservation VAAOXJ")
    for internal in ("update_reservation_baggages", "get_reservation_details", '"status"'):
        expect(chat).not_to_contain_text(internal)

    # The guard panel: one line per turn for a customer; the developer table is not shown.
    panel = page.locator("#decision-summary")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Turn 1")
    expect(panel).to_contain_text("message checked")
    expect(page.locator("#decisions")).to_be_hidden()
    page.locator("#confirm-btn").click()
    expect(gate).to_be_hidden()
    expect(panel).to_contain_text("you confirmed")

    # No emoji anywhere on the page (they are empty boxes without an emoji font).
    assert emoji_in(page.locator("body").inner_text()) == []
    context.close()


def test_layout_labels_do_not_overlap(browser: Any, server: AppServer, app_db: str) -> None:
    context, page = sign_in(browser, server, "mia_li_3668", "demo")
    say(page, "Add 3 checked bags to reservation AIXC49")
    expect(page.locator("#confirm-box")).to_be_visible()
    field = page.locator("#thread-select input")
    expect(field).to_have_value(re.compile("awaiting your confirmation"))
    # The thread label's text area ends before the dropdown arrow starts.
    right_of_text = field.evaluate(
        "el => el.getBoundingClientRect().right - parseFloat(getComputedStyle(el).paddingRight)")
    arrow = box(page.locator("#thread-select .icon-wrap, #thread-select svg").first)
    assert right_of_text <= arrow["x"] + 1, (right_of_text, arrow)

    # No floating "Conversation" label on top of the first message.
    first = box(page.locator("#chatbot .message").first)
    for label in page.locator("#chatbot label, #chatbot [data-testid='block-label']").all():
        if label.is_visible():
            other = box(label)
            overlap = not (other["y"] + other["height"] <= first["y"] or first["y"] + first["height"] <= other["y"])
            assert not overlap, (other, first)
    context.close()


def test_a_thumb_opens_the_feedback_comment(browser: Any, server: AppServer, app_db: str) -> None:
    context, page = sign_in(browser, server, "harper_lopez_1489", "demo")
    say(page, "What is the baggage policy?")
    like = page.locator("#chatbot button[aria-label='Dislike']").last
    expect(like).to_be_visible()
    comment_box = page.locator("#feedback-box")
    expect(comment_box).to_be_hidden()
    like.click()  # nothing typed first
    expect(comment_box).to_be_visible()
    expect(page.locator("#feedback-comment")).to_contain_text("not helpful")
    rows = db_rows(app_db, "SELECT id, rating, comment FROM feedback WHERE user_id = %s", "harper_lopez_1489")
    assert [(r["rating"], r["comment"]) for r in rows] == [(-1, "")]
    page.locator("#feedback-comment textarea").fill("I wanted the fee for a third bag")
    page.locator("#feedback-send").click()
    expect(comment_box).to_be_hidden()
    rows = db_rows(app_db, "SELECT rating, comment FROM feedback WHERE user_id = %s", "harper_lopez_1489")
    assert [(r["rating"], r["comment"]) for r in rows] == [(-1, "I wanted the fee for a third bag")]
    context.close()


def test_a_confirm_answered_in_another_tab_shows_a_notice_not_errors(
    browser: Any, server: AppServer, app_db: str
) -> None:
    context, first = sign_in(browser, server, "lei_rossi_3206", "demo")
    new_conversation(first)
    say(first, "Add 3 checked bags to reservation VAAOXJ")
    expect(first.locator("#confirm-box")).to_be_visible()
    second = context.new_page()  # the same customer, a second tab
    second.goto(server.url)
    expect(second.locator("#confirm-box")).to_be_visible()
    mark = len(server.log(chars=10**9))
    charges = len(db_rows(app_db, "SELECT 1 FROM payments_ledger WHERE reservation_id = 'VAAOXJ'"))

    first.locator("#confirm-btn").click()
    expect(first.locator("#confirm-box")).to_be_hidden()
    second.locator("#confirm-btn").click()  # stale: already answered in the first tab
    notice = second.locator("#chat-notice")
    expect(notice).to_contain_text("already answered")
    expect(second.locator("#confirm-box")).to_be_hidden()
    expect(second.locator("#chatbot")).to_contain_text("was charged")
    # Gradio marks every output of a failed event with an "Error" badge; there must be none.
    expect(second.get_by_text("Error", exact=True)).to_have_count(0)
    second.wait_for_timeout(200)
    second.screenshot(path=str(SHOTS / "stale-confirm.png"), full_page=True)
    log = server.log(chars=10**9)[mark:]
    assert "Traceback" not in log, log
    assert "refused: stale answer" in log, log
    ledger = db_rows(app_db, "SELECT amount_usd FROM payments_ledger WHERE reservation_id = 'VAAOXJ'")
    assert len(ledger) == charges + 1, ledger  # charged once, not twice
    context.close()


def test_reviewer_decision_clears_the_comment_and_shows_the_outcome(
    browser: Any, server: AppServer, app_db: str
) -> None:
    for customer in ("lei_rossi_3206", "mia_li_3668"):
        ctx, page = sign_in(browser, server, customer, "demo")
        new_conversation(page)
        say(page, "Please transfer me to a human agent")
        expect(page.locator("#review-notice")).to_be_visible()
        ctx.close()
    reviewer_ctx, reviewer = sign_in(browser, server, "sam", "review")
    case = reviewer.locator("#case-select input")
    expect(case).not_to_have_value("")
    details = reviewer.locator("#case-details")
    expect(details).to_contain_text("Hand the conversation to a human agent")  # plain words
    expect(details).to_contain_text("transfer_to_human_agents")  # and the raw call, for staff
    first_case = details.inner_text()
    comment = reviewer.locator("#case-comment textarea")
    comment.fill("We will call you back today.")
    reviewer.locator("#approve-btn").click()
    result = reviewer.locator("#decide-result")
    expect(result).to_contain_text("Approved")
    expect(result).to_contain_text("Pick the next case")
    # The comment is gone and no other case is preselected with it.
    expect(comment).to_have_value("")
    expect(case).to_have_value("")
    expect(details).to_contain_text("No case selected")
    expect(reviewer.locator("#approve-btn")).to_be_hidden()
    reviewer.wait_for_timeout(200)
    reviewer.screenshot(path=str(SHOTS / "inbox-decided.png"), full_page=True)
    # Picking the next case on purpose shows it, with an empty comment box.
    case.click()
    reviewer.get_by_role("option").first.click()
    expect(reviewer.locator("#approve-btn")).to_be_visible()
    expect(details).not_to_have_text(first_case)
    expect(comment).to_have_value("")

    # The audit payload wraps inside the table instead of running off the page.
    reviewer.get_by_role("tab", name="Audit").click()
    expect(reviewer.locator("#audit-status")).to_contain_text("Audit chain intact")
    table = box(reviewer.locator("#audit-table"))
    for cell in reviewer.locator("#audit-table tbody tr td").all()[:70]:
        right = box(cell)
        assert right["x"] + right["width"] <= table["x"] + table["width"] + 2, (right, table)
    assert reviewer.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert emoji_in(reviewer.locator("body").inner_text()) == []
    reviewer_ctx.close()
