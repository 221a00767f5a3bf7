"""The airline backend: τ²-bench tool semantics over Postgres, with a payments ledger.

Every write runs in one transaction that locks the rows it changes (``SELECT ... FOR UPDATE``),
appends one ``payments_ledger`` row per charge or refund, records an ``airline_events`` row, and,
when given an idempotency key, claims that key in ``airline_write_requests`` first, so a retried
or concurrent call with the same key waits for the first and returns its stored result
(``status: "deduplicated"``) without charging again.

Amounts always come from :mod:`tools.airline.pricing` applied to the database, never from the
caller. Deliberate differences from τ² (all refuse something τ² would let through):

* a reservation that is already cancelled cannot be cancelled (τ² would refund it twice) or
  changed;
* a booking needs at least one flight and one passenger, positive payment amounts, and each
  payment method at most once (τ² would let a negative amount top up a gift card);
* certificate ids continue past ``certificate_3221324`` instead of failing after three.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import Cursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tools.airline import pricing
from tools.airline.errors import ToolError
from tools.airline.schemas import AIRLINE_TOOLS, parse_args

__all__ = [
    "AIRPORTS",
    "DEFAULT_IDEMPOTENCY_TTL",
    "DEFAULT_NOW",
    "FENCED",
    "AirlineBackend",
    "CursorReads",
    "WriteHooks",
]

# τ²'s simulated clock: 2024-05-15 15:00 EST, kept naive like the data's timestamps.
DEFAULT_NOW = datetime(2024, 5, 15, 15, 0, 0)
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)

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

_RESERVATION_PREFIX = "HAT"
_FIRST_RESERVATION_SUFFIX = "HAT"  # HATHAT, HATHAU, HATHAV, ... as in τ²
_FIRST_CERTIFICATE = 3221322  # certificate_3221322, ..._3221323, ... as in τ²
# Serialises new-reservation-id allocation across concurrent bookings (ASCII "hathat").
_RESERVATION_ID_LOCK = 0x68_61_74_68_61_74

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

Body = Callable[[Cursor[DictRow], str | None], dict[str, Any]]
# The tool name stored for a key that a reconciler fenced off: the late attempt finds it and does nothing.
FENCED = "fenced"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WriteHooks:
    """What a guarded write does inside its own transaction besides the change itself.

    Attributes:
        verify: Called first with reads on the transaction's cursor; it locks the rows the
            decision depends on, recomputes the facts and raises to refuse the write.
        record: Called last, before commit, with the cursor and the result.
        conversation_id: Tags the ledger and event rows, for per-conversation window facts.
    """

    verify: Callable[[CursorReads], None]
    record: Callable[[Cursor[DictRow], Mapping[str, Any]], None]
    conversation_id: str | None = None


class CursorReads:
    """The facts-side reads on one cursor: a snapshot outside a transaction, locked rows inside one."""

    def __init__(self, cur: Cursor[DictRow], *, now: datetime) -> None:
        self.cur = cur
        self.now = now
        self.lock = False

    def lock_scope(self, *, reservation_id: str | None, user_ids: Iterable[str], booking: bool) -> None:
        """Lock what a write decides on, in the writes' global order (id lock, reservation, users).

        Every later read on this cursor also locks (``FOR UPDATE``), so the facts recomputed
        here cannot change before the transaction commits.
        """
        self.lock = True
        if booking:
            self.cur.execute("SELECT pg_advisory_xact_lock(%s)", (_RESERVATION_ID_LOCK,))
        if reservation_id:
            reservation = _reservation(self.cur, reservation_id, lock=True)
            if reservation is not None:
                user_ids = [*user_ids, str(reservation.get("user_id", ""))]
        for user_id in sorted({u for u in user_ids if u}):
            _user(self.cur, user_id, lock=True)

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the user document, or None."""
        return _user(self.cur, user_id, lock=self.lock)

    def fetch_reservation(self, reservation_id: str) -> dict[str, Any] | None:
        """Return the reservation document, or None."""
        return _reservation(self.cur, reservation_id, lock=self.lock)

    def fetch_user_reservations(self, user_id: str) -> list[dict[str, Any]]:
        """Return every reservation document of ``user_id``, ordered by id."""
        self.cur.execute(
            "SELECT doc FROM airline_reservations WHERE user_id = %s ORDER BY reservation_id", (user_id,)
        )
        return [r["doc"] for r in self.cur.fetchall()]

    def fetch_flights(self, numbers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the flight documents for ``numbers`` (unknown numbers are left out)."""
        wanted = sorted({n for n in numbers if isinstance(n, str)})
        return _flights(self.cur, wanted) if wanted else {}

    def fetch_events(
        self, *, user_id: str | None = None, reservation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the write events of a user or a reservation, oldest first."""
        clauses, params = [], []
        if user_id is not None:
            clauses.append("user_id = %s")
            params.append(user_id)
        if reservation_id is not None:
            clauses.append("reservation_id = %s")
            params.append(reservation_id)
        if not clauses:
            return []
        self.cur.execute(
            "SELECT user_id, reservation_id, tool, idempotency_key, before, after "
            f"FROM airline_events WHERE {' AND '.join(clauses)} ORDER BY id",
            params,
        )
        return [dict(r) for r in self.cur.fetchall()]

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return money charged and refunded, and certificates issued, to the customer recently.

        Two windows: the last 24 hours (wall clock, as the ledger records it) and this
        conversation. Splitting a request into parts changes none of these sums.
        """
        self.cur.execute(
            "SELECT"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge'), 0) AS charged_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund'), 0) AS refunded_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge' AND conversation_id = %(c)s), 0)"
            "   AS charged_conv,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund' AND conversation_id = %(c)s), 0)"
            "   AS refunded_conv"
            " FROM payments_ledger WHERE user_id = %(u)s AND created_at > now() - interval '24 hours'",
            {"u": user_id, "c": conversation_id or ""},
        )
        money_row = self.cur.fetchone() or {}
        self.cur.execute(
            "SELECT count(*) FILTER (WHERE cert) AS n, coalesce(sum(usd) FILTER (WHERE cert), 0) AS usd,"
            " count(*) FILTER (WHERE cert AND conversation_id = %(c)s) AS n_conv,"
            " coalesce(sum(usd) FILTER (WHERE cert AND conversation_id = %(c)s), 0) AS usd_conv,"
            " count(*) FILTER (WHERE NOT cert) AS bookings, coalesce(sum(pax) FILTER (WHERE NOT cert), 0) AS pax"
            " FROM (SELECT tool = 'send_certificate' AS cert, conversation_id,"
            "   CASE WHEN tool = 'send_certificate' THEN (after->>'amount')::numeric END AS usd,"
            "   CASE WHEN tool = 'book_reservation' THEN jsonb_array_length(after->'passengers') END AS pax"
            "   FROM airline_events WHERE user_id = %(u)s AND tool IN ('send_certificate', 'book_reservation')"
            "   AND created_at > now() - interval '24 hours') AS recent",
            {"u": user_id, "c": conversation_id or ""},
        )
        events_row = self.cur.fetchone() or {}
        return {
            "charged_usd_24h": float(money_row.get("charged_24h", 0)),
            "refunded_usd_24h": float(money_row.get("refunded_24h", 0)),
            "charged_usd_conversation": float(money_row.get("charged_conv", 0)),
            "refunded_usd_conversation": float(money_row.get("refunded_conv", 0)),
            "certificates_24h": int(events_row.get("n", 0)),
            "certificates_usd_24h": float(events_row.get("usd", 0)),
            "certificates_conversation": int(events_row.get("n_conv", 0)),
            "certificates_usd_conversation": float(events_row.get("usd_conv", 0)),
            "bookings_24h": int(events_row.get("bookings", 0)),
            "passengers_booked_24h": int(events_row.get("pax", 0)),
        }

    def state_version(self, *, user_id: str | None = None, reservation_id: str | None = None) -> int:
        """Return a number that grows with every write to the reservation (or the user): the last event id."""
        column, value = ("reservation_id", reservation_id) if reservation_id else ("user_id", user_id)
        if value is None:
            return 0
        self.cur.execute(f"SELECT coalesce(max(id), 0) AS v FROM airline_events WHERE {column} = %s", (value,))
        row = self.cur.fetchone()
        return int(row["v"]) if row else 0


class AirlineBackend:
    """The τ² airline tools over Postgres (see the module docstring for the guarantees).

    Args:
        pool: The application's pool (see docs/CONTRACTS.md).
        now: The simulated clock; τ²'s 2024-05-15 15:00 EST by default.
        idempotency_ttl: How long (wall-clock) an executed key keeps answering
            ``deduplicated``. Matches the policy's idempotency ``ttl``, so an identical request
            made deliberately a day later (the graph derives keys from the arguments) runs again.
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        now: datetime = DEFAULT_NOW,
        idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
    ) -> None:
        self._pool = pool
        self._now = now
        self._ttl = idempotency_ttl

    @property
    def now(self) -> datetime:
        """Return the simulated current time."""
        return self._now

    @property
    def today(self) -> date:
        """Return the simulated current date."""
        return self._now.date()

    # ------------------------------------------------------------------ dispatch

    def call(self, tool: str, args: Mapping[str, Any] | None, *,
             idempotency_key: str | None = None, hooks: WriteHooks | None = None) -> Any:
        """Validate ``args`` against the tool's schema and run the tool.

        Args:
            tool: A name from :data:`tools.airline.schemas.AIRLINE_TOOLS`.
            args: The tool arguments (as the model sent them).
            idempotency_key: Passed to write tools; ignored by read tools.
            hooks: Lock, re-verify and record inside a write's transaction (write tools only).

        Raises:
            ToolError: On unknown tools, invalid arguments and domain errors.
        """
        model = parse_args(tool, args)
        kwargs = model.model_dump()
        if AIRLINE_TOOLS[tool].write:
            kwargs["idempotency_key"] = idempotency_key
            kwargs["hooks"] = hooks
        method: Callable[..., Any] = getattr(self, tool)
        return method(**kwargs)

    # ------------------------------------------------------------------ snapshot reads

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

    def reconcile(self, idempotency_key: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """Settle a write whose outcome is unknown: return its stored result, or fence it off.

        The fence inserts the key as ``fenced`` in ``airline_write_requests``. If the original
        attempt is still in flight, the insert waits for it (up to ``wait`` seconds): a commit
        means the write happened and its result is returned; a roll-back (or an attempt that
        never started) means the fence wins, and the late attempt, when it arrives, finds the
        key taken and changes nothing. Either way the answer is final.

        Raises:
            ToolError: When the in-flight attempt did not finish within ``wait``.
        """
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(wait * 1000)}ms",))
            try:
                cur.execute(
                    "INSERT INTO airline_write_requests (idempotency_key, tool, result) VALUES (%s, %s, %s)"
                    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                    (idempotency_key, FENCED, Jsonb({"status": FENCED})),
                )
            except psycopg.errors.LockNotAvailable as exc:
                raise ToolError("The earlier attempt is still running") from exc
            if cur.fetchone() is not None:
                return None
            cur.execute(
                "SELECT tool, result FROM airline_write_requests WHERE idempotency_key = %s", (idempotency_key,)
            )
            row = cur.fetchone()
        if row is None or row["tool"] == FENCED:
            return None
        return dict(row["result"])

    # ------------------------------------------------------------------ read tools

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

    # ------------------------------------------------------------------ write tools

    def book_reservation(
        self,
        *,
        user_id: str,
        origin: str,
        destination: str,
        flight_type: str,
        cabin: str,
        flights: Sequence[Any],
        passengers: Sequence[Any],
        payment_methods: Sequence[Any],
        total_baggages: int,
        nonfree_baggages: int,
        insurance: str,
        idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Book a reservation and charge each payment method its amount.

        The total is computed here (fares × passengers + insurance + paid bags); the given
        payment amounts must add up to it exactly. Gift-card balances go down, a used
        certificate is removed, seats are taken, and one ledger charge row is written per
        payment method.

        Raises:
            ToolError: On an unknown user, flight or payment method, a flight that is not
                bookable, short balances, or payments that do not add up.
        """
        tool = "book_reservation"
        refs = pricing.flight_refs(flights)
        people = [_plain(p) for p in passengers]
        payments = [_plain(p) for p in payment_methods]
        if not refs:
            raise ToolError("A reservation needs at least one flight")
        if not people:
            raise ToolError("A reservation needs at least one passenger")
        if total_baggages < 0 or nonfree_baggages < 0 or nonfree_baggages > total_baggages:
            raise ToolError("Invalid number of bags")

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_RESERVATION_ID_LOCK,))
            user = _user(cur, user_id, lock=True)
            if user is None:
                raise ToolError(f"User {user_id} not found")
            flight_docs = _flights(cur, sorted({r.flight_number for r in refs}), lock=True)
            quote = pricing.quote_booking(
                flights=flight_docs,
                refs=refs,
                cabin=cabin,
                passenger_count=len(people),
                insurance=insurance,
                nonfree_baggages=nonfree_baggages,
            )
            seen: set[str] = set()
            amounts: list[tuple[str, Decimal]] = []
            methods = user.setdefault("payment_methods", {})
            for payment in payments:
                payment_id = str(payment.get("payment_id", ""))
                amount = pricing.money(payment.get("amount"))
                if payment_id in seen:
                    raise ToolError(f"Payment method {payment_id} is listed more than once")
                seen.add(payment_id)
                if amount <= 0:
                    raise ToolError("Payment amounts must be positive")
                method = methods.get(payment_id)
                if method is None:
                    raise ToolError(f"Payment method {payment_id} not found")
                if method.get("source") in {"gift_card", "certificate"} and pricing.money(
                    method.get("amount", 0)
                ) < amount:
                    raise ToolError(f"Not enough balance in payment method {payment_id}")
                amounts.append((payment_id, amount))
            paid = sum((a for _, a in amounts), Decimal(0))
            if paid != quote.amount:
                raise ToolError(
                    "Payment amount does not add up, total price is "
                    f"{pricing.as_number(quote.amount)}, but paid {pricing.as_number(paid)}"
                )
            for payment_id, amount in amounts:
                method = methods[payment_id]
                if method.get("source") == "gift_card":
                    method["amount"] = float(pricing.money(method.get("amount", 0)) - amount)
                elif method.get("source") == "certificate":
                    # τ²: a certificate is spent whole; the remainder is not refundable.
                    del methods[payment_id]
            for ref in refs:
                seats = flight_docs[ref.flight_number]["dates"][ref.date]["available_seats"]
                seats[cabin] = int(seats[cabin]) - len(people)
            for number in sorted({r.flight_number for r in refs}):
                cur.execute(
                    "UPDATE airline_flights SET doc = %s WHERE flight_number = %s",
                    (Jsonb(flight_docs[number]), number),
                )
            reservation_id = _new_reservation_id(cur)
            reservation = {
                "reservation_id": reservation_id,
                "user_id": user_id,
                "origin": origin,
                "destination": destination,
                "flight_type": flight_type,
                "cabin": cabin,
                "flights": list(quote.segments),
                "passengers": people,
                "payment_history": [
                    {"payment_id": pid, "amount": pricing.as_number(a)} for pid, a in amounts
                ],
                "created_at": self._now.isoformat(timespec="seconds"),
                "total_baggages": total_baggages,
                "nonfree_baggages": nonfree_baggages,
                "insurance": insurance,
            }
            cur.execute(
                "INSERT INTO airline_reservations (reservation_id, user_id, doc) "
                "VALUES (%s, %s, %s)",
                (reservation_id, user_id, Jsonb(reservation)),
            )
            user.setdefault("reservations", []).append(reservation_id)
            _save_user(cur, user)
            charge_ids = [
                _ledger(cur, amount=a, payment_id=pid, user_id=user_id,
                        reservation_id=reservation_id, tool=tool, key=key)
                for pid, a in amounts
            ]
            _event(cur, tool=tool, key=key, user_id=user_id, reservation_id=reservation_id,
                   before=None, after=reservation)
            return _money_result(tool, quote.amount, charge_ids, reservation)

        return self._write(tool, idempotency_key, body, hooks)

    def cancel_reservation(
        self, *, reservation_id: str, idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Cancel a reservation and refund every earlier payment to its method.

        As in τ², each payment-history entry gets a negated entry (one ledger refund row each;
        an earlier refund is reversed by a charge row), no cancellation rule is checked here
        (the policy does that), balances are not restored and seats are not released.

        Raises:
            ToolError: If the reservation is unknown or already cancelled.
        """
        tool = "cancel_reservation"

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            reservation = _reservation(cur, reservation_id, lock=True)
            if reservation is None:
                raise ToolError(f"Reservation {reservation_id} not found")
            if reservation.get("status") == "cancelled":
                raise ToolError(f"Reservation {reservation_id} is already cancelled")
            before = _copy(reservation)
            quote = pricing.quote_cancellation(reservation=reservation)
            history = reservation.setdefault("payment_history", [])
            charge_ids: list[str] = []
            for payment_id, amount in quote.entries:
                history.append({"payment_id": payment_id, "amount": pricing.as_number(amount)})
                if amount != 0:
                    charge_ids.append(
                        _ledger(cur, amount=amount, payment_id=payment_id,
                                user_id=reservation["user_id"], reservation_id=reservation_id,
                                tool=tool, key=key)
                    )
            reservation["status"] = "cancelled"
            _save_reservation(cur, reservation)
            _event(cur, tool=tool, key=key, user_id=reservation["user_id"],
                   reservation_id=reservation_id, before=before, after=reservation)
            return _money_result(tool, quote.amount, charge_ids, reservation)

        return self._write(tool, idempotency_key, body, hooks)

    def update_reservation_flights(
        self,
        *,
        reservation_id: str,
        cabin: str,
        flights: Sequence[Any],
        payment_id: str,
        idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Replace the itinerary (and cabin); charge or refund the difference to ``payment_id``.

        Raises:
            ToolError: On an unknown reservation, a segment that is not bookable, a payment
                method that is missing or a certificate, or a gift card short of balance.
        """
        tool = "update_reservation_flights"
        refs = pricing.flight_refs(flights)
        if not refs:
            raise ToolError("The new itinerary needs at least one flight")

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            reservation = _open_reservation(cur, reservation_id)
            user = _owner(cur, reservation)
            flight_docs = _flights(cur, sorted({r.flight_number for r in refs}))
            quote = pricing.quote_flight_change(
                reservation=reservation, flights=flight_docs, refs=refs, cabin=cabin
            )
            before = _copy(reservation)
            charge_ids = _pay_for_update(
                cur, user=user, reservation=reservation, payment_id=payment_id,
                amount=quote.amount, tool=tool, key=key,
            )
            reservation["flights"] = list(quote.segments)
            reservation["cabin"] = cabin
            _save_reservation(cur, reservation)
            _event(cur, tool=tool, key=key, user_id=reservation["user_id"],
                   reservation_id=reservation_id, before=before, after=reservation)
            return _money_result(tool, quote.amount, charge_ids, reservation)

        return self._write(tool, idempotency_key, body, hooks)

    def update_reservation_baggages(
        self,
        *,
        reservation_id: str,
        total_baggages: int,
        nonfree_baggages: int,
        payment_id: str,
        idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Set the bag counts; charge USD 50 per paid bag over the current paid bags.

        Raises:
            ToolError: On an unknown reservation, a payment method that is missing or a
                certificate, or a gift card short of balance.
        """
        tool = "update_reservation_baggages"
        if total_baggages < 0 or nonfree_baggages < 0 or nonfree_baggages > total_baggages:
            raise ToolError("Invalid number of bags")

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            reservation = _open_reservation(cur, reservation_id)
            user = _owner(cur, reservation)
            quote = pricing.quote_baggage(
                reservation=reservation, nonfree_baggages=nonfree_baggages
            )
            before = _copy(reservation)
            charge_ids = _pay_for_update(
                cur, user=user, reservation=reservation, payment_id=payment_id,
                amount=quote.amount, tool=tool, key=key,
            )
            reservation["total_baggages"] = total_baggages
            reservation["nonfree_baggages"] = nonfree_baggages
            _save_reservation(cur, reservation)
            _event(cur, tool=tool, key=key, user_id=reservation["user_id"],
                   reservation_id=reservation_id, before=before, after=reservation)
            return _money_result(tool, quote.amount, charge_ids, reservation)

        return self._write(tool, idempotency_key, body, hooks)

    def update_reservation_passengers(
        self,
        *,
        reservation_id: str,
        passengers: Sequence[Any],
        idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Replace the passenger list; the number of passengers must stay the same.

        Raises:
            ToolError: On an unknown reservation or a different number of passengers.
        """
        tool = "update_reservation_passengers"
        people = [_plain(p) for p in passengers]

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            reservation = _open_reservation(cur, reservation_id)
            if len(people) != len(reservation.get("passengers", [])):
                raise ToolError("Number of passengers does not match")
            before = _copy(reservation)
            reservation["passengers"] = people
            _save_reservation(cur, reservation)
            _event(cur, tool=tool, key=key, user_id=reservation["user_id"],
                   reservation_id=reservation_id, before=before, after=reservation)
            return _money_result(tool, Decimal(0), [], reservation)

        return self._write(tool, idempotency_key, body, hooks)

    def send_certificate(
        self, *, user_id: str, amount: float, idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Add a travel certificate of ``amount`` to the user's payment methods.

        Ids are ``certificate_3221322``, ``..._3221323``, ... (the first free one in the
        profile). No eligibility rule is checked here; the policy does that.

        Raises:
            ToolError: On an unknown user or a non-positive amount.
        """
        tool = "send_certificate"
        value = pricing.money(amount)
        if value <= 0:
            raise ToolError("The certificate amount must be positive")

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            user = _user(cur, user_id, lock=True)
            if user is None:
                raise ToolError(f"User {user_id} not found")
            methods = user.setdefault("payment_methods", {})
            number = _FIRST_CERTIFICATE
            while f"certificate_{number}" in methods:
                number += 1
            certificate_id = f"certificate_{number}"
            certificate = {"source": "certificate", "id": certificate_id, "amount": float(value)}
            methods[certificate_id] = certificate
            _save_user(cur, user)
            _event(cur, tool=tool, key=key, user_id=user_id, reservation_id=None,
                   before=None, after=certificate)
            shown = pricing.as_number(value)
            return {
                "status": "issued",
                "tool": tool,
                "message": f"Certificate {certificate_id} added to user {user_id} "
                f"with amount {shown}.",
                "certificate_id": certificate_id,
                "user_id": user_id,
                "amount_usd": float(value),
                "direction": "none",
                "currency": "USD",
                "charge_ids": [],
            }

        return self._write(tool, idempotency_key, body, hooks)

    # ------------------------------------------------------------------ internals

    def _cursor(self) -> AbstractContextManager[Cursor[DictRow]]:
        return _read_cursor(self._pool)

    def _write(self, tool: str, key: str | None, body: Body, hooks: WriteHooks | None = None) -> dict[str, Any]:
        """Run ``body`` in one transaction, claiming ``key`` first when there is one.

        With ``hooks``, ``hooks.verify`` first locks every row the decision was made on and
        re-checks the decision on what it now reads (raising rolls everything back), and
        ``hooks.record`` stores the outcome before commit: decision, write and record are one
        transaction.
        """
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            if key is not None:
                stored = _claim(cur, key, tool, self._ttl)
                if stored is not None:
                    return stored
            if hooks is not None:
                hooks.verify(CursorReads(cur, now=self._now))
            result = body(cur, key)
            if hooks is not None and hooks.conversation_id:
                cur.execute(
                    "UPDATE payments_ledger SET conversation_id = %s WHERE idempotency_key = %s",
                    (hooks.conversation_id, key),
                )
                cur.execute(
                    "UPDATE airline_events SET conversation_id = %s WHERE idempotency_key = %s",
                    (hooks.conversation_id, key),
                )
            if key is not None:
                cur.execute(
                    "UPDATE airline_write_requests SET result = %s WHERE idempotency_key = %s",
                    (Jsonb(result), key),
                )
            if hooks is not None:
                hooks.record(cur, result)
            return result


@contextmanager
def _read_cursor(pool: ConnectionPool) -> Iterator[Cursor[DictRow]]:
    """Yield a dict-row cursor on a pooled connection, outside any explicit transaction."""
    with pool.connection() as conn:
        yield conn.cursor(row_factory=dict_row)


def _claim(
    cur: Cursor[DictRow], key: str, tool: str, ttl: timedelta
) -> dict[str, Any] | None:
    """Claim ``key`` for this transaction, or return the stored result of its first use.

    The insert waits while another transaction holds the same key: if that one commits, the
    key is taken and its stored result is returned; if it rolls back, this one claims the key.
    A key older than ``ttl`` is taken over (its row lock serialises concurrent takeovers).
    """
    cur.execute(
        "INSERT INTO airline_write_requests AS w (idempotency_key, tool) VALUES (%s, %s) "
        "ON CONFLICT (idempotency_key) DO UPDATE "
        "SET tool = EXCLUDED.tool, result = '{}'::jsonb, created_at = now() "
        "WHERE w.created_at < now() - %s RETURNING w.idempotency_key",
        (key, tool, ttl),
    )
    if cur.fetchone() is not None:
        return None
    cur.execute(
        "SELECT tool, result FROM airline_write_requests WHERE idempotency_key = %s", (key,)
    )
    row = cur.fetchone()
    if row is None:  # deleted between the two statements; the caller may retry
        raise ToolError("The request is being processed; please retry")
    if row["tool"] == FENCED:
        # A reconciler settled this attempt as "not executed" after it timed out: keep it so.
        return {"status": "deduplicated", "original_status": FENCED, "executed": False}
    if row["tool"] != tool:
        raise ToolError("This idempotency key was already used for another action")
    result = dict(row["result"])
    result["original_status"] = result.get("status", "")
    result["status"] = "deduplicated"
    return result


def _plain(item: Any) -> dict[str, Any]:
    data = item.model_dump() if hasattr(item, "model_dump") else item
    if not isinstance(data, Mapping):
        raise ToolError(f"Invalid item: {item!r}")
    return dict(data)


def _copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(doc))


def _user(cur: Cursor[DictRow], user_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    cur.execute(
        "SELECT doc FROM airline_users WHERE user_id = %s" + (" FOR UPDATE" if lock else ""),
        (user_id,),
    )
    row = cur.fetchone()
    return None if row is None else dict(row["doc"])


def _reservation(
    cur: Cursor[DictRow], reservation_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    cur.execute(
        "SELECT doc FROM airline_reservations WHERE reservation_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (reservation_id,),
    )
    row = cur.fetchone()
    return None if row is None else dict(row["doc"])


def _flights(
    cur: Cursor[DictRow], numbers: Sequence[str], *, lock: bool = False
) -> dict[str, dict[str, Any]]:
    # Sorted ids + ORDER BY keep the lock order stable, so concurrent bookings cannot deadlock.
    cur.execute(
        "SELECT flight_number, doc FROM airline_flights WHERE flight_number = ANY(%s) "
        "ORDER BY flight_number" + (" FOR UPDATE" if lock else ""),
        (list(numbers),),
    )
    return {r["flight_number"]: dict(r["doc"]) for r in cur.fetchall()}


def _open_reservation(cur: Cursor[DictRow], reservation_id: str) -> dict[str, Any]:
    reservation = _reservation(cur, reservation_id, lock=True)
    if reservation is None:
        raise ToolError(f"Reservation {reservation_id} not found")
    if reservation.get("status") == "cancelled":
        raise ToolError(f"Reservation {reservation_id} is cancelled and cannot be changed")
    return reservation


def _owner(cur: Cursor[DictRow], reservation: Mapping[str, Any]) -> dict[str, Any]:
    user = _user(cur, str(reservation.get("user_id", "")), lock=True)
    if user is None:
        raise ToolError(f"User {reservation.get('user_id')} not found")
    return user


def _save_user(cur: Cursor[DictRow], user: Mapping[str, Any]) -> None:
    cur.execute(
        "UPDATE airline_users SET doc = %s WHERE user_id = %s", (Jsonb(user), user["user_id"])
    )


def _save_reservation(cur: Cursor[DictRow], reservation: Mapping[str, Any]) -> None:
    cur.execute(
        "UPDATE airline_reservations SET doc = %s WHERE reservation_id = %s",
        (Jsonb(reservation), reservation["reservation_id"]),
    )


def _pay_for_update(
    cur: Cursor[DictRow],
    *,
    user: dict[str, Any],
    reservation: dict[str, Any],
    payment_id: str,
    amount: Decimal,
    tool: str,
    key: str | None,
) -> list[str]:
    """Charge (amount > 0) or refund (amount < 0) one gift card or credit card (τ² rules)."""
    method = user.get("payment_methods", {}).get(payment_id)
    if method is None:
        raise ToolError("Payment method not found")
    source = method.get("source")
    if source == "certificate":
        raise ToolError("Certificate cannot be used to update reservation")
    if source not in {"gift_card", "credit_card"}:
        raise ToolError("Payment method cannot be used to update reservation")
    if source == "gift_card":
        balance = pricing.money(method.get("amount", 0))
        if balance < amount:
            raise ToolError("Gift card balance is not enough")
        # A refund to a gift card tops it up again (τ²).
        method["amount"] = float(balance - amount)
        _save_user(cur, user)
    if amount == 0:
        return []
    reservation.setdefault("payment_history", []).append(
        {"payment_id": payment_id, "amount": pricing.as_number(amount)}
    )
    return [
        _ledger(cur, amount=amount, payment_id=payment_id, user_id=str(user["user_id"]),
                reservation_id=str(reservation["reservation_id"]), tool=tool, key=key)
    ]


def _ledger(
    cur: Cursor[DictRow],
    *,
    amount: Decimal,
    payment_id: str,
    user_id: str,
    reservation_id: str | None,
    tool: str,
    key: str | None,
) -> str:
    """Write one ledger row; a positive signed amount is a charge, a negative one a refund."""
    kind = "charge" if amount > 0 else "refund"
    charge_id = ("CHG-" if kind == "charge" else "RFD-") + uuid.uuid4().hex[:12].upper()
    cur.execute(
        "INSERT INTO payments_ledger (charge_id, idempotency_key, user_id, reservation_id, "
        "payment_id, kind, amount_usd, tool) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (charge_id, key, user_id, reservation_id, payment_id, kind, abs(amount), tool),
    )
    return charge_id


def _event(
    cur: Cursor[DictRow],
    *,
    tool: str,
    key: str | None,
    user_id: str,
    reservation_id: str | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> None:
    cur.execute(
        "INSERT INTO airline_events (user_id, reservation_id, tool, idempotency_key, before, "
        "after) VALUES (%s, %s, %s, %s, %s, %s)",
        (user_id, reservation_id, tool, key, None if before is None else Jsonb(before),
         Jsonb(after)),
    )


def _new_reservation_id(cur: Cursor[DictRow]) -> str:
    """Return the first free id of HATHAT, HATHAU, HATHAV, ... (base-26 after ``HAT``)."""
    cur.execute(
        "SELECT reservation_id FROM airline_reservations WHERE reservation_id LIKE %s",
        (_RESERVATION_PREFIX + "%",),
    )
    taken = {r["reservation_id"] for r in cur.fetchall()}
    start = 0
    for ch in _FIRST_RESERVATION_SUFFIX:
        start = start * 26 + (ord(ch) - ord("A"))
    for n in range(start, 26**3):
        suffix = "".join(chr(ord("A") + (n // 26**p) % 26) for p in (2, 1, 0))
        candidate = _RESERVATION_PREFIX + suffix
        if candidate not in taken:
            return candidate
    raise ToolError("Too many reservations")


def _money_result(
    tool: str, amount: Decimal, charge_ids: list[str], reservation: Mapping[str, Any]
) -> dict[str, Any]:
    if amount > 0:
        status, direction = "captured", "charge"
    elif amount < 0:
        status, direction = "refunded", "refund"
    else:
        status, direction = "completed", "none"
    return {
        "status": status,
        "tool": tool,
        "reservation_id": reservation["reservation_id"],
        "amount_usd": float(abs(amount)),
        "direction": direction,
        "currency": "USD",
        "charge_ids": charge_ids,
        "reservation": dict(reservation),
    }


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
