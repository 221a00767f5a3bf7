"""Domain rules that were missing (issue 7): refund review for every tool, connected itineraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graph.cel import Condition
from graph.policy import PreToolGuardrail, load_policy
from tests.helpers import (
    CARD,
    RES,
    USER,
    ledger_rows,
    make_app,
    make_services,
    reservation_doc,
    summarise,
    tool_call,
    tool_payloads,
)
from tools.airline import POLICY_PATH
from tools.airline.backend import AirlineBackend
from tools.airline.facts import compute_facts

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
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


# lei_rossi_3206's VAAOXJ: economy, one way CLT -> BOS (HAT287, 09:00-11:00) -> MCO (HAT235,
# 23:00-02:30+1) on 2024-05-24, one passenger.
def _leg(number: str, day: str) -> dict[str, str]:
    return {"flight_number": number, "date": day}


@pytest.mark.parametrize(
    ("flights", "rule", "words"),
    [
        # ATL -> MCO after landing in BOS: same origin and destination, so nothing else catches it.
        ([_leg("HAT287", "2024-05-24"), _leg("HAT010", "2024-05-24")], "itinerary-disconnected",
         "HAT287 lands at BOS but HAT010 leaves from ATL"),
        # The connection a day before the first leg.
        ([_leg("HAT287", "2024-05-25"), _leg("HAT235", "2024-05-24")], "itinerary-order",
         "HAT235 on 2024-05-24 is before HAT287 on 2024-05-25"),
        # Same day, but the 04:00 connection leaves before the 11:00 arrival.
        ([_leg("HAT287", "2024-05-24"), _leg("HAT182", "2024-05-24")], "itinerary-order",
         "HAT182 leaves at 2024-05-24 04:00:00, before HAT287 lands at 2024-05-24 11:00:00"),
        # A date the flight does not fly.
        ([_leg("HAT287", "2024-06-30"), _leg("HAT235", "2024-06-30")], "flight-not-on-date",
         "There is no flight HAT287 on 2024-06-30"),
    ],
    ids=["disconnected", "dates-reversed", "connection-before-arrival", "not-flying-that-day"],
)
def test_a_flight_change_must_be_a_trip_a_passenger_can_fly(services, flights, rule, words):
    """The model proposes an itinerary with the right endpoints that cannot be flown."""
    call = tool_call(
        "update_reservation_flights",
        {"reservation_id": RES, "cabin": "economy", "flights": flights, "payment_id": CARD},
        "call_change", content="These flights are fine.",
    )
    app, _ = make_app(services, [call, summarise])
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text=f"Change the flights of {RES}")
    assert result.pending == []
    payload = tool_payloads(result.messages)[-1]
    assert (payload["status"], payload["rule"]) == ("denied", rule)
    assert words in payload["message"]
    assert ledger_rows(services, RES) == []


def test_a_flight_change_that_connects_in_order_reaches_the_gate(services):
    """The control: BOS -> MCO at 16:00 after landing at 11:00 is a valid change."""
    flights = [_leg("HAT287", "2024-05-24"), _leg("HAT145", "2024-05-24")]
    call = tool_call(
        "update_reservation_flights",
        {"reservation_id": RES, "cabin": "economy", "flights": flights, "payment_id": CARD},
        "call_change",
    )
    app, _ = make_app(services, [call, summarise])
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text=f"Change the flights of {RES}")
    assert [p.kind for p in result.pending] == ["confirm"]


# mia_li_3668 (gold) books JFK -> ATL (HAT136, 19:00-21:30) -> SEA (HAT039, 22:00-03:00+1) on
# 2024-05-20, then SEA -> SFO (HAT011, 13:00).
BOOKER = "mia_li_3668"
BOOKER_CARD = "credit_card_4421486"


def _booking(services, third_day: str) -> dict:
    args = {
        "user_id": BOOKER, "origin": "JFK", "destination": "SFO", "flight_type": "one_way",
        "cabin": "economy",
        "flights": [_leg("HAT136", "2024-05-20"), _leg("HAT039", "2024-05-20"),
                    _leg("HAT011", third_day)],
        "passengers": [{"first_name": "Mia", "last_name": "Li", "dob": "1990-04-05"}],
        "payment_methods": [{"payment_id": BOOKER_CARD, "amount": 1.0}],
        "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no",
    }
    # Pay exactly the quoted total, so only the itinerary can be wrong.
    quote = services.domain.facts("book_reservation", args, user_id=BOOKER, conversation={})["quote"]
    args["payment_methods"][0]["amount"] = quote["amount_usd"]
    return args


def test_a_booking_whose_connection_leaves_before_the_overnight_arrival_is_denied(services):
    """HAT039 lands at 03:00 the next day (+1): a 13:00 connection on the same date is impossible."""
    app, _ = make_app(services, [tool_call("book_reservation", _booking(services, "2024-05-20"),
                                           "call_book"), summarise])
    thread = app.new_thread(user_id=BOOKER)
    result = app.send(thread_id=thread, user_id=BOOKER, text="Book JFK to SFO for me")
    assert result.pending == []
    payload = tool_payloads(result.messages)[-1]
    assert (payload["status"], payload["rule"]) == ("denied", "itinerary-order")
    assert "before HAT039 lands at 2024-05-21 03:00:00" in payload["message"]
    assert ledger_rows(services) == []


def test_a_booking_connecting_after_the_overnight_arrival_reaches_the_gate(services):
    """The control: the 13:00 connection the day after the +1 arrival is bookable."""
    app, _ = make_app(services, [tool_call("book_reservation", _booking(services, "2024-05-21"),
                                           "call_book"), summarise])
    thread = app.new_thread(user_id=BOOKER)
    result = app.send(thread_id=thread, user_id=BOOKER, text="Book JFK to SFO for me")
    assert [p.kind for p in result.pending] == ["confirm"]


ITINERARY_RULES = ("flight-not-on-date", "itinerary-disconnected", "itinerary-order")
TAU2_TASKS = ROOT.parent / "shared" / "data" / "airline" / "tasks" / "tau2_tasks.json"


def _tau2_itinerary_actions() -> list[tuple[str, str, dict]]:
    tasks = json.loads(TAU2_TASKS.read_text())
    return [
        (str(task["id"]), action["name"], action["arguments"])
        for task in tasks
        for action in (task.get("evaluation_criteria") or {}).get("actions") or []
        if action["name"] in ("book_reservation", "update_reservation_flights")
    ]


def test_no_tau2_booking_or_flight_change_trips_the_itinerary_rules(pool):
    """Every expected book/update action of the τ² airline tasks passes the new rules (no false denial)."""
    backend = AirlineBackend(pool=pool)
    policy = load_policy(POLICY_PATH)
    actions = _tau2_itinerary_actions()
    assert len(actions) >= 30
    for task_id, tool, args in actions:
        if tool == "book_reservation":
            user_id = args["user_id"]
        else:
            doc = backend.fetch_reservation(args["reservation_id"])
            assert doc is not None
            user_id = doc["user_id"]
        facts = compute_facts(backend, tool, args, user_id=user_id, conversation={})
        section = facts["booking" if tool == "book_reservation" else "itinerary"]
        assert section["connected"] and section["times_ordered"], (task_id, section)
        checks = {c.id: c for c in policy.guardrail(tool, PreToolGuardrail).checks}
        assert set(ITINERARY_RULES) <= set(checks)
        variables = {"args": args, "facts": facts}
        fired = [r for r in ITINERARY_RULES if Condition.compile(checks[r].when).test(variables)]
        assert fired == [], (task_id, tool, fired)
