"""A case decided elsewhere is a notice in the inbox, not a red error (issue 10, the inbox).

The reviewer's page holds a case that another reviewer (or the terminal, or the API) has just
decided. Pressing a decision then says who decided it, in the result box, and the handler
returns normally so the page clears the case and refreshes the list; nothing is decided twice.
Real service and database; the page's handler is called as Gradio calls it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from graph.service import AirlockApp
from tests.helpers import USER, audit_types, make_services
from ui.app import AirlockUI
from ui.auth import DEMO_ACCOUNTS_PATH, load_accounts

pytestmark = pytest.mark.postgres
REVIEWER = ["reviewer", "supervisor"]


@pytest.fixture
def app(database_url):
    services = make_services(database_url)
    yield AirlockApp(services=services)
    services.close()


def test_a_case_decided_elsewhere_is_a_notice_naming_who_decided(app, caplog):
    ui = AirlockUI(app=app, accounts=load_accounts(DEMO_ACCOUNTS_PATH))
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    (case,) = app.list_reviews(roles=REVIEWER)
    # Decided elsewhere (the terminal reviewer, another tab) while this page still shows it.
    app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER, action="reject",
                      message="Handled by phone.")
    decided_before = audit_types(app.services, thread).count("escalation.decided")

    shown = ui.decide_review(case["review_id"], "approve", "", "We will call you back.",
                             SimpleNamespace(username="sam"))  # no gr.Error raised
    assert shown.startswith(f"Case `{case['review_id']}` was already rejected by sam")
    assert "the list is refreshed" in shown
    assert audit_types(app.services, thread).count("escalation.decided") == decided_before
    assert app.services.reviews.get(case["review_id"])["status"] == "rejected"
    # Logged as one line, like the other expected refusals (no traceback).
    assert any("refused:" in r.getMessage() and r.exc_info is None for r in caplog.records)

    missing = ui.decide_review("0123456789abcdef", "approve", "", "", SimpleNamespace(username="sam"))
    assert missing.startswith("This case no longer exists")
