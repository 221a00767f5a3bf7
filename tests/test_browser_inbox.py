"""The reviewer inbox pages in headless Chromium, with the true count (issue 13).

More cases than one page: the summary says how many are pending and which of them the page
shows; Next and Previous page through them. Cases are inserted directly (no turns needed).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

import tests.test_browser as base
from tests.browser_server import AppServer
from tests.test_browser import expect, sign_in
from ui.app.common import INBOX_PAGE

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
app_db = base.app_db
server = base.server
browser = base.browser
server_log_on_failure = base.server_log_on_failure


def test_the_inbox_pages_through_more_cases_than_a_page(browser: Any, server: AppServer, app_db: str) -> None:
    total = INBOX_PAGE + 7
    payload = json.dumps({"action_requests": [{"name": "transfer_to_human_agents", "args": {},
                                               "description": "paging case"}]})
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO reviews (review_id, thread_id, interrupt_id, user_id, assignee, tool, escalation_id, phase,"
            " payload, timeout_action, due_at) SELECT 'page' || lpad(g::text, 4, '0'), 'pt-' || g, 'pi-' || g,"
            " 'lei_rossi_3206', 'supervisor', 'transfer_to_human_agents', 'handoff', 'before', %s::jsonb, 'reject',"
            " now() + make_interval(hours => 1 + g) FROM generate_series(1, %s) AS g",
            (payload, total))
    context, page = sign_in(browser, server, "sam", "review")
    summary = page.locator("#inbox-summary")
    expect(summary).to_contain_text(f"{total} pending case(s)")
    expect(summary).to_contain_text(f"showing 1–{INBOX_PAGE} of {total}")
    expect(page.locator("#inbox-table")).to_contain_text("page0001")
    page.locator("#inbox-next").click()
    expect(summary).to_contain_text(f"showing {INBOX_PAGE + 1}–{total} of {total}")
    expect(page.locator("#inbox-table")).to_contain_text(f"page{total:04d}")
    expect(page.locator("#inbox-table")).not_to_contain_text("page0001")
    expect(page.locator("#inbox-next")).to_be_disabled()
    page.locator("#inbox-prev").click()
    expect(summary).to_contain_text(f"showing 1–{INBOX_PAGE} of {total}")
    expect(page.locator("#inbox-table")).to_contain_text("page0001")
    context.close()
