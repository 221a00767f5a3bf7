"""The τ² read tools: user and reservation details, flight search and status, calculate."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tools.airline import pricing
from tools.airline.backend.core import _BackendCore
from tools.airline.backend.reads import CursorReads
from tools.airline.errors import ToolError

__all__ = ["AIRPORTS", "ReadTools"]

AIRPORTS: tuple[tuple[str, str], ...] = (
    ("SFO", "San Francisco"),
    ("JFK", "New York"),
    ("LAX", "Los Angeles"),
    ("ORD", "Chicago"),
    ("DFW", "Dallas"),
    ("DEN", "Denver"),
    ("SEA", "Seattle"),
    ("ATL", "Atlanta"),
    ("MIA", "Miami"),
    ("BOS", "Boston"),
    ("PHX", "Phoenix"),
    ("IAH", "Houston"),
    ("LAS", "Las Vegas"),
    ("MCO", "Orlando"),
    ("EWR", "Newark"),
    ("CLT", "Charlotte"),
    ("MSP", "Minneapolis"),
    ("DTW", "Detroit"),
    ("PHL", "Philadelphia"),
    ("LGA", "LaGuardia"),
)

_CALC_CHARS = frozenset("0123456789+-*/(). ")
_CALC_BINOPS: Mapping[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_CALC_UNARY: Mapping[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class ReadTools(_BackendCore):
    """The snapshot reads and the read tools, each outside any transaction."""

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the user document, or None."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_user(user_id)

    def fetch_reservation(self, reservation_id: str) -> dict[str, Any] | None:
        """Return the reservation document, or None."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_reservation(reservation_id)

    def fetch_user_reservations(self, user_id: str) -> list[dict[str, Any]]:
        """Return every reservation document of ``user_id``, ordered by id."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_user_reservations(user_id)

    def fetch_flights(self, numbers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the flight documents for ``numbers`` (unknown numbers are left out)."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_flights(numbers)

    def fetch_events(
        self, *, user_id: str | None = None, reservation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the write events of a user or a reservation, oldest first."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_events(user_id=user_id, reservation_id=reservation_id)

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return the customer's recent money movements (see :meth:`CursorReads.fetch_window`)."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).fetch_window(user_id=user_id, conversation_id=conversation_id)

    def state_version(self, *, user_id: str | None = None, reservation_id: str | None = None) -> int:
        """Return a number that grows with every write to the reservation (or the user): the last event id."""
        with self._cursor() as cur:
            return CursorReads(cur, now=self._now).state_version(user_id=user_id, reservation_id=reservation_id)

    def get_user_details(self, *, user_id: str) -> dict[str, Any]:
        """Return the user's profile.

        Raises:
            ToolError: If the user does not exist.
        """
        user = self.fetch_user(user_id)
        if user is None:
            raise ToolError(f"User {user_id} not found")
        return user

    def get_reservation_details(self, *, reservation_id: str) -> dict[str, Any]:
        """Return the reservation.

        Raises:
            ToolError: If the reservation does not exist.
        """
        reservation = self.fetch_reservation(reservation_id)
        if reservation is None:
            raise ToolError(f"Reservation {reservation_id} not found")
        return reservation

    def list_all_airports(self) -> list[dict[str, str]]:
        """Return every airport as ``{"iata", "city"}``."""
        return [{"iata": code, "city": city} for code, city in AIRPORTS]

    def search_direct_flight(
        self, *, origin: str, destination: str, date: str
    ) -> list[dict[str, Any]]:
        """Return the bookable non-stop flights from ``origin`` to ``destination`` on ``date``."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT doc FROM airline_flights WHERE doc->>'origin' = %s "
                "AND doc->>'destination' = %s AND doc->'dates'->%s->>'status' = 'available' "
                "ORDER BY flight_number",
                (origin, destination, date),
            )
            return [_direct(r["doc"], date) for r in cur.fetchall()]

    def search_onestop_flight(
        self, *, origin: str, destination: str, date: str
    ) -> list[list[dict[str, Any]]]:
        """Return bookable ``[first_leg, second_leg]`` connections leaving ``origin`` on ``date``.

        The second leg leaves the connecting airport no earlier than the first leg arrives, on
        the next day when the first leg arrives after midnight (``+1``).
        """
        with self._cursor() as cur:
            cur.execute(
                "SELECT doc FROM airline_flights WHERE doc->>'origin' = %s "
                "AND doc->>'destination' <> %s AND doc->'dates'->%s->>'status' = 'available' "
                "ORDER BY flight_number",
                (origin, destination, date),
            )
            firsts = [r["doc"] for r in cur.fetchall()]
            cur.execute(
                "SELECT doc FROM airline_flights WHERE doc->>'destination' = %s "
                "ORDER BY flight_number",
                (destination,),
            )
            seconds = [r["doc"] for r in cur.fetchall()]
        results: list[list[dict[str, Any]]] = []
        for first in firsts:
            arrival = str(first["scheduled_arrival_time_est"])
            day2 = pricing.next_day(date) if "+1" in arrival else date
            arrive_at = arrival.replace("+1", "")
            for second in seconds:
                instance = second.get("dates", {}).get(day2, {})
                if (
                    second["origin"] == first["destination"]
                    and instance.get("status") == "available"
                    and str(second["scheduled_departure_time_est"]) >= arrive_at
                ):
                    results.append([_direct(first, date), _direct(second, day2)])
        return results

    def get_flight_status(self, *, flight_number: str, date: str) -> str:
        """Return the status of a flight on a date.

        Raises:
            ToolError: If the flight or date is unknown.
        """
        flights = self.fetch_flights([flight_number])
        if flight_number not in flights:
            raise ToolError(f"Flight {flight_number} not found")
        status = pricing.segment_status(flights, flight_number, date)
        if not status:
            raise ToolError(f"Flight {flight_number} not found on date {date}")
        return status

    def calculate(self, *, expression: str) -> str:
        """Evaluate simple arithmetic without ``eval`` and return it rounded to 2 decimals.

        Raises:
            ToolError: On characters other than digits, ``+-*/().`` and spaces, on anything but
                numbers and the four operations, and on division by zero or overflow.
        """
        if not expression.strip() or any(c not in _CALC_CHARS for c in expression):
            raise ToolError("Invalid characters in expression")
        if len(expression) > 200:
            raise ToolError("Expression too long")
        try:
            tree = ast.parse(expression, mode="eval")
            value = _calc(tree.body)
            return str(round(value, 2))
        except ZeroDivisionError as exc:
            raise ToolError("Division by zero") from exc
        except (SyntaxError, OverflowError, RecursionError, ValueError) as exc:
            raise ToolError("Invalid expression") from exc

    def transfer_to_human_agents(self, *, summary: str) -> str:
        """Hand the conversation to a human agent."""
        return "Transfer successful"


def _direct(doc: Mapping[str, Any], day: str) -> dict[str, Any]:
    instance = doc.get("dates", {}).get(day, {})
    return {
        "flight_number": doc["flight_number"],
        "origin": doc["origin"],
        "destination": doc["destination"],
        "status": "available",
        "scheduled_departure_time_est": doc["scheduled_departure_time_est"],
        "scheduled_arrival_time_est": doc["scheduled_arrival_time_est"],
        "date": day,
        "available_seats": instance.get("available_seats", {}),
        "prices": instance.get("prices", {}),
    }


def _calc(node: ast.expr) -> float:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _CALC_BINOPS:
        return _CALC_BINOPS[type(node.op)](_calc(node.left), _calc(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _CALC_UNARY:
        return _CALC_UNARY[type(node.op)](_calc(node.operand))
    raise ValueError("unsupported expression")
