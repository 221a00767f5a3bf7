"""Payments: charge or refund a payment method and write the payments ledger."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from tools.airline import pricing
from tools.airline.backend.rows import (
    _save_user,
)
from tools.airline.errors import ToolError

__all__: list[str] = []


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
