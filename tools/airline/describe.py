"""Plain-language summaries of airline tool calls, for the customer's confirm and call boxes.

The engine's UI shows these instead of tool names, raw JSON and payment-method ids; staff
still see the raw call. Only code writes these lines (from arguments and computed facts),
never the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe_call", "payment_label"]

_SOURCES = {"credit_card": "credit card", "gift_card": "gift card", "certificate": "travel certificate"}
_CABINS = {"basic_economy": "basic economy", "economy": "economy", "business": "business"}


def payment_label(payment_id: str, method: Mapping[str, Any] | None = None) -> str:
    """Name a payment method as a customer knows it: ``Mastercard ending 1780``, ``gift card``."""
    method = method or {}
    source = str(method.get("source") or next((s for s in _SOURCES if payment_id.startswith(s)), ""))
    if source == "credit_card":
        brand = str(method.get("brand") or "").strip()
        last_four = str(method.get("last_four") or "").strip()
        name = brand.title() if brand else "credit card"
        if brand.lower() == "american_express":
            name = "American Express"
        return f"{name} ending {last_four}" if last_four else name
    return _SOURCES.get(source, "a saved payment method")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _money(facts: Mapping[str, Any]) -> str:
    quote = facts.get("quote") if isinstance(facts.get("quote"), Mapping) else {}
    payment = facts.get("payment") if isinstance(facts.get("payment"), Mapping) else {}
    amount = (quote or {}).get("amount_usd")
    direction = str((quote or {}).get("direction") or "")
    if not isinstance(amount, int | float) or amount <= 0 or direction not in ("charge", "refund"):
        return ""
    verb = "charged to" if direction == "charge" else "refunded to"
    label = str((payment or {}).get("label") or "")
    if direction == "refund" and not label:
        return f"USD {amount:,.2f} refunded to the original payment methods"
    return f"USD {amount:,.2f} {verb} {label or 'your payment method'}"


def describe_call(tool: str, args: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> str:
    """Return one sentence saying what a call does, with the amount and card when facts give them.

    Args:
        tool: The tool name.
        args: The call's arguments (as shown: personal data masked).
        facts: The facts computed for the call (``quote`` and ``payment`` are used), if known.

    Returns:
        A sentence such as ``Add checked bags to reservation VAAOXJ: 4 in total, 2 paid ·
        USD 100.00 charged to Mastercard ending 1780``.
    """
    facts = facts or {}
    res = str(args.get("reservation_id") or "")
    what = {
        "get_user_details": "Look up your profile",
        "get_reservation_details": f"Look up reservation {res}",
        "list_all_airports": "List the airports we serve",
        "search_direct_flight": f"Search direct flights from {args.get('origin')} to "
                                f"{args.get('destination')} on {args.get('date')}",
        "search_onestop_flight": f"Search one-stop flights from {args.get('origin')} to "
                                 f"{args.get('destination')} on {args.get('date')}",
        "get_flight_status": f"Check the status of flight {args.get('flight_number')} on {args.get('date')}",
        "calculate": "Calculate a price",
        "transfer_to_human_agents": "Hand the conversation to a human agent",
        "cancel_reservation": f"Cancel reservation {res}",
        "send_certificate": f"Issue a travel certificate of USD {args.get('amount')}",
    }.get(tool)
    if tool == "update_reservation_baggages":
        what = (f"Set the checked bags of reservation {res} to {args.get('total_baggages')}"
                f" ({args.get('nonfree_baggages')} paid)")
    elif tool == "update_reservation_flights":
        flights = _list(args.get("flights"))
        numbers = ", ".join(str(f.get("flight_number")) for f in flights if isinstance(f, Mapping))
        cabin = _CABINS.get(str(args.get("cabin")), str(args.get("cabin") or ""))
        what = f"Change reservation {res} to flights {numbers} in {cabin}"
    elif tool == "update_reservation_passengers":
        passengers = _list(args.get("passengers"))
        what = f"Update the passengers of reservation {res} ({_plural(len(passengers), 'passenger')})"
    elif tool == "book_reservation":
        passengers = _list(args.get("passengers"))
        cabin = _CABINS.get(str(args.get("cabin")), str(args.get("cabin") or ""))
        what = (f"Book a {str(args.get('flight_type') or '').replace('_', '-')} trip from "
                f"{args.get('origin')} to {args.get('destination')} in {cabin} for "
                f"{_plural(len(passengers), 'passenger')}")
    if what is None:
        what = tool.replace("_", " ").capitalize()
    money = _money(facts)
    return f"{what} · {money}" if money else what
