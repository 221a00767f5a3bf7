"""Facts for the airline guardrails: what code knows about a tool call, read from the database.

:func:`compute_facts` returns a plain-JSON dict that CEL conditions see as ``facts``. Every
section is always present (filled with neutral defaults when it does not apply), values are
never ``None`` (CEL null handling is awkward), and a missing or forged user, reservation,
flight or payment method gives ``exists: false`` style facts instead of an exception, so the
policy can deny. Prices come from :mod:`tools.airline.pricing`, the code the backend charges with.

Facts never contain names, e-mail addresses or dates of birth, so they can be audited as is;
the details of a reservation the signed-in user does not own are left out as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pydantic import ValidationError

from graph.domain import describe_validation_error
from tools.airline import pricing
from tools.airline.describe import payment_label
from tools.airline.errors import ToolError
from tools.airline.schemas import AIRLINE_TOOLS

__all__ = ["CANCEL_REASONS", "FactsSource", "compute_facts", "default_facts"]

CANCEL_REASONS = ("change_of_plan", "airline_cancelled", "health", "weather", "other")
INSURED_REASONS = frozenset({"health", "weather"})
ELIGIBLE_MEMBERSHIPS = frozenset({"silver", "gold"})
_DIRECTION_TEXT = {"charge": "charged to", "refund": "refunded to", "credit": "issued to", "none": "no charge on"}
CANCELLED_COMPENSATION_USD = 100
DELAYED_COMPENSATION_USD = 50


class FactsSource(Protocol):
    """The read side of :class:`tools.airline.backend.AirlineBackend` that facts need."""

    @property
    def now(self) -> datetime:
        """Return the simulated current time."""
        ...

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return a user document or None."""
        ...

    def fetch_reservation(self, reservation_id: str) -> dict[str, Any] | None:
        """Return a reservation document or None."""
        ...

    def fetch_user_reservations(self, user_id: str) -> list[dict[str, Any]]:
        """Return a user's reservation documents."""
        ...

    def fetch_flights(self, numbers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return flight documents by number."""
        ...

    def fetch_events(
        self, *, user_id: str | None = None, reservation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return write events, oldest first."""
        ...

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return the customer's money movements in the last 24 h and in this conversation."""
        ...


# --------------------------------------------------------------------------- defaults


def _quote_defaults() -> dict[str, Any]:
    return {
        "amount_usd": 0.0,
        "direction": "none",
        "direction_text": "no charge on",
        "currency": "USD",
        "amount_text": "0.00",
        "summary": "No payment is involved.",
        "ok": True,
        "error": "",
    }


def _reservation_defaults(reservation_id: str = "") -> dict[str, Any]:
    return {
        "reservation_id": reservation_id,
        "exists": False,
        "owned": False,
        "status": "",
        "cabin": "",
        "insurance": "",
        "flight_type": "",
        "origin": "",
        "destination": "",
        "passenger_count": 0,
        "created_at": "",
        "created_within_24h": False,
        "segments": [],
        "segment_count": 0,
        "flown_count": 0,
        "any_flown": False,
        "any_past_date": False,
        "any_cancelled": False,
        "any_delayed": False,
        "ever_cancelled": False,
        "ever_delayed": False,
        "changed": False,
        "total_baggages": 0,
        "nonfree_baggages": 0,
        "paid_usd": 0.0,
    }


def _window_defaults() -> dict[str, Any]:
    return {
        "charged_usd_24h": 0.0,
        "refunded_usd_24h": 0.0,
        "charged_usd_conversation": 0.0,
        "refunded_usd_conversation": 0.0,
        "certificates_24h": 0,
        "certificates_usd_24h": 0.0,
        "certificates_conversation": 0,
        "certificates_usd_conversation": 0.0,
        "bookings_24h": 0,
        "passengers_booked_24h": 0,
    }


def default_facts() -> dict[str, Any]:
    """Return a facts dict with every section present and neutral values."""
    return {
        "window": _window_defaults(),
        "tool": "",
        "known_tool": False,
        "write": False,
        "now": "",
        "today": "",
        "authenticated": False,
        "args_valid": False,
        "args_error": "",
        "conversation": {
            "user_asked_compensation": False,
            "customer_disputes": False,
            "cancel_reason": "",
            "user_ids_mentioned": [],
        },
        "user": {
            "user_id": "",
            "exists": False,
            "membership": "",
            "payment_methods": {},
            "reservation_ids": [],
        },
        "args_user_id": "",
        "has_user_arg": False,
        "args_user_matches": False,
        "args_user_mentioned": False,
        "reservation": _reservation_defaults(),
        "payment": {
            "id": "",
            "label": "",
            "exists_in_profile": False,
            "source": "",
            "balance": 0.0,
            "is_certificate": False,
            "usable_for_change": False,
            "covers_quote": False,
        },
        "quote": _quote_defaults(),
        "itinerary": {
            "new_cabin": "",
            "cabin_changed": False,
            "segments_unchanged": False,
            "same_endpoints": False,
            "same_trip_type": False,
            "old_origin": "",
            "old_destination": "",
            "old_trip_type": "",
            "new_origin": "",
            "new_destination": "",
            "new_trip_type": "",
            "segment_count": 0,
            "kept_count": 0,
            "all_exist": False,
            "all_available": False,
            "connected": False,
            "dates_ordered": False,
            "times_ordered": False,
            "missing_flight": "",
            "disconnected_at": "",
            "out_of_order_at": "",
            "flown_segments_changed": False,
        },
        "booking": {
            "passenger_count": 0,
            "flight_count": 0,
            "payment_count": 0,
            "certificate_count": 0,
            "credit_card_count": 0,
            "gift_card_count": 0,
            "unknown_payment_count": 0,
            "all_payments_in_profile": False,
            "duplicate_payments": False,
            "all_amounts_positive": False,
            "balances_sufficient": False,
            "payments_total_usd": 0.0,
            "payments_total_matches": False,
            "membership": "",
            "free_bags_per_passenger": 0,
            "expected_nonfree": 0,
            "nonfree_matches": False,
            "all_exist": False,
            "all_available": False,
            "trip_type": "",
            "connected": False,
            "dates_ordered": False,
            "times_ordered": False,
            "missing_flight": "",
            "disconnected_at": "",
            "out_of_order_at": "",
            "itinerary_matches": False,
        },
        "bags": {
            "current_total": 0,
            "current_nonfree": 0,
            "new_total": 0,
            "new_nonfree": 0,
            "added_bags": 0,
            "only_adds": False,
            "membership": "",
            "free_allowance": 0,
            "expected_nonfree": 0,
            "nonfree_matches": False,
        },
        "passengers": {"current_count": 0, "new_count": 0, "count_matches": False},
        "cancellation": {
            "reason": "",
            "within_24h": False,
            "airline_cancelled": False,
            "business": False,
            "insurance": False,
            "reason_covered": False,
            "any_flown": False,
            "already_cancelled": False,
            "eligible": False,
        },
        "certificate": {
            "amount": 0.0,
            "member_eligible": False,
            "eligible": False,
            "allowed_amounts": [],
            "amount_allowed": False,
            "max_amount_cancelled": 0.0,
            "max_amount_delayed": 0.0,
            "issued_count": 0,
            "qualifying_reservations": [],
        },
    }


# --------------------------------------------------------------------------- entry point


def compute_facts(
    backend: FactsSource,
    tool: str,
    args: Mapping[str, Any] | None,
    *,
    user_id: str | None,
    conversation: Mapping[str, Any] | None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """Compute everything a CEL guardrail may need about one tool call.

    Args:
        backend: The airline backend (only its ``fetch_*`` reads and ``now`` are used).
        tool: The tool the model asked for.
        args: The arguments the model sent (untrusted; may be malformed).
        user_id: The authenticated customer from the runtime context, never the model's word.
        conversation: What the graph derived from the user's own messages:
            ``user_asked_compensation``, ``cancel_reason``, ``user_ids_mentioned``.
        conversation_id: The conversation (thread) the call comes from, for the ``window``
            facts: money charged, refunded or issued to the customer in the last 24 h and in
            this conversation, before this call (read from the ledger, so a request split
            into several calls adds up to the same sums).

    Returns:
        The facts dict; see :func:`default_facts` for every field.
    """
    raw: dict[str, Any] = dict(args) if isinstance(args, Mapping) else {}
    facts = default_facts()
    spec = AIRLINE_TOOLS.get(tool)
    now = backend.now
    facts.update(
        tool=tool,
        known_tool=spec is not None,
        write=bool(spec and spec.write),
        now=now.isoformat(timespec="seconds"),
        today=now.date().isoformat(),
        authenticated=bool(user_id),
        conversation=_conversation(conversation),
    )
    if spec is not None:
        try:
            spec.args_schema.model_validate(raw)
            facts["args_valid"] = True
        except ValidationError as exc:
            facts["args_error"] = describe_validation_error(exc)
    else:
        facts["args_error"] = f"unknown tool {tool}"

    user_doc = backend.fetch_user(user_id) if user_id else None
    facts["user"] = _user_facts(user_id or "", user_doc)
    if user_doc is not None and user_id and spec is not None and spec.write:
        # Window facts are for limits on writes; reads do not pay for the ledger queries.
        facts["window"] = {**_window_defaults(),
                           **backend.fetch_window(user_id=user_id, conversation_id=conversation_id)}
    fields = spec.args_schema.model_fields if spec is not None else {}
    args_user = _s(raw, "user_id")
    facts["args_user_id"] = args_user
    facts["has_user_arg"] = "user_id" in fields
    # Tools without a user_id argument act on the reservation, whose ownership is checked.
    facts["args_user_matches"] = (
        (bool(user_id) and args_user == user_id) if "user_id" in fields else True
    )
    facts["args_user_mentioned"] = args_user in facts["conversation"]["user_ids_mentioned"]

    ctx = _Ctx(backend=backend, now=now, user_id=user_id or "", user=user_doc, raw=raw)
    if "reservation_id" in fields:
        ctx.load_reservation(_s(raw, "reservation_id"))
        facts["reservation"] = ctx.reservation_facts
    if "payment_id" in fields:
        facts["payment"] = _payment_facts(user_doc, _s(raw, "payment_id"))

    builder = _BUILDERS.get(tool)
    if builder is not None:
        builder(ctx, facts)
    return _clean(facts)


# --------------------------------------------------------------------------- context


class _Ctx:
    """Per-call lookups shared by the section builders."""

    def __init__(
        self,
        *,
        backend: FactsSource,
        now: datetime,
        user_id: str,
        user: dict[str, Any] | None,
        raw: dict[str, Any],
    ) -> None:
        self.backend = backend
        self.now = now
        self.user_id = user_id
        self.user = user
        self.raw = raw
        self.reservation: dict[str, Any] | None = None  # only when owned
        self.reservation_facts = _reservation_defaults()
        self.flights: dict[str, dict[str, Any]] = {}

    @property
    def membership(self) -> str:
        return str((self.user or {}).get("membership", ""))

    def load_reservation(self, reservation_id: str) -> None:
        doc = self.backend.fetch_reservation(reservation_id) if reservation_id else None
        if doc is None:
            self.reservation_facts = _reservation_defaults(reservation_id)
            return
        owned = bool(self.user_id) and doc.get("user_id") == self.user_id
        if not owned:
            # Another customer's booking: say only that it exists and is not theirs.
            self.reservation_facts = {
                **_reservation_defaults(reservation_id), "exists": True, "owned": False
            }
            return
        events = self.backend.fetch_events(reservation_id=reservation_id)
        numbers = _segment_numbers([doc, *(e["before"] for e in events if e.get("before"))])
        numbers |= {r.flight_number for r in _refs(self.raw.get("flights"))[0]}
        self.flights = self.backend.fetch_flights(numbers)
        self.reservation = doc
        self.reservation_facts = _reservation_facts(doc, self.flights, events, self.now)


def _segment_numbers(docs: Iterable[Mapping[str, Any] | None]) -> set[str]:
    return {
        str(s.get("flight_number", ""))
        for d in docs
        if d
        for s in d.get("flights", [])
        if isinstance(s, Mapping)
    }


# --------------------------------------------------------------------------- sections


def _conversation(conv: Mapping[str, Any] | None) -> dict[str, Any]:
    conv = conv if isinstance(conv, Mapping) else {}
    reason = conv.get("cancel_reason")
    mentioned = conv.get("user_ids_mentioned")
    return {
        "user_asked_compensation": conv.get("user_asked_compensation") is True,
        "customer_disputes": conv.get("customer_disputes") is True,
        "cancel_reason": reason if reason in CANCEL_REASONS else "",
        "user_ids_mentioned": [m for m in mentioned if isinstance(m, str)]
        if isinstance(mentioned, list | tuple)
        else [],
    }


def _user_facts(user_id: str, doc: Mapping[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return {
            "user_id": user_id,
            "exists": False,
            "membership": "",
            "payment_methods": {},
            "reservation_ids": [],
        }
    methods = {
        str(pid): {
            "source": str(m.get("source", "")),
            "amount": float(m.get("amount", 0) or 0),
        }
        for pid, m in (doc.get("payment_methods") or {}).items()
        if isinstance(m, Mapping)
    }
    return {
        "user_id": user_id,
        "exists": True,
        "membership": str(doc.get("membership", "")),
        "payment_methods": methods,
        "reservation_ids": [str(r) for r in doc.get("reservations", []) if r],
    }


def _segments(
    doc: Mapping[str, Any], flights: Mapping[str, Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    out = []
    for seg in doc.get("flights", []):
        number, day = str(seg.get("flight_number", "")), str(seg.get("date", ""))
        status = pricing.segment_status(flights, number, day)
        out.append(
            {
                "flight_number": number,
                "date": day,
                "origin": str(seg.get("origin", "")),
                "destination": str(seg.get("destination", "")),
                "price": float(seg.get("price", 0) or 0),
                "status": status,
                "flown": pricing.is_flown(status, day, now.date()),
            }
        )
    return out


def _reservation_facts(
    doc: Mapping[str, Any],
    flights: Mapping[str, Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    segments = _segments(doc, flights, now)
    statuses = [s["status"] for s in segments]
    earlier = [
        s["status"] for e in events if e.get("before") for s in _segments(e["before"], flights, now)
    ]
    try:
        created = datetime.fromisoformat(str(doc.get("created_at", "")))
        within_24h = now - timedelta(hours=24) <= created <= now
    except ValueError:
        within_24h = False
    paid = sum(
        (pricing.money(p.get("amount", 0)) for p in doc.get("payment_history", [])), Decimal(0)
    )
    return {
        "reservation_id": str(doc.get("reservation_id", "")),
        "exists": True,
        "owned": True,
        "status": "cancelled" if doc.get("status") == "cancelled" else "active",
        "cabin": str(doc.get("cabin", "")),
        "insurance": str(doc.get("insurance", "")),
        "flight_type": str(doc.get("flight_type", "")),
        "origin": str(doc.get("origin", "")),
        "destination": str(doc.get("destination", "")),
        "passenger_count": len(doc.get("passengers", [])),
        "created_at": str(doc.get("created_at", "")),
        "created_within_24h": within_24h,
        "segments": segments,
        "segment_count": len(segments),
        "flown_count": sum(1 for s in segments if s["flown"]),
        "any_flown": any(s["flown"] for s in segments),
        "any_past_date": any(s["date"] < now.date().isoformat() for s in segments),
        "any_cancelled": "cancelled" in statuses,
        "any_delayed": "delayed" in statuses,
        "ever_cancelled": "cancelled" in statuses or "cancelled" in earlier,
        "ever_delayed": "delayed" in statuses or "delayed" in earlier,
        "changed": any(e.get("tool") == "update_reservation_flights" for e in events),
        "total_baggages": int(doc.get("total_baggages", 0) or 0),
        "nonfree_baggages": int(doc.get("nonfree_baggages", 0) or 0),
        "paid_usd": float(paid),
    }


def _payment_facts(user: Mapping[str, Any] | None, payment_id: str) -> dict[str, Any]:
    method = ((user or {}).get("payment_methods") or {}).get(payment_id)
    if not isinstance(method, Mapping):
        return {**default_facts()["payment"], "id": payment_id, "label": payment_label(payment_id)}
    source = str(method.get("source", ""))
    return {
        "id": payment_id,
        "label": payment_label(payment_id, method),  # what the customer reads: "Visa ending 1234"
        "exists_in_profile": True,
        "source": source,
        "balance": float(method.get("amount", 0) or 0),
        "is_certificate": source == "certificate",
        "usable_for_change": source in {"gift_card", "credit_card"},
        "covers_quote": False,  # filled in once the quote is known
    }


def _set_quote(facts: dict[str, Any], quote: pricing.Quote, *, to: str = "") -> None:
    amount = f"{quote.amount_usd:.2f}"
    if quote.direction == "charge":
        summary = f"USD {amount} will be charged" + (f" to {to}." if to else ".")
    elif quote.direction == "refund":
        summary = f"USD {amount} will be refunded" + (f" to {to}." if to else ".")
    else:
        summary = "There is no price difference."
    facts["quote"] = {
        **_quote_defaults(),
        "amount_usd": quote.amount_usd,
        "direction": quote.direction,
        "direction_text": _DIRECTION_TEXT[quote.direction],
        "amount_text": amount,
        "summary": summary,
    }
    payment = facts["payment"]
    if payment["exists_in_profile"]:
        payment["covers_quote"] = (
            quote.direction != "charge"
            or payment["source"] == "credit_card"
            or (payment["source"] == "gift_card" and payment["balance"] >= quote.amount_usd)
        )


def _quote_failed(facts: dict[str, Any], error: ToolError) -> None:
    facts["quote"] = {
        **_quote_defaults(),
        "ok": False,
        "error": error.message,
        "summary": "The price could not be computed.",
    }


# --------------------------------------------------------------------------- per tool


def _book(ctx: _Ctx, facts: dict[str, Any]) -> None:
    raw = ctx.raw
    refs, refs_ok = _refs(raw.get("flights"))
    passengers = raw.get("passengers")
    passenger_count = len(passengers) if isinstance(passengers, list) else 0
    cabin, membership = _s(raw, "cabin"), ctx.membership
    total_bags, nonfree = _i(raw, "total_baggages"), _i(raw, "nonfree_baggages")
    flights = ctx.backend.fetch_flights(r.flight_number for r in refs)
    methods = (ctx.user or {}).get("payment_methods") or {}

    payments = raw.get("payment_methods")
    payments = payments if isinstance(payments, list) else []
    counts = {"certificate": 0, "credit_card": 0, "gift_card": 0, "": 0}
    ids: list[str] = []
    in_profile = positive = sufficient = bool(payments)
    total = Decimal(0)
    for item in payments:
        pid = _s(item, "payment_id") if isinstance(item, Mapping) else ""
        try:
            amount = pricing.money(item.get("amount")) if isinstance(item, Mapping) else None
        except ToolError:
            amount = None
        ids.append(pid)
        method = methods.get(pid) if pid else None
        source = str(method.get("source", "")) if isinstance(method, Mapping) else _source_of(pid)
        counts[source if source in counts else ""] += 1
        if not isinstance(method, Mapping):
            in_profile = False
        if amount is None or amount <= 0:
            positive = False
            continue
        total += amount
        if (
            isinstance(method, Mapping)
            and source in {"gift_card", "certificate"}
            and pricing.money(method.get("amount", 0)) < amount
        ):
            sufficient = False

    legs = [_leg(flights, r) for r in refs]
    all_exist = refs_ok and bool(refs) and all(
        pricing.segment_status(flights, r.flight_number, r.date) for r in refs
    )
    expected = pricing.expected_nonfree(
        total_baggages=total_bags, passenger_count=passenger_count,
        membership=membership, cabin=cabin,
    )
    booking = facts["booking"]
    booking.update(
        passenger_count=passenger_count,
        flight_count=len(refs),
        payment_count=len(payments),
        certificate_count=counts["certificate"],
        credit_card_count=counts["credit_card"],
        gift_card_count=counts["gift_card"],
        unknown_payment_count=counts[""],
        all_payments_in_profile=in_profile,
        duplicate_payments=len(set(ids)) != len(ids),
        all_amounts_positive=positive,
        balances_sufficient=sufficient and in_profile,
        payments_total_usd=float(total),
        membership=membership,
        free_bags_per_passenger=pricing.free_bags_per_passenger(membership, cabin),
        expected_nonfree=expected,
        nonfree_matches=nonfree == expected and _i(raw, "nonfree_baggages", -1) >= 0,
        all_exist=all_exist,
        trip_type=pricing.trip_type_of(legs),
        **_sequence(flights, refs, legs),
        itinerary_matches=all_exist
        and _connected(legs)
        and _matches_endpoints(
            legs, origin=_s(raw, "origin"), destination=_s(raw, "destination"),
            flight_type=_s(raw, "flight_type"),
        ),
    )
    if not (refs_ok and refs and passenger_count):
        _quote_failed(facts, ToolError("A booking needs flights and passengers"))
        return
    try:
        quote = pricing.quote_booking(
            flights=flights, refs=refs, cabin=cabin, passenger_count=passenger_count,
            insurance=_s(raw, "insurance"), nonfree_baggages=nonfree,
        )
    except ToolError as exc:
        _quote_failed(facts, exc)
        return
    booking["all_available"] = True
    booking["payments_total_matches"] = total == quote.amount
    _set_quote(facts, quote, to="the payment methods listed")


def _cancel(ctx: _Ctx, facts: dict[str, Any]) -> None:
    res = facts["reservation"]
    reason = facts["conversation"]["cancel_reason"]
    covered = res["insurance"] == "yes" and reason in INSURED_REASONS
    facts["cancellation"] = {
        "reason": reason,
        "within_24h": res["created_within_24h"],
        "airline_cancelled": res["any_cancelled"],
        "business": res["cabin"] == "business",
        "insurance": res["insurance"] == "yes",
        "reason_covered": covered,
        "any_flown": res["any_flown"],
        "already_cancelled": res["status"] == "cancelled",
        "eligible": res["owned"]
        and (
            res["created_within_24h"]
            or res["any_cancelled"]
            or res["cabin"] == "business"
            or covered
        ),
    }
    if ctx.reservation is not None:
        _set_quote(
            facts, pricing.quote_cancellation(reservation=ctx.reservation),
            to="the original payment methods",
        )


def _update_flights(ctx: _Ctx, facts: dict[str, Any]) -> None:
    doc = ctx.reservation
    if doc is None:
        return
    res = facts["reservation"]
    refs, refs_ok = _refs(ctx.raw.get("flights"))
    cabin = _s(ctx.raw, "cabin")
    old = list(res["segments"])
    new_legs = [_leg(ctx.flights, r) for r in refs]
    old_o, old_d, old_t = pricing.itinerary_shape(old, destination_hint=res["destination"])
    new_o, new_d, new_t = pricing.itinerary_shape(new_legs, destination_hint=res["destination"])
    old_keys = [(s["flight_number"], s["date"]) for s in old]
    new_keys = [(r.flight_number, r.date) for r in refs]
    flown_keys = {(s["flight_number"], s["date"]) for s in old if s["flown"]}
    facts["itinerary"] = {
        "new_cabin": cabin,
        "cabin_changed": cabin != res["cabin"],
        "segments_unchanged": refs_ok and sorted(old_keys) == sorted(new_keys),
        "same_endpoints": bool(new_o) and (new_o, new_d) == (old_o, old_d),
        "same_trip_type": bool(new_t) and new_t == old_t,
        "old_origin": old_o,
        "old_destination": old_d,
        "old_trip_type": old_t,
        "new_origin": new_o,
        "new_destination": new_d,
        "new_trip_type": new_t,
        "segment_count": len(refs),
        "kept_count": sum(1 for k in new_keys if k in old_keys),
        "all_exist": refs_ok and bool(refs) and all(
            pricing.segment_status(ctx.flights, *k) for k in new_keys
        ),
        "all_available": False,
        **_sequence(ctx.flights, refs, new_legs),
        "flown_segments_changed": any(k not in new_keys for k in flown_keys),
    }
    if not (refs_ok and refs):
        _quote_failed(facts, ToolError("The new itinerary needs at least one flight"))
        return
    try:
        quote = pricing.quote_flight_change(
            reservation=doc, flights=ctx.flights, refs=refs, cabin=cabin
        )
    except ToolError as exc:
        _quote_failed(facts, exc)
        return
    facts["itinerary"]["all_available"] = True
    _set_quote(facts, quote, to=facts["payment"]["id"])


def _update_bags(ctx: _Ctx, facts: dict[str, Any]) -> None:
    doc = ctx.reservation
    if doc is None:
        return
    res = facts["reservation"]
    new_total, new_nonfree = _i(ctx.raw, "total_baggages"), _i(ctx.raw, "nonfree_baggages")
    free = res["passenger_count"] * pricing.free_bags_per_passenger(ctx.membership, res["cabin"])
    # Never ask for fewer paid bags than already paid for (bags cannot be removed).
    expected = max(res["nonfree_baggages"], max(0, new_total - free))
    facts["bags"] = {
        "current_total": res["total_baggages"],
        "current_nonfree": res["nonfree_baggages"],
        "new_total": new_total,
        "new_nonfree": new_nonfree,
        "added_bags": new_total - res["total_baggages"],
        "only_adds": new_total >= res["total_baggages"]
        and new_nonfree >= res["nonfree_baggages"],
        "membership": ctx.membership,
        "free_allowance": free,
        "expected_nonfree": expected,
        "nonfree_matches": new_nonfree == expected,
    }
    _set_quote(
        facts,
        pricing.quote_baggage(reservation=doc, nonfree_baggages=new_nonfree),
        to=facts["payment"]["id"],
    )


def _update_passengers(ctx: _Ctx, facts: dict[str, Any]) -> None:
    passengers = ctx.raw.get("passengers")
    new_count = len(passengers) if isinstance(passengers, list) else 0
    current = facts["reservation"]["passenger_count"]
    facts["passengers"] = {
        "current_count": current,
        "new_count": new_count,
        "count_matches": ctx.reservation is not None and new_count == current,
    }


def _send_certificate(ctx: _Ctx, facts: dict[str, Any]) -> None:
    try:
        amount = float(pricing.money(ctx.raw.get("amount")))
    except ToolError:
        amount = 0.0
    cert = facts["certificate"]
    cert["amount"] = amount
    if amount > 0:
        # The value the customer receives: what the confirm gate shows and its hash binds.
        facts["quote"] = {
            **_quote_defaults(), "amount_usd": amount, "direction": "credit", "direction_text": "issued to",
            "amount_text": f"{amount:.2f}", "summary": f"A travel certificate of USD {amount:.2f} will be issued.",
        }
    if ctx.user is None:
        return
    member = ctx.membership in ELIGIBLE_MEMBERSHIPS
    cert["member_eligible"] = member
    docs = ctx.backend.fetch_user_reservations(ctx.user_id)
    events = ctx.backend.fetch_events(user_id=ctx.user_id)
    befores = [e["before"] for e in events if e.get("before")]
    flights = ctx.backend.fetch_flights(_segment_numbers([*docs, *befores]))
    allowed: set[float] = set()
    qualifying: list[str] = []
    max_cancelled = max_delayed = 0.0
    for doc in docs:
        rid = str(doc.get("reservation_id", ""))
        r = _reservation_facts(
            doc, flights, [e for e in events if e.get("reservation_id") == rid], ctx.now
        )
        if not (member or r["insurance"] == "yes" or r["cabin"] == "business"):
            continue
        pax = r["passenger_count"]
        if r["ever_cancelled"]:
            value = float(CANCELLED_COMPENSATION_USD * pax)
            allowed.add(value)
            max_cancelled = max(max_cancelled, value)
            qualifying.append(rid)
        # A delay qualifies only once the reservation was changed or cancelled.
        if r["ever_delayed"] and (r["changed"] or r["status"] == "cancelled"):
            value = float(DELAYED_COMPENSATION_USD * pax)
            allowed.add(value)
            max_delayed = max(max_delayed, value)
            qualifying.append(rid)
    cert.update(
        eligible=bool(allowed),
        allowed_amounts=sorted(allowed),
        amount_allowed=amount in allowed,
        max_amount_cancelled=max_cancelled,
        max_amount_delayed=max_delayed,
        issued_count=sum(1 for e in events if e.get("tool") == "send_certificate"),
        qualifying_reservations=sorted(set(qualifying)),
    )


_BUILDERS = {
    "book_reservation": _book,
    "cancel_reservation": _cancel,
    "update_reservation_flights": _update_flights,
    "update_reservation_baggages": _update_bags,
    "update_reservation_passengers": _update_passengers,
    "send_certificate": _send_certificate,
}


# --------------------------------------------------------------------------- helpers


def _s(data: Any, key: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else ""


def _i(data: Any, key: str, default: int = 0) -> int:
    value = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return default


def _refs(items: Any) -> tuple[tuple[pricing.FlightRef, ...], bool]:
    """Return the well-formed flight refs and whether every item was well-formed."""
    if not isinstance(items, list):
        return (), False
    refs, ok = [], True
    for item in items:
        number, day = _s(item, "flight_number"), _s(item, "date")
        if number and day:
            refs.append(pricing.FlightRef(flight_number=number, date=day))
        else:
            ok = False
    return tuple(refs), ok


def _leg(flights: Mapping[str, Mapping[str, Any]], ref: pricing.FlightRef) -> dict[str, str]:
    doc = flights.get(ref.flight_number) or {}
    return {
        "flight_number": ref.flight_number,
        "date": ref.date,
        "origin": str(doc.get("origin", "")),
        "destination": str(doc.get("destination", "")),
        "departure": str(doc.get("scheduled_departure_time_est", "")),
        "arrival": str(doc.get("scheduled_arrival_time_est", "")),
    }


def _at(day: str, clock: str) -> datetime | None:
    """Return ``day`` at ``clock``, or None when either is malformed.

    ``clock`` is ``HH:MM:SS``; a ``+1`` suffix (how the data writes arrivals after midnight)
    means the next day.
    """
    try:
        moment = datetime.strptime(f"{day} {clock.replace('+1', '')}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return moment + timedelta(days=1) if "+1" in clock else moment


def _sequence(
    flights: Mapping[str, Mapping[str, Any]],
    refs: Sequence[pricing.FlightRef],
    legs: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """Return whether the legs, in the order given, form one trip a passenger can fly.

    Each leg must fly on its date, leave from where the previous leg landed, on a date not
    before the previous leg's, and no earlier than the previous leg arrives (``+1`` arrivals
    land the next day, as in ``search_onestop_flight``). A round trip is the same chain: the
    outbound half ends where the return half starts, and the policy checks it ends at the origin.
    The ``*_at`` texts name the first problem for the customer (flight numbers, airports, times).
    """
    missing = next(
        (f"{r.flight_number} on {r.date}" for r in refs
         if not pricing.segment_status(flights, r.flight_number, r.date)),
        "",
    )
    disconnected = dates_bad = times_bad = ""
    for prev, leg in zip(legs, legs[1:], strict=False):
        if not disconnected and prev["destination"] != leg["origin"]:
            disconnected = (
                f"{prev['flight_number']} lands at {prev['destination'] or '?'} but "
                f"{leg['flight_number']} leaves from {leg['origin'] or '?'}"
            )
        if not dates_bad and leg["date"] < prev["date"]:
            dates_bad = (
                f"{leg['flight_number']} on {leg['date']} is before "
                f"{prev['flight_number']} on {prev['date']}"
            )
        landed, leaves = _at(prev["date"], prev["arrival"]), _at(leg["date"], leg["departure"])
        if not times_bad and (landed is None or leaves is None or leaves < landed):
            times_bad = (
                f"{leg['flight_number']} leaves at {leaves or '?'}, before "
                f"{prev['flight_number']} lands at {landed or '?'}"
            )
    known = bool(legs) and not missing
    return {
        "connected": known and _connected(legs),
        "dates_ordered": known and not dates_bad,
        "times_ordered": known and not dates_bad and not times_bad,
        "missing_flight": missing,
        "disconnected_at": disconnected,
        "out_of_order_at": dates_bad or times_bad,
    }


def _connected(legs: Sequence[Mapping[str, str]]) -> bool:
    if not legs or not all(leg["origin"] and leg["destination"] for leg in legs):
        return False
    return all(legs[i]["origin"] == legs[i - 1]["destination"] for i in range(1, len(legs)))


def _matches_endpoints(
    legs: Sequence[Mapping[str, str]], *, origin: str, destination: str, flight_type: str
) -> bool:
    if not legs or legs[0]["origin"] != origin:
        return False
    if flight_type == "one_way":
        return legs[-1]["destination"] == destination and destination != origin
    if flight_type == "round_trip":
        return legs[-1]["destination"] == origin and destination in {
            leg["destination"] for leg in legs
        }
    return False


def _source_of(payment_id: str) -> str:
    for source in ("certificate", "credit_card", "gift_card"):
        if payment_id.startswith(source + "_"):
            return source
    return ""


def _clean(value: Any) -> Any:
    """Return ``value`` as plain JSON types without ``None`` (safety net for CEL)."""
    if isinstance(value, Mapping):
        return {str(k): ("" if v is None else _clean(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value if v is not None]
    if isinstance(value, Decimal):
        return float(value)
    return value
