"""The CEL type checker: it accepts what the runtime evaluates, and refuses what would fail or mislead.

Every accepted expression is also evaluated by the runtime on the neutral facts, so the checker
never refuses a condition the engine could run (a strict loader that rejects valid policies would
be worked around).
"""

from __future__ import annotations

import pytest

from graph.cel import Condition
from graph.cel_types import CelTypeError, Shape, check_condition, shape_of_schema, shape_of_value
from tools.airline.facts import default_facts
from tools.airline.schemas import AIRLINE_TOOLS

FACTS = default_facts()
ARGS = {"reservation_id": "ABC123", "cabin": "economy", "flights": [{"flight_number": "HAT001", "date": "2024-05-01"}],
        "payment_id": "credit_card_1"}
VARS = {
    "facts": shape_of_value(FACTS, "facts"),
    "args": shape_of_schema(AIRLINE_TOOLS["update_reservation_flights"].args_schema.model_json_schema(), "args"),
    "state": Shape("object", name="state", fields={"phase": Shape("string")}),
}

VALID = [
    "true",
    "!facts.reservation.exists || !facts.reservation.owned",
    "facts.quote.amount_usd + facts.window.charged_usd_24h >= 2000.0",
    "facts.quote.amount_usd > 100",  # int and double compare (the runtime allows it)
    "size(args.flights) > 1 && args.flights.all(f, f.flight_number.startsWith('HAT'))",
    "args.flights.exists(f, f.date == '2024-05-01')",
    "args.flights.map(f, f.flight_number).size() == 1",
    "args.flights.filter(f, f.flight_number != '').size() >= 0",
    "args.cabin in ['economy', 'business']",
    "'x' in facts.user.payment_methods",
    "has(facts.quote) && has(args.cabin)",
    "(facts.booking.passenger_count > 0 ? facts.booking.passenger_count : 1) < 5",
    "args.reservation_id.matches('^[A-Z0-9]{6}$') && args.reservation_id.contains('A')",
    "facts.user.reservation_ids.exists(r, r == args.reservation_id)",
    "-facts.quote.amount_usd < 0.0 && 1u < 2u && b'ab' != b'cd' && r'\\d' != '''x'''",
    "type(facts.quote.amount_usd) == double",
    "int(facts.quote.amount_usd) >= 0 && double(facts.booking.passenger_count) >= 0.0",
    "{'a': 1}['a'] == 1 && [1, 2][0] == 1",
    "state.phase == 'before'",
    "facts.input_risk.level != 'high'" if "input_risk" in FACTS else "true",
]

INVALID = [
    ("facts.reservation.ownd", "unknown field facts.reservation.ownd (did you mean 'owned'?)"),
    ("fact.user.exists", "unknown variable 'fact'"),
    ("lowerAscii(args.cabin) == 'x'", "unknown function lowerAscii()"),
    ("args.cabin.lowerAscii() == 'x'", "unknown method lowerAscii()"),
    ("facts.booking.passenger_count", "returns int, not a boolean"),
    ("facts.quote.amount_usd * 2 > 10.0", "double * int"),
    ("args.cabin == 1", "cannot compare string == int"),
    ("args.flights.exists(f, f.number == 'x')", "unknown field f.number (did you mean 'flight_number'?)"),
    ("args.flights.exists(f, f.date)", "predicate"),
    ("facts.reservation.exists && 1", "right operand of '&&' must be a boolean"),
    ("f.date == ''", "unknown variable 'f'"),
    ("args.cabin.size() > 'a'", "cannot compare int > string"),
]


@pytest.mark.parametrize("source", VALID)
def test_valid_conditions_pass_and_evaluate(source):
    check_condition(source, VARS)
    value = Condition.compile(source).evaluate({"facts": FACTS, "args": ARGS, "state": {"phase": "before"}})
    assert isinstance(value, bool)


@pytest.mark.parametrize(("source", "reason"), INVALID)
def test_invalid_conditions_are_refused_with_the_reason(source, reason):
    with pytest.raises(CelTypeError) as info:
        check_condition(source, VARS)
    assert reason.split(" (did")[0] in str(info.value), str(info.value)
