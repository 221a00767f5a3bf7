"""Facts for the retail guardrails: what code knows about a tool call, read from the database.

:func:`compute_facts` returns a plain-JSON dict that CEL conditions see as ``facts``. Every
section is always present (neutral defaults when it does not apply), values are never
``None``, and a missing or forged order, item or payment method gives ``exists: false``-style
facts instead of an exception, so the policy can deny. Amounts come from the same functions
the backend moves money with (:mod:`tools.retail.backend`).

Facts hold no names, e-mail addresses or street addresses, so they can be audited as they are;
of an order the signed-in customer does not own, they say only that it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from pydantic import ValidationError

from graph.domain import describe_validation_error
from tools.retail.backend import item_changes, items_present, money, net_paid, original_method, return_amount
from tools.retail.describe import payment_label
from tools.retail.schemas import RETAIL_TOOLS

__all__ = ["FactsSource", "compute_facts", "default_facts"]

_DIRECTION_TEXT = {"charge": "charged to", "refund": "refunded to", "switch": "moved to", "none": "no charge on"}


class FactsSource(Protocol):
    """The read side of :class:`tools.retail.backend.RetailBackend` that facts need."""

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return a user document or None."""
        ...

    def fetch_order(self, order_id: str) -> dict[str, Any] | None:
        """Return an order document or None."""
        ...

    def fetch_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return catalogue rows by item id."""
        ...

    def find_users(self, *, email: str | None = None, first_name: str | None = None,
                   last_name: str | None = None, zip_code: str | None = None) -> list[str]:
        """Return matching user ids."""
        ...

    def fetch_events(self, *, user_id: str | None = None, order_id: str | None = None) -> list[dict[str, Any]]:
        """Return write events, oldest first."""
        ...

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return the customer's recent money movements and returns."""
        ...


def _quote_defaults() -> dict[str, Any]:
    return {"amount_usd": 0.0, "direction": "none", "direction_text": "no charge on", "currency": "USD",
            "amount_text": "0.00", "to": "", "settles": "", "summary": "No payment is involved."}


def _order_defaults(order_id: str = "") -> dict[str, Any]:
    return {
        "order_id": order_id, "exists": False, "owned": False, "status": "", "pending": False,
        "items_modified": False, "delivered": False, "item_count": 0, "total_usd": 0.0,
        "original_payment_method": "", "payment_count": 0, "single_payment": False,
        "returned_or_exchanged": False, "writes": 0,
    }


def _payment_defaults(method_id: str = "") -> dict[str, Any]:
    return {"id": method_id, "label": "", "exists_in_profile": False, "source": "", "is_gift_card": False,
            "balance": 0.0, "is_original": False, "covers_quote": False}


def _window_defaults() -> dict[str, Any]:
    return {"charged_usd_24h": 0.0, "refunded_usd_24h": 0.0, "charged_usd_conversation": 0.0,
            "refunded_usd_conversation": 0.0, "returns_30d": 0, "exchanges_30d": 0}


def default_facts() -> dict[str, Any]:
    """Return a facts dict with every section present and neutral values (the shape rules are checked on)."""
    return {
        "tool": "",
        "known_tool": False,
        "write": False,
        "authenticated": False,
        "args_valid": False,
        "args_error": "",
        "conversation": {"customer_disputes": False, "user_ids_mentioned": []},
        "user": {"user_id": "", "exists": False, "payment_method_ids": [], "order_ids": [], "gift_card_ids": []},
        "args_user_id": "",
        "has_user_arg": False,
        "args_user_matches": False,
        "lookup": {"found": False, "matches_signed_in": False},
        "order": _order_defaults(),
        "items": {
            "listed_count": 0, "new_count": 0, "all_in_order": False, "counts_match": False,
            "all_new_exist": False, "all_same_product": False, "all_available": False, "all_different": False,
            "problem": "",
        },
        "payment": _payment_defaults(),
        "quote": _quote_defaults(),
        "window": _window_defaults(),
    }


def compute_facts(
    backend: FactsSource,
    tool: str,
    args: Mapping[str, Any] | None,
    *,
    user_id: str | None,
    conversation: Mapping[str, Any] | None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """Compute everything a CEL guardrail may need about one retail tool call.

    Args:
        backend: The retail backend (only its reads are used), or reads on a locked cursor.
        tool: The tool the model asked for.
        args: The arguments the model sent (untrusted; may be malformed).
        user_id: The authenticated customer from the runtime context, never the model's word.
        conversation: What the graph derived from the customer's own messages
            (``user_ids_mentioned``) and what the customer answered (``customer_disputes``).
        conversation_id: The thread, for the ``window`` sums of this conversation.

    Returns:
        The facts dict; see :func:`default_facts` for every field.
    """
    raw: dict[str, Any] = dict(args) if isinstance(args, Mapping) else {}
    facts = default_facts()
    spec = RETAIL_TOOLS.get(tool)
    conv = conversation if isinstance(conversation, Mapping) else {}
    mentioned = conv.get("user_ids_mentioned")
    facts.update(
        tool=tool, known_tool=spec is not None, write=bool(spec and spec.write), authenticated=bool(user_id),
        conversation={
            "customer_disputes": conv.get("customer_disputes") is True,
            "user_ids_mentioned": [m for m in mentioned if isinstance(m, str)]
            if isinstance(mentioned, list | tuple) else [],
        },
    )
    if spec is not None:
        try:
            spec.args_schema.model_validate(raw)
            facts["args_valid"] = True
        except ValidationError as exc:
            facts["args_error"] = describe_validation_error(exc)
    else:
        facts["args_error"] = f"unknown tool {tool}"

    user = backend.fetch_user(user_id) if user_id else None
    methods: Mapping[str, Any] = (user or {}).get("payment_methods") or {}
    facts["user"] = {
        "user_id": user_id or "", "exists": user is not None,
        "payment_method_ids": sorted(methods),
        "order_ids": [str(o) for o in (user or {}).get("orders", [])],
        "gift_card_ids": sorted(k for k, m in methods.items() if m.get("source") == "gift_card"),
    }
    if user is not None and user_id and spec is not None and spec.write:
        window = backend.fetch_window(user_id=user_id, conversation_id=conversation_id)
        facts["window"] = {**_window_defaults(), **window}
    fields = spec.args_schema.model_fields if spec is not None else {}
    args_user = _s(raw, "user_id")
    facts["args_user_id"] = args_user
    facts["has_user_arg"] = "user_id" in fields
    facts["args_user_matches"] = (bool(user_id) and args_user == user_id) if "user_id" in fields else True

    if tool == "find_user_id_by_email":
        found = backend.find_users(email=_s(raw, "email")) if _s(raw, "email") else []
        facts["lookup"] = {"found": bool(found), "matches_signed_in": bool(user_id) and found[:1] == [user_id]}
    elif tool == "find_user_id_by_name_zip":
        found = backend.find_users(first_name=_s(raw, "first_name"), last_name=_s(raw, "last_name"),
                                   zip_code=_s(raw, "zip")) if _s(raw, "zip") else []
        facts["lookup"] = {"found": bool(found), "matches_signed_in": bool(user_id) and found[:1] == [user_id]}

    order: dict[str, Any] | None = None
    if "order_id" in fields:
        order_id = _s(raw, "order_id")
        doc = backend.fetch_order(order_id) if order_id else None
        if doc is None:
            facts["order"] = _order_defaults(order_id)
        elif not (user_id and doc.get("user_id") == user_id):
            # Another customer's order: say only that it exists and is not theirs.
            facts["order"] = {**_order_defaults(order_id), "exists": True}
        else:
            order = doc
            facts["order"] = _order_facts(doc, backend.fetch_events(order_id=order_id))
    if "payment_method_id" in fields:
        facts["payment"] = _payment_facts(methods, _s(raw, "payment_method_id"), order)

    if order is not None:
        _BUILDERS.get(tool, _no_builder)(backend, order, raw, facts)
    return _clean(facts)


def _order_facts(doc: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    status = str(doc.get("status", ""))
    items = [i for i in doc.get("items", []) if isinstance(i, Mapping)]
    history = [p for p in doc.get("payment_history", []) if isinstance(p, Mapping)]
    return {
        "order_id": str(doc.get("order_id", "")),
        "exists": True,
        "owned": True,
        "status": status,
        "pending": status == "pending",
        "items_modified": status == "pending (item modified)",
        "delivered": status == "delivered",
        "item_count": len(items),
        "total_usd": float(sum((money(i.get("price", 0)) for i in items), Decimal(0))),
        "original_payment_method": original_method(doc),
        "payment_count": len(history),
        "single_payment": len(history) == 1 and history[0].get("transaction_type") == "payment",
        "returned_or_exchanged": status in {"return requested", "exchange requested"},
        "writes": len(events),
    }


def _payment_facts(methods: Mapping[str, Any], method_id: str, order: Mapping[str, Any] | None) -> dict[str, Any]:
    method = methods.get(method_id)
    if not isinstance(method, Mapping):
        return {**_payment_defaults(method_id), "label": payment_label(method_id)}
    source = str(method.get("source", ""))
    return {
        "id": method_id,
        "label": payment_label(method_id, method),
        "exists_in_profile": True,
        "source": source,
        "is_gift_card": source == "gift_card",
        "balance": float(money(method.get("balance", 0))) if source == "gift_card" else 0.0,
        "is_original": order is not None and original_method(order) == method_id,
        "covers_quote": True,
    }


def _set_quote(facts: dict[str, Any], signed: Decimal, *, to: str, settles: str, summary: str) -> None:
    direction = "charge" if signed > 0 else "refund" if signed < 0 else "none"
    amount = abs(signed)
    facts["quote"] = {
        "amount_usd": float(amount), "direction": direction, "direction_text": _DIRECTION_TEXT[direction],
        "currency": "USD", "amount_text": f"{amount:.2f}", "to": to, "settles": settles, "summary": summary,
    }


def _covers(facts: dict[str, Any]) -> None:
    """A gift card must hold at least the amount charged to it (τ²'s balance check)."""
    payment, quote = facts["payment"], facts["quote"]
    charged = quote["amount_usd"] if quote["direction"] in {"charge", "switch"} else 0.0
    payment["covers_quote"] = payment["exists_in_profile"] and (
        not payment["is_gift_card"] or money(payment["balance"]) >= money(charged))


def _no_builder(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any], facts: dict[str, Any]) -> None:
    return None


def _cancel(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any], facts: dict[str, Any]) -> None:
    refunds = net_paid(order)
    total = sum((a for _, a in refunds), Decimal(0))
    methods = (backend.fetch_user(str(order.get("user_id", ""))) or {}).get("payment_methods") or {}
    labels = [payment_label(m, methods.get(m)) for m, _ in refunds]
    gift_only = bool(refunds) and all((methods.get(m) or {}).get("source") == "gift_card" for m, _ in refunds)
    settles = "immediately" if gift_only else "in 5-7 business days"
    _set_quote(facts, -total, to=" and ".join(labels) or "the original payment method", settles=settles,
               summary=f"USD {total:.2f} will be refunded to {' and '.join(labels) or 'the original payment method'}"
               f" {settles}.")


def _changes(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any], facts: dict[str, Any],
             *, settles: str) -> None:
    old, new = _ids(raw.get("item_ids")), _ids(raw.get("new_item_ids"))
    changes = item_changes(order, old, new, backend.fetch_items(new))
    in_order = items_present(order, old)
    problem = ""
    for c in changes:
        if c.index < 0:
            problem = f"item {c.old_item_id} is not in order {order.get('order_id')}"
        elif not c.different:
            problem = f"item {c.new_item_id} is the item already ordered"
        elif not (c.new_exists and c.same_product):
            problem = f"item {c.new_item_id} is not another option of the same product as {c.old_item_id}"
        elif not c.available:
            problem = f"item {c.new_item_id} is not available"
        if problem:
            break
    facts["items"] = {
        "listed_count": len(old), "new_count": len(new), "all_in_order": bool(old) and in_order,
        "counts_match": bool(old) and len(old) == len(new),
        "all_new_exist": bool(changes) and all(c.new_exists for c in changes),
        "all_same_product": bool(changes) and all(c.same_product for c in changes),
        "all_available": bool(changes) and all(c.available for c in changes),
        "all_different": bool(changes) and all(c.different for c in changes),
        "problem": problem or ("" if len(old) == len(new) else "the lists of items and new items differ in length"),
    }
    diff = sum((c.new_price - c.old_price for c in changes), Decimal(0))
    label = facts["payment"]["label"] or "the payment method given"
    what = "charged to" if diff > 0 else "refunded to"
    summary = "No price difference." if diff == 0 else f"Price difference: USD {abs(diff):.2f} {what} {label}."
    _set_quote(facts, diff, to=label, settles=settles if diff != 0 else "", summary=summary)
    _covers(facts)


def _modify_items(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any],
                  facts: dict[str, Any]) -> None:
    gift = facts["payment"]["is_gift_card"]
    _changes(backend, order, raw, facts, settles="immediately" if gift else "in 5-7 business days")


def _exchange(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any], facts: dict[str, Any]) -> None:
    _changes(backend, order, raw, facts, settles="when the items are received")


def _return(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any], facts: dict[str, Any]) -> None:
    old = _ids(raw.get("item_ids"))
    in_order = items_present(order, old)
    facts["items"] = {**facts["items"], "listed_count": len(old), "all_in_order": bool(old) and in_order,
                      "problem": "" if in_order else f"some items are not in order {order.get('order_id')}"}
    amount = return_amount(order, old) if in_order else Decimal(0)
    label = facts["payment"]["label"] or "the payment method given"
    _set_quote(facts, -amount, to=label, settles="when the items are received",
               summary=f"USD {amount:.2f} will be refunded to {label} once the items are received.")
    _covers(facts)


def _payment_switch(backend: FactsSource, order: Mapping[str, Any], raw: Mapping[str, Any],
                    facts: dict[str, Any]) -> None:
    history = [p for p in order.get("payment_history", []) if isinstance(p, Mapping)]
    amount = money(history[0].get("amount", 0)) if history else Decimal(0)
    label = facts["payment"]["label"] or "the payment method given"
    facts["quote"] = {
        "amount_usd": float(amount), "direction": "switch", "direction_text": _DIRECTION_TEXT["switch"],
        "currency": "USD", "amount_text": f"{amount:.2f}", "to": label, "settles": "immediately",
        "summary": f"USD {amount:.2f} will be paid with {label} and refunded to the original payment method.",
    }
    _covers(facts)


_BUILDERS = {
    "cancel_pending_order": _cancel,
    "modify_pending_order_items": _modify_items,
    "exchange_delivered_order_items": _exchange,
    "return_delivered_order_items": _return,
    "modify_pending_order_payment": _payment_switch,
}


def _s(data: Any, key: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, str) else ""


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _clean(value: Any) -> Any:
    """Return ``value`` as plain JSON types without ``None`` (safety net for CEL)."""
    if isinstance(value, Mapping):
        return {str(k): ("" if v is None else _clean(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value if v is not None]
    if isinstance(value, Decimal):
        return float(value)
    return value
