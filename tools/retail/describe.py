"""Plain-language summaries of retail tool calls, for the customer's confirm and call boxes.

The engine's UI shows these instead of tool names, raw JSON and payment-method ids; staff still
see the raw call. Only code writes these lines (from arguments and computed facts), never the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe_call", "payment_label"]

_SOURCES = {"credit_card": "credit card", "gift_card": "gift card", "paypal": "PayPal"}


def payment_label(payment_id: str, method: Mapping[str, Any] | None = None) -> str:
    """Name a payment method as a customer knows it: ``Visa ending 1780``, ``gift card``, ``PayPal``."""
    method = method or {}
    source = str(method.get("source") or next((s for s in _SOURCES if payment_id.startswith(s)), ""))
    if source == "credit_card":
        brand = str(method.get("brand") or "").strip()
        last_four = str(method.get("last_four") or "").strip()
        name = brand.replace("_", " ").title() if brand else "credit card"
        return f"{name} ending {last_four}" if last_four else name
    return _SOURCES.get(source, "a saved payment method")


def _count(value: Any, word: str) -> str:
    n = len(value) if isinstance(value, list) else 0
    return f"{n} {word}" + ("" if n == 1 else "s")


def _money(facts: Mapping[str, Any]) -> str:
    quote = facts.get("quote") if isinstance(facts.get("quote"), Mapping) else None
    if not quote:
        return ""
    amount, direction = quote.get("amount_usd"), str(quote.get("direction") or "")
    if not isinstance(amount, int | float) or amount <= 0 or direction not in {"charge", "refund", "switch"}:
        return ""
    to = str(quote.get("to") or "your payment method")
    settles = str(quote.get("settles") or "")
    if direction == "switch":
        return f"USD {amount:,.2f} paid with {to} instead, the original payment refunded"
    verb = "charged to" if direction == "charge" else "refunded to"
    return f"USD {amount:,.2f} {verb} {to}" + (f" {settles}" if settles else "")


def describe_call(tool: str, args: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> str:
    """Return one sentence saying what a call does, with the amount and method when facts give them.

    Args:
        tool: The tool name.
        args: The call's arguments (as shown: personal data masked).
        facts: The facts computed for the call (``quote`` is used), if known.

    Returns:
        A sentence such as ``Return 1 item of order #W7736708 · USD 54.04 refunded to Visa
        ending 1780 when the items are received``.
    """
    facts = facts or {}
    order = str(args.get("order_id") or "")
    what = {
        "find_user_id_by_email": "Find your account by e-mail",
        "find_user_id_by_name_zip": "Find your account by name and zip code",
        "get_user_details": "Look up your profile",
        "get_order_details": f"Look up order {order}",
        "get_product_details": f"Look up product {args.get('product_id')}",
        "get_item_details": f"Look up item {args.get('item_id')}",
        "list_all_product_types": "List the store's products",
        "calculate": "Calculate an amount",
        "transfer_to_human_agents": "Hand the conversation to a human agent",
        "cancel_pending_order": f"Cancel order {order} ({args.get('reason')})",
        "modify_pending_order_address": f"Change the shipping address of order {order}",
        "modify_pending_order_payment": f"Change how order {order} is paid",
        "modify_user_address": "Change your default address",
        "modify_pending_order_items": f"Change {_count(args.get('item_ids'), 'item')} of order {order}",
        "return_delivered_order_items": f"Return {_count(args.get('item_ids'), 'item')} of order {order}",
        "exchange_delivered_order_items": f"Exchange {_count(args.get('item_ids'), 'item')} of order {order}",
    }.get(tool) or tool.replace("_", " ").capitalize()
    money = _money(facts)
    return f"{what} · {money}" if money else what
