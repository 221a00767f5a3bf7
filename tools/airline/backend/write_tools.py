"""The τ² write tools, each one transaction with ledger rows and an event."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tools.airline import pricing
from tools.airline.backend.core import WriteHooks, _BackendCore
from tools.airline.backend.ledger import _ledger, _money_result, _pay_for_update
from tools.airline.backend.rows import (
    _FIRST_CERTIFICATE,
    _RESERVATION_ID_LOCK,
    _copy,
    _event,
    _flights,
    _new_reservation_id,
    _open_reservation,
    _owner,
    _plain,
    _reservation,
    _save_reservation,
    _save_user,
    _user,
)
from tools.airline.errors import ToolError

__all__ = ["WriteTools"]


class WriteTools(_BackendCore):
    """The write tools; each runs in :meth:`_BackendCore._write`."""

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
