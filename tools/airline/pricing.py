"""Prices, fees and itinerary rules shared by the backend (which charges) and facts (which quote).

Everything here is a pure function of database documents, so the amount a guardrail shows the
customer is, by construction, the amount the backend charges. Money is :class:`~decimal.Decimal`
rounded to cents; JSON output uses :func:`as_number`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from tools.airline.errors import ToolError

__all__ = [
    "BAG_FEE_USD",
    "CABINS",
    "FLOWN_STATUSES",
    "FREE_BAGS",
    "INSURANCE_USD",
    "Direction",
    "FlightRef",
    "Quote",
    "as_number",
    "cancellation_entries",
    "expected_nonfree",
    "flight_refs",
    "free_bags_per_passenger",
    "is_flown",
    "itinerary_shape",
    "money",
    "new_segment",
    "next_day",
    "quote_baggage",
    "quote_booking",
    "quote_cancellation",
    "quote_flight_change",
    "segment_status",
    "trip_type_of",
]

Direction = Literal["charge", "refund", "none"]

CABINS: tuple[str, ...] = ("basic_economy", "economy", "business")
CENT = Decimal("0.01")
INSURANCE_USD = Decimal(30)
BAG_FEE_USD = Decimal(50)
# Free checked bags per passenger, policy.md "Checked bag allowance".
FREE_BAGS: Mapping[str, Mapping[str, int]] = {
    "regular": {"basic_economy": 0, "economy": 1, "business": 2},
    "silver": {"basic_economy": 1, "economy": 2, "business": 3},
    "gold": {"basic_economy": 2, "economy": 3, "business": 4},
}
FLOWN_STATUSES = frozenset({"landed", "flying"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlightRef:
    """One requested flight segment: a flight number on a date (``YYYY-MM-DD``)."""

    flight_number: str
    date: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """A signed price: positive means the customer pays, negative means a refund.

    Attributes:
        amount: Signed amount in USD, rounded to cents.
        segments: The priced reservation segments (flight changes and bookings only).
        entries: Signed ``(payment_id, amount)`` pairs that would be appended to the
            payment history (cancellations only).
    """

    amount: Decimal
    segments: tuple[dict[str, Any], ...] = ()
    entries: tuple[tuple[str, Decimal], ...] = field(default=())

    @property
    def direction(self) -> Direction:
        """Return ``charge``, ``refund`` or ``none``."""
        if self.amount > 0:
            return "charge"
        if self.amount < 0:
            return "refund"
        return "none"

    @property
    def amount_usd(self) -> float:
        """Return the unsigned amount as a float (what a customer is told)."""
        return float(abs(self.amount))


def money(value: Any) -> Decimal:
    """Return ``value`` as a Decimal rounded to cents.

    Raises:
        ToolError: If the value is not a finite number.
    """
    if isinstance(value, bool):
        raise ToolError(f"Invalid amount: {value!r}")
    try:
        result = Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError) as exc:
        raise ToolError(f"Invalid amount: {value!r}") from exc
    if not result.is_finite():
        raise ToolError(f"Invalid amount: {value!r}")
    return result


def as_number(value: Decimal) -> int | float:
    """Return an int when the amount is whole (as τ² stores prices), else a float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def free_bags_per_passenger(membership: str, cabin: str) -> int:
    """Return the free checked bags per passenger; 0 for an unknown membership or cabin."""
    return FREE_BAGS.get(membership, {}).get(cabin, 0)


def expected_nonfree(
    *, total_baggages: int, passenger_count: int, membership: str, cabin: str
) -> int:
    """Return how many of ``total_baggages`` are paid bags under the allowance table."""
    free = passenger_count * free_bags_per_passenger(membership, cabin)
    return max(0, total_baggages - free)


def segment_status(flights: Mapping[str, Mapping[str, Any]], number: str, day: str) -> str:
    """Return the status of flight ``number`` on ``day``, or ``""`` if there is no such flight."""
    doc = flights.get(number)
    if not doc:
        return ""
    instance = doc.get("dates", {}).get(day)
    if not instance:
        return ""
    return str(instance.get("status", ""))


def is_flown(status: str, day: str, today: date) -> bool:
    """Return whether a segment counts as flown.

    A segment is flown when it is ``landed`` or ``flying``, or when its date is before today
    and the airline did not cancel it (a cancelled flight never took anyone anywhere).
    """
    if status in FLOWN_STATUSES:
        return True
    if status == "cancelled":
        return False
    try:
        return date.fromisoformat(day) < today
    except ValueError:
        return False


def trip_type_of(segments: Sequence[Mapping[str, Any]]) -> str:
    """Return ``round_trip`` if the segments end where they start, else ``one_way``."""
    if not segments:
        return ""
    if segments[-1].get("destination") == segments[0].get("origin"):
        return "round_trip"
    return "one_way"


def itinerary_shape(
    segments: Sequence[Mapping[str, Any]], *, destination_hint: str = ""
) -> tuple[str, str, str]:
    """Return ``(origin, destination, trip_type)`` derived from the segments themselves.

    For a round trip the destination is the turnaround airport: ``destination_hint`` (the
    reservation's field) when the itinerary passes through it, else the destination of the
    middle segment. Some τ-bench reservations carry a ``destination`` equal to their origin,
    so the record's own fields cannot be trusted blindly.
    """
    if not segments:
        return "", "", ""
    origin = str(segments[0].get("origin", ""))
    trip = trip_type_of(segments)
    if trip == "one_way":
        return origin, str(segments[-1].get("destination", "")), trip
    stops = [str(s.get("destination", "")) for s in segments]
    if destination_hint and destination_hint != origin and destination_hint in stops:
        return origin, destination_hint, trip
    return origin, stops[max(0, len(stops) // 2 - 1)], trip


def _instance(flights: Mapping[str, Mapping[str, Any]], ref: FlightRef) -> Mapping[str, Any]:
    doc = flights.get(ref.flight_number)
    if doc is None:
        raise ToolError(f"Flight {ref.flight_number} not found")
    instance = doc.get("dates", {}).get(ref.date)
    if instance is None:
        raise ToolError(f"Flight {ref.flight_number} not found on date {ref.date}")
    return instance


def _distinct(refs: Sequence[FlightRef]) -> None:
    # The same flight twice would be priced twice and take its seats twice.
    seen: set[FlightRef] = set()
    for ref in refs:
        if ref in seen:
            raise ToolError(f"Flight {ref.flight_number} on {ref.date} is listed more than once")
        seen.add(ref)


def new_segment(
    flights: Mapping[str, Mapping[str, Any]], ref: FlightRef, *, cabin: str, passengers: int
) -> dict[str, Any]:
    """Price one segment at today's fare, checking it is bookable for ``passengers`` seats.

    Raises:
        ToolError: If the flight or date is unknown, not ``available``, or short of seats.
    """
    instance = _instance(flights, ref)
    if instance.get("status") != "available":
        raise ToolError(f"Flight {ref.flight_number} not available on date {ref.date}")
    if cabin not in CABINS:
        raise ToolError(f"Invalid cabin: {cabin}")
    if int(instance.get("available_seats", {}).get(cabin, 0)) < passengers:
        raise ToolError(f"Not enough seats on flight {ref.flight_number}")
    doc = flights[ref.flight_number]
    return {
        "origin": doc["origin"],
        "destination": doc["destination"],
        "flight_number": ref.flight_number,
        "date": ref.date,
        "price": instance["prices"][cabin],
    }


def quote_booking(
    *,
    flights: Mapping[str, Mapping[str, Any]],
    refs: Sequence[FlightRef],
    cabin: str,
    passenger_count: int,
    insurance: str,
    nonfree_baggages: int,
) -> Quote:
    """Price a new reservation: fares × passengers, + USD 30 each for insurance, + USD 50 a paid bag.

    Raises:
        ToolError: If a flight is not bookable (see :func:`new_segment`) or listed twice.
    """
    _distinct(refs)
    segments = tuple(
        new_segment(flights, ref, cabin=cabin, passengers=passenger_count) for ref in refs
    )
    total = sum((money(s["price"]) * passenger_count for s in segments), Decimal(0))
    if insurance == "yes":
        total += INSURANCE_USD * passenger_count
    total += BAG_FEE_USD * max(0, nonfree_baggages)
    return Quote(amount=total.quantize(CENT), segments=segments)


def quote_flight_change(
    *,
    reservation: Mapping[str, Any],
    flights: Mapping[str, Mapping[str, Any]],
    refs: Sequence[FlightRef],
    cabin: str,
) -> Quote:
    """Price a new itinerary against the old one (τ² rules).

    A segment with the same flight number and date keeps its original price when the cabin is
    unchanged; every other segment must be bookable and is priced at today's fare. The amount
    is (new total − old total) × passengers.

    Raises:
        ToolError: If a new segment is not bookable, or a segment is listed twice.
    """
    _distinct(refs)
    passengers = len(reservation.get("passengers", []))
    old = reservation.get("flights", [])
    same_cabin = cabin == reservation.get("cabin")
    segments: list[dict[str, Any]] = []
    for ref in refs:
        kept = next(
            (
                s
                for s in old
                if same_cabin and s.get("flight_number") == ref.flight_number
                and s.get("date") == ref.date
            ),
            None,
        )
        if kept is not None:
            segments.append(dict(kept))
        else:
            segments.append(new_segment(flights, ref, cabin=cabin, passengers=passengers))
    new_total = sum((money(s["price"]) for s in segments), Decimal(0))
    old_total = sum((money(s.get("price", 0)) for s in old), Decimal(0))
    return Quote(amount=((new_total - old_total) * passengers).quantize(CENT),
                 segments=tuple(segments))


def quote_baggage(*, reservation: Mapping[str, Any], nonfree_baggages: int) -> Quote:
    """Price a bag update: USD 50 for each paid bag over the reservation's current paid bags."""
    current = int(reservation.get("nonfree_baggages", 0))
    return Quote(amount=BAG_FEE_USD * max(0, nonfree_baggages - current))


def cancellation_entries(reservation: Mapping[str, Any]) -> tuple[tuple[str, Decimal], ...]:
    """Return the entries a cancellation appends: the negation of every earlier payment."""
    return tuple(
        (str(p.get("payment_id", "")), -money(p.get("amount", 0)))
        for p in reservation.get("payment_history", [])
    )


def quote_cancellation(*, reservation: Mapping[str, Any]) -> Quote:
    """Price a cancellation: the signed sum of the reversing entries (negative = refund)."""
    entries = cancellation_entries(reservation)
    return Quote(amount=sum((a for _, a in entries), Decimal(0)), entries=entries)


def next_day(day: str) -> str:
    """Return the ISO date after ``day``."""
    return (datetime.strptime(day, "%Y-%m-%d") + timedelta(days=1)).strftime("%Y-%m-%d")


def flight_refs(items: Iterable[Any]) -> tuple[FlightRef, ...]:
    """Normalise ``[{flight_number, date}, ...]`` (dicts or models) into :class:`FlightRef` s.

    Raises:
        ToolError: If an item lacks a flight number or date.
    """
    refs: list[FlightRef] = []
    for item in items:
        data = item.model_dump() if hasattr(item, "model_dump") else item
        if not isinstance(data, Mapping):
            raise ToolError("Each flight must have a flight_number and a date")
        number, day = data.get("flight_number"), data.get("date")
        if not isinstance(number, str) or not isinstance(day, str):
            raise ToolError("Each flight must have a flight_number and a date")
        refs.append(FlightRef(flight_number=number, date=day))
    return tuple(refs)

