"""Domain rules that were missing (issue 7): refund review for every tool, connected itineraries."""

from __future__ import annotations

import pytest

from tests.helpers import ledger_rows, make_app, make_services, reservation_doc, summarise, tool_call

pytestmark = pytest.mark.postgres
REVIEWER = ["reviewer", "supervisor"]

# amelia_rossi_1297's 3-passenger business round trip: the same flights in economy refund
# USD 18,075 to her credit card (a cabin downgrade, not a cancellation).
DOWNGRADE_USER = "amelia_rossi_1297"
DOWNGRADE_RES = "F48YRY"
DOWNGRADE_CARD = "credit_card_4579924"


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def test_a_cabin_downgrade_refunding_over_the_threshold_goes_to_review(services):
    """A model that downgrades instead of cancelling still meets the large-refund review."""
    before = reservation_doc(services, DOWNGRADE_RES)
    flights = [{"flight_number": s["flight_number"], "date": s["date"]} for s in before["flights"]]
    call = tool_call(
        "update_reservation_flights",
        {"reservation_id": DOWNGRADE_RES, "cabin": "economy", "flights": flights,
         "payment_id": DOWNGRADE_CARD},
        "call_downgrade", content="Just a cabin change, no refund review needed.",
    )
    app, _ = make_app(services, [call, summarise])
    thread = app.new_thread(user_id=DOWNGRADE_USER)
    paused = app.send(thread_id=thread, user_id=DOWNGRADE_USER,
                      text=f"Please move reservation {DOWNGRADE_RES} to economy")
    # The supervisor sees it before the customer is even asked to confirm.
    assert [p.kind for p in paused.pending] == ["review"]
    reviews = app.list_reviews(roles=REVIEWER)
    assert [r["escalation_id"] for r in reviews] == ["large-refund"]
    assert "18075" in str(paused.pending[0].value).replace(",", "")
    assert ledger_rows(services, DOWNGRADE_RES) == []
    assert reservation_doc(services, DOWNGRADE_RES) == before
