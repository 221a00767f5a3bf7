"""Facts for the airline guardrails, and the airline policy's CEL rules evaluated on them."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import cel
import pytest
import yaml

from graph.state import INPUT_RISK_KEY, input_risk_fact
from tools.airline import AIRLINE_TOOLS, POLICY_PATH, AirlineBackend, compute_facts
from tools.airline.loader import read_db

pytestmark = pytest.mark.postgres

ASKED = {"user_asked_compensation": True, "cancel_reason": "", "user_ids_mentioned": []}
QUIET = {"user_asked_compensation": False, "cancel_reason": "", "user_ids_mentioned": []}


@cache
def policy() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(POLICY_PATH.read_text("utf-8"))
    return data


@cache
def compiled(expr: str) -> Any:
    return cel.compile(expr)


def checks(tool: str) -> list[dict[str, Any]]:
    for guardrail in policy()["tools"].get(tool, []):
        if guardrail["type"] == "guardrail.pre-tool":
            return list(guardrail["checks"])
    return []


def fired(tool: str, args: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    """Return the ids of every pre-tool check whose condition holds (all are evaluated)."""
    out = []
    for check in checks(tool):
        value = compiled(check["when"]).execute({"args": args, "facts": facts})
        assert isinstance(value, bool), (check["id"], value)
        if value:
            out.append(check["id"])
    return out


def first(tool: str, args: dict[str, Any], facts: dict[str, Any]) -> str:
    """Return the id of the check that decides (the first that fires), or 'allow'."""
    hits = fired(tool, args, facts)
    return hits[0] if hits else "allow"


def no_none(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(no_none(v) for v in value.values())
    if isinstance(value, list):
        return all(no_none(v) for v in value)
    return isinstance(value, str | int | float | bool)


@pytest.fixture
def backend(pool: Any) -> AirlineBackend:
    return AirlineBackend(pool=pool)


def facts_for(backend: AirlineBackend, tool: str, args: dict[str, Any], user: str | None,
              conversation: dict[str, Any] | None = None) -> dict[str, Any]:
    facts = compute_facts(backend, tool, args, user_id=user, conversation=conversation or QUIET)
    facts[INPUT_RISK_KEY] = input_risk_fact(conversation or QUIET)  # added by the graph, not the domain
    assert no_none(facts)
    json.dumps(facts)
    return facts


def itinerary(res: dict[str, Any]) -> list[dict[str, str]]:
    return [{"flight_number": f["flight_number"], "date": f["date"]} for f in res["flights"]]


# --------------------------------------------------------------------------- the policy file


def test_policy_shape_and_cel_compiles() -> None:
    data = policy()
    assert data["version"] == 1
    writes = {n for n, s in AIRLINE_TOOLS.items() if s.write}
    assert writes <= set(data["tools"])
    assert set(data["tools"]) <= set(AIRLINE_TOOLS)
    for tool, chain in data["tools"].items():
        kinds = [g["type"] for g in chain]
        if tool in writes:
            assert kinds == ["guardrail.pre-tool", "guardrail.idempotency", "guardrail.confirm",
                             "guardrail.resilience"], tool
            confirm = chain[2]
            assert confirm["threshold"] == "true"
            assert "{facts.quote.amount_usd}" in confirm["message"] or tool == "send_certificate"
            fields = set(AIRLINE_TOOLS[tool].args_schema.model_fields)
            assert set(chain[1]["keyFields"]) <= fields, tool
        ids = [c["id"] for g in chain if g["type"] == "guardrail.pre-tool" for c in g["checks"]]
        assert len(ids) == len(set(ids)), tool
        for g in chain:
            for c in g.get("checks", []):
                assert c["action"] in {"deny", "escalate"} and c["message"]
                compiled(c["when"])
            if "threshold" in g:
                compiled(g["threshold"])
    for tool in ("get_user_details", "get_reservation_details"):
        assert checks(tool), tool


def test_policy_loads_with_the_graph_loader() -> None:
    import graph.policy as policy_mod

    loaded = policy_mod.load_policy(POLICY_PATH, known_tools=AIRLINE_TOOLS)
    assert set(loaded.tools) == set(policy()["tools"])


def sample_calls(res: dict[str, Any], user: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Plausible calls on one reservation, for every tool that has rules."""
    methods = list(user["payment_methods"])
    pay = next((m for m in methods if not m.startswith("certificate")), methods[0])
    rid = res["reservation_id"]
    return [
        ("get_user_details", {"user_id": user["user_id"]}),
        ("get_reservation_details", {"reservation_id": rid}),
        ("cancel_reservation", {"reservation_id": rid}),
        ("update_reservation_flights", {"reservation_id": rid, "cabin": "business",
                                        "flights": itinerary(res), "payment_id": pay}),
        ("update_reservation_flights", {"reservation_id": rid, "cabin": res["cabin"],
                                        "flights": itinerary(res)[:1], "payment_id": pay}),
        ("update_reservation_baggages", {"reservation_id": rid,
                                         "total_baggages": res["total_baggages"] + 2,
                                         "nonfree_baggages": res["nonfree_baggages"] + 1,
                                         "payment_id": pay}),
        ("update_reservation_passengers", {"reservation_id": rid,
                                           "passengers": res["passengers"]}),
        ("send_certificate", {"user_id": user["user_id"], "amount": 100.0}),
        ("book_reservation", {
            "user_id": user["user_id"], "origin": res["origin"],
            "destination": res["destination"], "flight_type": res["flight_type"],
            "cabin": res["cabin"], "flights": itinerary(res), "passengers": res["passengers"],
            "payment_methods": [{"payment_id": m, "amount": 100.0} for m in methods[:3]],
            "total_baggages": 1, "nonfree_baggages": 0, "insurance": "yes"}),
    ]


def escalations_before(tool: str) -> list[dict[str, Any]]:
    return [e for e in policy().get("escalations") or []
            if e.get("phase", "after") == "before" and e.get("tool", "*") in ("*", tool)]


def test_every_rule_evaluates_to_bool_on_real_facts(backend: AirlineBackend) -> None:
    data = read_db()
    reservations = sorted(data["reservations"])[::50]  # 40 real reservations
    decisions: dict[str, set[str]] = {}
    for rid in reservations:
        res = data["reservations"][rid]
        owner = data["users"][res["user_id"]]
        for tool, args in sample_calls(res, owner):
            AIRLINE_TOOLS[tool].args_schema.model_validate(args)
            for user, conv in ((owner["user_id"], ASKED), ("someone_else_1", QUIET), (None, {})):
                facts = facts_for(backend, tool, args, user, conv)
                decisions.setdefault(tool, set()).add(first(tool, args, facts))
                for esc in escalations_before(tool):
                    value = compiled(esc["when"]).execute({"args": args, "facts": facts})
                    assert isinstance(value, bool), (esc["id"], value)
                if user != owner["user_id"] and tool != "book_reservation":
                    assert first(tool, args, facts) in {
                        "reservation-ownership", "user-mismatch", "not-authenticated"}, tool
    # The sample is varied enough that several different rules decide.
    assert {"allow", "cancellation-window", "reservation-ownership"} <= decisions[
        "cancel_reservation"]
    assert "allow" in decisions["get_reservation_details"]


def test_facts_contract_fields(backend: AirlineBackend) -> None:
    res = backend.fetch_reservation("4WQ150")
    assert res is not None
    facts = facts_for(backend, "update_reservation_flights", {
        "reservation_id": "4WQ150", "cabin": "economy", "flights": itinerary(res),
        "payment_id": "gift_card_3576581"}, res["user_id"])
    assert {"user_id", "exists", "membership", "payment_methods"} <= set(facts["user"])
    assert {"args_user_matches", "conversation", "quote", "payment", "itinerary", "booking",
            "bags", "passengers", "cancellation", "certificate"} <= set(facts)
    assert {"exists", "owned", "cabin", "insurance", "flight_type", "origin", "destination",
            "passenger_count", "status", "created_within_24h", "any_flown", "any_cancelled",
            "any_delayed", "total_baggages", "nonfree_baggages"} <= set(facts["reservation"])
    assert {"id", "exists_in_profile", "source", "balance"} <= set(facts["payment"])
    assert {"amount_usd", "direction", "currency"} <= set(facts["quote"])
    assert facts["quote"]["currency"] == "USD" and facts["quote"]["amount_usd"] >= 0
    assert isinstance(facts["quote"]["amount_usd"], float)
    assert {"same_endpoints", "same_trip_type", "segments_unchanged", "cabin_changed",
            "all_available"} <= set(facts["itinerary"])
    assert {"passenger_count", "certificate_count", "credit_card_count", "gift_card_count",
            "payments_total_matches", "all_payments_in_profile"} <= set(facts["booking"])
    assert {"expected_nonfree", "only_adds"} <= set(facts["bags"])
    assert {"eligible", "max_amount_cancelled", "max_amount_delayed"} <= set(
        facts["certificate"])
    # A business -> economy downgrade on the same flights is a refund, quoted by pricing code.
    assert facts["quote"]["direction"] == "refund"
    assert facts["reservation"]["status"] == "active"


# --------------------------------------------------------------------------- ownership


def test_ownership_and_authentication_facts(backend: AirlineBackend) -> None:
    args = {"reservation_id": "VAAOXJ"}
    mine = facts_for(backend, "get_reservation_details", args, "lei_rossi_3206")
    assert mine["reservation"]["exists"] and mine["reservation"]["owned"]
    assert mine["reservation"]["cabin"] == "economy"
    assert first("get_reservation_details", args, mine) == "allow"

    theirs = facts_for(backend, "get_reservation_details", args, "mia_li_3668")
    assert theirs["reservation"]["exists"] and not theirs["reservation"]["owned"]
    # Nothing about another customer's booking leaks into facts.
    assert theirs["reservation"]["cabin"] == "" and theirs["reservation"]["segments"] == []
    assert first("get_reservation_details", args, theirs) == "reservation-ownership"

    missing = facts_for(backend, "cancel_reservation", {"reservation_id": "NOPE00"}, "lei_rossi_3206")
    assert not missing["reservation"]["exists"]
    assert first("cancel_reservation", {"reservation_id": "NOPE00"}, missing) == (
        "reservation-ownership")

    anon = facts_for(backend, "get_user_details", {"user_id": "lei_rossi_3206"}, None)
    assert not anon["authenticated"] and not anon["user"]["exists"]
    assert not anon["args_user_matches"]
    forged = {"user_id": "lei_rossi_3206", "amount": 100.0}
    other = facts_for(backend, "send_certificate", forged, "mia_li_3668", ASKED)
    assert other["args_user_id"] == "lei_rossi_3206" and not other["args_user_matches"]
    assert first("send_certificate", forged, other) == "user-mismatch"
    ghost = facts_for(backend, "send_certificate", {"user_id": "ghost_1", "amount": 1.0},
                      "ghost_1", ASKED)
    assert first("send_certificate", {"user_id": "ghost_1", "amount": 1.0}, ghost) == (
        "not-authenticated")

    # Malformed or forged arguments never raise; they only mark the args invalid.
    odd = facts_for(backend, "update_reservation_flights",
                    {"reservation_id": 42, "flights": "HAT001", "insurance": "yes"},
                    "lei_rossi_3206")
    assert not odd["args_valid"] and "insurance" in odd["args_error"]
    assert not odd["reservation"]["exists"]
    assert not facts_for(backend, "no_such_tool", {}, "lei_rossi_3206")["known_tool"]


def test_user_facts_and_payment_facts(backend: AirlineBackend) -> None:
    args = {"reservation_id": "4WQ150", "total_baggages": 5, "nonfree_baggages": 0,
            "payment_id": "gift_card_3576581"}
    facts = facts_for(backend, "update_reservation_baggages", args, "chen_jackson_3290")
    assert facts["user"]["membership"] == "silver"
    assert facts["user"]["payment_methods"]["gift_card_3576581"]["source"] == "gift_card"
    assert facts["payment"]["exists_in_profile"] and facts["payment"]["usable_for_change"]
    assert facts["payment"]["balance"] == facts["user"]["payment_methods"][
        "gift_card_3576581"]["amount"]
    cert = facts_for(backend, "update_reservation_baggages",
                     {**args, "payment_id": "certificate_1"}, "chen_jackson_3290")
    assert not cert["payment"]["exists_in_profile"]
    assert first("update_reservation_baggages", {**args, "payment_id": "certificate_1"},
                 cert) == "payment-method"


# --------------------------------------------------------------------------- basic economy


def test_basic_economy_flights_are_frozen_but_cabin_can_change(backend: AirlineBackend) -> None:
    res = backend.fetch_reservation("T1QOBS")  # basic economy, JFK -> MIA on HAT060
    assert res is not None and res["cabin"] == "basic_economy"
    user = res["user_id"]
    other = {"reservation_id": "T1QOBS", "cabin": "basic_economy",
             "flights": [{"flight_number": "HAT014", "date": "2024-05-26"}],
             "payment_id": "credit_card_9875103"}
    facts = facts_for(backend, "update_reservation_flights", other, user)
    assert not facts["itinerary"]["segments_unchanged"]
    assert facts["itinerary"]["same_endpoints"]  # same route, still frozen
    assert first("update_reservation_flights", other, facts) == "basic-economy-frozen"

    upgrade = {**other, "cabin": "economy", "flights": itinerary(res)}
    facts = facts_for(backend, "update_reservation_flights", upgrade, user)
    assert facts["itinerary"]["segments_unchanged"] and facts["itinerary"]["cabin_changed"]
    assert first("update_reservation_flights", upgrade, facts) == "allow"
    assert facts["quote"]["direction"] == "charge" and facts["quote"]["amount_usd"] > 0

    # The quote is what the backend then charges.
    result = backend.call("update_reservation_flights", upgrade)
    assert result["amount_usd"] == facts["quote"]["amount_usd"]


# --------------------------------------------------------------------------- flown segments


def test_flown_segments(backend: AirlineBackend) -> None:
    # DFJCPK: JFK-DTW-MSP flown on 2024-05-11, MSP-DTW-JFK on 2024-05-19 still to fly.
    res = backend.fetch_reservation("DFJCPK")
    assert res is not None
    user = res["user_id"]
    cancel = {"reservation_id": "DFJCPK"}
    facts = facts_for(backend, "cancel_reservation", cancel, user)
    assert facts["reservation"]["any_flown"] and facts["reservation"]["flown_count"] == 2
    assert first("cancel_reservation", cancel, facts) == "flown-needs-human"

    cabin = {"reservation_id": "DFJCPK", "cabin": "business", "flights": itinerary(res),
             "payment_id": "credit_card_3562064"}
    facts = facts_for(backend, "update_reservation_flights", cabin, user)
    assert "cabin-change-after-flown" in fired("update_reservation_flights", cabin, facts)

    later = itinerary(res)[:2] + [{"flight_number": "HAT248", "date": "2024-05-20"},
                                  {"flight_number": "HAT240", "date": "2024-05-20"}]
    keep = {**cabin, "cabin": "economy", "flights": later}
    facts = facts_for(backend, "update_reservation_flights", keep, user)
    assert facts["itinerary"]["same_endpoints"] and facts["itinerary"]["same_trip_type"]
    assert not facts["itinerary"]["flown_segments_changed"]
    assert facts["itinerary"]["kept_count"] == 2
    assert first("update_reservation_flights", keep, facts) == "allow"

    drop = {**keep, "flights": later[2:]}
    facts = facts_for(backend, "update_reservation_flights", drop, user)
    assert facts["itinerary"]["flown_segments_changed"]
    assert not facts["itinerary"]["same_endpoints"]
    assert first("update_reservation_flights", drop, facts) == "flown-segment-changed"

    other_route = {**keep, "flights": itinerary(res)[:2] + [
        {"flight_number": "HAT248", "date": "2024-05-20"}]}
    facts = facts_for(backend, "update_reservation_flights", other_route, user)
    assert first("update_reservation_flights", other_route, facts) == "same-endpoints"


# --------------------------------------------------------------------------- cancellation window


@pytest.mark.parametrize(("reservation", "reason", "eligible", "why"), [
    ("JEPRZB", "", True, "within_24h"),            # economy, booked 2024-05-14T23:57
    ("VYAAQN", "", True, "business"),              # business, booked yesterday
    ("9FNHDR", "", True, "airline_cancelled"),     # a segment cancelled by the airline
    ("VAAOXJ", "change_of_plan", False, ""),       # old economy, no insurance
    ("59XX6W", "health", True, "reason_covered"),  # insured economy, covered reason
    ("59XX6W", "change_of_plan", False, ""),       # insured, reason not covered
    ("59XX6W", "", False, ""),                     # insured, no reason stated
])
def test_cancellation_window(
    backend: AirlineBackend, reservation: str, reason: str, eligible: bool, why: str
) -> None:
    res = backend.fetch_reservation(reservation)
    assert res is not None
    args = {"reservation_id": reservation}
    conv = {**QUIET, "cancel_reason": reason}
    facts = facts_for(backend, "cancel_reservation", args, res["user_id"], conv)
    assert facts["cancellation"]["eligible"] is eligible
    if why:
        assert facts["cancellation"][why] is True
    assert not facts["reservation"]["any_flown"]
    assert first("cancel_reservation", args, facts) == ("allow" if eligible
                                                         else "cancellation-window")
    assert facts["quote"]["direction"] == "refund"
    assert facts["quote"]["amount_usd"] == sum(p["amount"] for p in res["payment_history"])


def test_cancelled_reservation_is_not_cancelled_twice(backend: AirlineBackend) -> None:
    res = backend.fetch_reservation("JEPRZB")
    assert res is not None
    backend.cancel_reservation(reservation_id="JEPRZB")
    facts = facts_for(backend, "cancel_reservation", {"reservation_id": "JEPRZB"}, res["user_id"])
    assert facts["reservation"]["status"] == "cancelled"
    assert first("cancel_reservation", {"reservation_id": "JEPRZB"}, facts) == "already-cancelled"


# --------------------------------------------------------------------------- compensation


def test_compensation_for_a_cancelled_flight(backend: AirlineBackend) -> None:
    user = "amelia_khan_8728"  # gold; 9FNHDR (1 passenger) has a cancelled segment
    ok = {"user_id": user, "amount": 100.0}
    facts = facts_for(backend, "send_certificate", ok, user, ASKED)
    cert = facts["certificate"]
    assert cert["eligible"] and cert["member_eligible"]
    assert cert["max_amount_cancelled"] == 100.0 and cert["allowed_amounts"] == [100.0]
    assert "9FNHDR" in cert["qualifying_reservations"]
    assert first("send_certificate", ok, facts) == "allow"

    greedy = {"user_id": user, "amount": 400.0}
    assert first("send_certificate", greedy, facts_for(
        backend, "send_certificate", greedy, user, ASKED)) == "compensation-amount"
    # Never proactively: the user must have asked.
    assert first("send_certificate", ok, facts_for(
        backend, "send_certificate", ok, user, QUIET)) == "compensation-not-requested"

    backend.call("send_certificate", ok)
    again = facts_for(backend, "send_certificate", ok, user, ASKED)
    assert again["certificate"]["issued_count"] == 1
    assert first("send_certificate", ok, again) == "compensation-repeat"


def test_no_compensation_for_regular_members_without_insurance(backend: AirlineBackend) -> None:
    user = "isabella_davis_2143"  # regular; 521ARH (economy, no insurance) was cancelled
    args = {"user_id": user, "amount": 100.0}
    facts = facts_for(backend, "send_certificate", args, user, ASKED)
    assert not facts["certificate"]["member_eligible"]
    assert not facts["certificate"]["eligible"] and facts["certificate"]["allowed_amounts"] == []
    assert first("send_certificate", args, facts) == "compensation-not-eligible"


def test_delay_compensation_needs_a_change_or_cancellation(backend: AirlineBackend) -> None:
    # LWTEDF (silver, 1 passenger): HAT002 on 2024-05-15 is delayed.
    user = "liam_ito_4473"
    args = {"user_id": user, "amount": 50.0}
    before = facts_for(backend, "send_certificate", args, user, ASKED)
    assert not before["certificate"]["eligible"]
    assert first("send_certificate", args, before) == "compensation-not-eligible"

    res = backend.fetch_reservation("LWTEDF")
    assert res is not None
    backend.update_reservation_flights(
        reservation_id="LWTEDF", cabin="economy",
        flights=[{"flight_number": "HAT002", "date": "2024-05-16"}],
        payment_id=res["payment_history"][0]["payment_id"])
    after = facts_for(backend, "send_certificate", args, user, ASKED)
    # The delayed segment is gone from the itinerary but stays in the reservation's history.
    assert after["certificate"]["allowed_amounts"] == [50.0]
    assert after["certificate"]["max_amount_delayed"] == 50.0
    assert first("send_certificate", args, after) == "allow"
    assert first("send_certificate", {**args, "amount": 100.0}, facts_for(
        backend, "send_certificate", {**args, "amount": 100.0}, user, ASKED)) == (
        "compensation-amount")


def test_delay_compensation_after_cancellation_scales_with_passengers(
    backend: AirlineBackend,
) -> None:
    user = "amelia_nguyen_7778"  # silver; 3I818F (3 passengers) has a delayed segment
    backend.cancel_reservation(reservation_id="3I818F")
    facts = facts_for(backend, "send_certificate", {"user_id": user, "amount": 150.0}, user,
                      ASKED)
    assert facts["certificate"]["allowed_amounts"] == [150.0]
    assert facts["certificate"]["amount_allowed"]


# --------------------------------------------------------------------------- bags


def test_bag_facts(backend: AirlineBackend) -> None:
    # YAX4DR: gold, economy, 2 passengers -> 3 free bags each.
    base = {"reservation_id": "YAX4DR", "payment_id": "credit_card_4938634"}
    res = backend.fetch_reservation("YAX4DR")
    assert res is not None
    user = res["user_id"]
    ok = {**base, "total_baggages": 8, "nonfree_baggages": 2}
    facts = facts_for(backend, "update_reservation_baggages", ok, user)
    assert facts["bags"]["free_allowance"] == 6 and facts["bags"]["expected_nonfree"] == 2
    assert facts["bags"]["nonfree_matches"] and facts["bags"]["only_adds"]
    assert (facts["quote"]["amount_usd"], facts["quote"]["direction"]) == (100.0, "charge")
    assert first("update_reservation_baggages", ok, facts) == "allow"

    dodge = {**base, "total_baggages": 8, "nonfree_baggages": 0}
    assert first("update_reservation_baggages", dodge, facts_for(
        backend, "update_reservation_baggages", dodge, user)) == "bag-allowance"
    overcharge = {**base, "total_baggages": 2, "nonfree_baggages": 2}
    assert first("update_reservation_baggages", overcharge, facts_for(
        backend, "update_reservation_baggages", overcharge, user)) == "bag-allowance"

    result = backend.call("update_reservation_baggages", ok)
    assert result["amount_usd"] == facts["quote"]["amount_usd"]
    remove = {**base, "total_baggages": 7, "nonfree_baggages": 1}
    facts = facts_for(backend, "update_reservation_baggages", remove, user)
    assert not facts["bags"]["only_adds"]
    assert first("update_reservation_baggages", remove, facts) == "bags-only-add"


def test_passenger_count_is_fixed(backend: AirlineBackend) -> None:
    res = backend.fetch_reservation("4WQ150")
    assert res is not None
    fewer = {"reservation_id": "4WQ150", "passengers": res["passengers"][:2]}
    facts = facts_for(backend, "update_reservation_passengers", fewer, res["user_id"])
    assert facts["passengers"] == {"current_count": 3, "new_count": 2, "count_matches": False}
    assert first("update_reservation_passengers", fewer, facts) == "passenger-count-fixed"
    same = {"reservation_id": "4WQ150", "passengers": res["passengers"]}
    assert first("update_reservation_passengers", same, facts_for(
        backend, "update_reservation_passengers", same, res["user_id"])) == "allow"


# --------------------------------------------------------------------------- booking


def task14_booking() -> dict[str, Any]:
    """τ² task 14: a round trip JFK -> SFO in business for three, paid with four methods."""
    return {
        "user_id": "mohamed_silva_9265", "origin": "JFK", "destination": "SFO",
        "flight_type": "round_trip", "cabin": "business",
        "flights": [{"flight_number": "HAT023", "date": "2024-05-26"},
                    {"flight_number": "HAT204", "date": "2024-05-28"},
                    {"flight_number": "HAT100", "date": "2024-05-28"}],
        "passengers": [{"first_name": "Mohamed", "last_name": "Silva", "dob": "1960-11-26"},
                       {"first_name": "Raj", "last_name": "Sanchez", "dob": "1986-09-12"},
                       {"first_name": "Liam", "last_name": "Wilson", "dob": "1980-03-27"}],
        "payment_methods": [{"payment_id": "certificate_3765853", "amount": 500},
                            {"payment_id": "gift_card_8020792", "amount": 198},
                            {"payment_id": "gift_card_6136092", "amount": 129},
                            {"payment_id": "credit_card_2198526", "amount": 1786}],
        "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no",
    }


def test_booking_facts(backend: AirlineBackend) -> None:
    args = task14_booking()
    user = args["user_id"]
    facts = facts_for(backend, "book_reservation", args, user)
    booking = facts["booking"]
    assert booking["passenger_count"] == 3
    assert (booking["certificate_count"], booking["gift_card_count"],
            booking["credit_card_count"]) == (1, 2, 1)
    assert booking["all_payments_in_profile"] and booking["balances_sufficient"]
    assert booking["itinerary_matches"] and booking["trip_type"] == "round_trip"
    assert booking["all_available"] and booking["nonfree_matches"]
    assert facts["quote"]["amount_usd"] == 2613.0 and booking["payments_total_matches"]
    assert first("book_reservation", args, facts) == "allow"
    result = backend.call("book_reservation", args)
    assert result["amount_usd"] == facts["quote"]["amount_usd"]


@pytest.mark.parametrize(("change", "rule"), [
    ({"passengers": task14_booking()["passengers"] * 2}, "passenger-limit"),
    ({"payment_methods": [{"payment_id": "credit_card_2198526", "amount": 2000},
                          {"payment_id": "credit_card_2198526", "amount": 613}]}, "payment-mix"),
    ({"payment_methods": [{"payment_id": "credit_card_0000000", "amount": 2613}]},
     "payment-not-in-profile"),
    ({"payment_methods": [{"payment_id": "credit_card_2198526", "amount": 2612}]},
     "payment-total"),
    ({"destination": "LAX"}, "itinerary-mismatch"),
    ({"flight_type": "one_way"}, "itinerary-mismatch"),
    ({"total_baggages": 20, "nonfree_baggages": 0,
      "payment_methods": [{"payment_id": "credit_card_2198526", "amount": 2613}]},
     "bag-allowance"),
    ({"flights": [{"flight_number": "HAT023", "date": "2024-05-01"}]}, "flights-unavailable"),
    ({"user_id": "mia_li_3668"}, "user-mismatch"),
])
def test_booking_rules(backend: AirlineBackend, change: dict[str, Any], rule: str) -> None:
    args = {**task14_booking(), **change}
    facts = facts_for(backend, "book_reservation", args, "mohamed_silva_9265")
    assert first("book_reservation", args, facts) == rule


def test_confirm_messages_render_amounts(backend: AirlineBackend) -> None:
    import graph.cel as graph_cel

    chain = {g["type"]: g for g in policy()["tools"]["update_reservation_baggages"]}
    args = {"reservation_id": "YAX4DR", "payment_id": "credit_card_4938634",
            "total_baggages": 9, "nonfree_baggages": 3}
    res = backend.fetch_reservation("YAX4DR")
    assert res is not None
    facts = facts_for(backend, "update_reservation_baggages", args, res["user_id"])
    text = graph_cel.render_template(chain["guardrail.confirm"]["message"],
                                     {"args": args, "facts": facts})
    assert "USD 150.00, charged to Visa ending 9990" in text and "?" in text[-1]
    assert "credit_card_4938634" not in text  # the customer reads the card, not its id
