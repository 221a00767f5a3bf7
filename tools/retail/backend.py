"""The retail backend: τ²-bench retail tool semantics over Postgres, with a refund/payment ledger.

Every write runs in one transaction that locks the rows it changes (the order, then the
customer, then the customer's payment methods, always in that order), appends one
``retail_ledger`` row per charge or refund it decides, records a ``retail_events`` row, and,
given an idempotency key, claims it in ``retail_write_requests`` first: a retried or concurrent
call with the same key waits for the first and returns its stored result
(``status: "deduplicated"``) without moving money again.

Amounts are computed here from the database (item prices, the order's payment history) in
``Decimal`` cents, never taken from the caller. Differences from τ² (each refuses or corrects
something τ² gets wrong; none changes a result τ²'s tasks expect):

* ``modify_pending_order_items`` gives each changed item its own new variant's price and
  options (τ² copies the last variant's onto every changed item);
* ``cancel_pending_order`` refunds, per payment method, what was paid net of earlier refunds
  (τ² refunds every history entry again, refunds included);
* an exchange must change each item (τ² accepts exchanging an item for itself, which only
  opens a return); like τ²'s items change, it refuses a new id equal to the old one;
* payment methods are looked up in the order owner's profile, as in τ², so another customer's
  method is "not found" in every write.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import operator
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from graph.write_fence import DEFAULT_IDEMPOTENCY_TTL, FENCED, Body, WriteRequests
from graph.write_fence import WriteHooks as _WriteHooks
from tools.retail.errors import ToolError
from tools.retail.schemas import CANCEL_REASONS, RETAIL_TOOLS, parse_args

__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL",
    "FENCED",
    "CursorReads",
    "ItemChange",
    "RetailBackend",
    "WriteHooks",
    "item_changes",
    "items_present",
    "money",
    "net_paid",
    "original_method",
    "return_amount",
]

_CENT = Decimal("0.01")
_CALC_CHARS = frozenset("0123456789+-*/(). ")
_CALC_BINOPS: Mapping[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_CALC_UNARY: Mapping[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}



def money(value: Any) -> Decimal:
    """Return ``value`` as Decimal cents (half up).

    Raises:
        ToolError: On anything that is not a finite number.
    """
    if isinstance(value, bool):
        raise ToolError("Invalid amount")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ToolError("Invalid amount") from exc
    if not amount.is_finite():
        raise ToolError("Invalid amount")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def _num(amount: Decimal) -> float:
    """Return cents as the JSON number the τ² documents use."""
    return float(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemChange:
    """One (old item -> new item) pair of an items change, checked against the order and catalogue.

    Attributes:
        index: Position in the order's item list (-1: not found there).
        old_item_id: The item the customer has.
        new_item_id: The item wanted instead.
        product_id: The old item's product ("" when the old item is not in the order).
        old_price: What was paid for it.
        new_price: The new item's catalogue price (0 when unknown).
        new_exists: The new item is in the catalogue.
        same_product: The new item is a variant of the same product.
        available: The new item is in stock.
        different: The new item differs from the old one.
    """

    index: int
    old_item_id: str
    new_item_id: str
    product_id: str
    old_price: Decimal
    new_price: Decimal
    new_exists: bool
    same_product: bool
    available: bool
    different: bool

    @property
    def ok(self) -> bool:
        """Return True when the change is allowed (in the order, same product, in stock, different)."""
        return self.index >= 0 and self.new_exists and self.same_product and self.available and self.different


def item_changes(
    order: Mapping[str, Any], item_ids: Sequence[str], new_item_ids: Sequence[str],
    catalogue: Mapping[str, Mapping[str, Any]],
) -> list[ItemChange]:
    """Pair each old item with its new item, in order; each old id takes the next unused order line.

    ``catalogue`` maps item ids to ``{product_id, price, available, options}`` rows.
    """
    lines = [i for i in order.get("items", []) if isinstance(i, Mapping)]
    used: set[int] = set()
    changes: list[ItemChange] = []
    for old_id, new_id in zip(item_ids, new_item_ids, strict=False):
        index = next((n for n, line in enumerate(lines) if n not in used and line.get("item_id") == old_id), -1)
        if index >= 0:
            used.add(index)
        line = lines[index] if index >= 0 else {}
        new = catalogue.get(new_id)
        product_id = str(line.get("product_id", ""))
        changes.append(ItemChange(
            index=index, old_item_id=old_id, new_item_id=new_id, product_id=product_id,
            old_price=money(line.get("price", 0)),
            new_price=money(new["price"]) if new else Decimal(0),
            new_exists=new is not None,
            same_product=new is not None and bool(product_id) and new.get("product_id") == product_id,
            available=bool(new and new.get("available")),
            different=old_id != new_id,
        ))
    return changes


def items_present(order: Mapping[str, Any], item_ids: Sequence[str]) -> bool:
    """Return True when the order holds every listed item, counting repeats."""
    have = Counter(str(i.get("item_id")) for i in order.get("items", []) if isinstance(i, Mapping))
    want = Counter(item_ids)
    return all(have[k] >= n for k, n in want.items())


class CursorReads:
    """The facts-side reads on one cursor: a snapshot outside a transaction, locked rows inside one."""

    def __init__(self, cur: Cursor[DictRow]) -> None:
        self.cur = cur
        self.lock = False

    def lock_scope(self, *, order_id: str | None, user_ids: Iterable[str]) -> None:
        """Lock what a write decides on, in the writes' global order (order, users, payment methods).

        Every later read on this cursor also locks (``FOR UPDATE``), so the facts recomputed
        here cannot change before the transaction commits.
        """
        self.lock = True
        owners = list(user_ids)
        if order_id:
            order = _order(self.cur, order_id, lock=True)
            if order is not None:
                owners.append(str(order.get("user_id", "")))
        for user_id in sorted({u for u in owners if u}):
            self.cur.execute("SELECT 1 FROM retail_users WHERE user_id = %s FOR UPDATE", (user_id,))
            self.cur.execute(
                "SELECT 1 FROM retail_payment_methods WHERE user_id = %s ORDER BY payment_method_id FOR UPDATE",
                (user_id,),
            )

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the τ² user document (payment methods and balances included), or None."""
        return _user(self.cur, user_id, lock=self.lock)

    def fetch_order(self, order_id: str) -> dict[str, Any] | None:
        """Return the τ² order document, or None."""
        return _order(self.cur, order_id, lock=self.lock)

    def fetch_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return catalogue rows ``{product_id, options, available, price}`` by item id (unknown left out)."""
        return _items(self.cur, sorted({i for i in item_ids if isinstance(i, str)}))

    def find_users(self, *, email: str | None = None, first_name: str | None = None,
                   last_name: str | None = None, zip_code: str | None = None) -> list[str]:
        """Return the user ids matching an e-mail, or a name and zip code (case-insensitive names)."""
        if email is not None:
            self.cur.execute("SELECT user_id FROM retail_users WHERE lower(email) = lower(%s) ORDER BY user_id",
                             (email,))
        else:
            self.cur.execute(
                "SELECT user_id FROM retail_users WHERE doc->'address'->>'zip' = %s"
                " AND lower(doc->'name'->>'first_name') = lower(%s) AND lower(doc->'name'->>'last_name') = lower(%s)"
                " ORDER BY user_id",
                (zip_code, first_name, last_name),
            )
        return [str(r["user_id"]) for r in self.cur.fetchall()]

    def fetch_events(self, *, user_id: str | None = None, order_id: str | None = None) -> list[dict[str, Any]]:
        """Return the write events of a user or an order, oldest first."""
        column, value = ("order_id", order_id) if order_id else ("user_id", user_id)
        if value is None:
            return []
        self.cur.execute(
            f"SELECT user_id, order_id, tool, created_at FROM retail_events WHERE {column} = %s ORDER BY id",
            (value,),
        )
        return [dict(r) for r in self.cur.fetchall()]

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return money charged and refunded to the customer, and returns requested, recently.

        Two windows: the last 24 hours (wall clock, as the ledger records it) and this
        conversation; plus returns and exchanges requested in the last 30 days. Splitting a
        request into several calls changes none of these sums.
        """
        self.cur.execute(
            "SELECT"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge' AND created_at > now() - interval '24 hours'), 0)"
            "   AS charged_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund' AND created_at > now() - interval '24 hours'), 0)"
            "   AS refunded_24h,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'charge' AND conversation_id = %(c)s), 0) AS charged_conv,"
            " coalesce(sum(amount_usd) FILTER (WHERE kind = 'refund' AND conversation_id = %(c)s), 0) AS refunded_conv"
            " FROM retail_ledger WHERE user_id = %(u)s",
            {"u": user_id, "c": conversation_id or ""},
        )
        money_row = self.cur.fetchone() or {}
        self.cur.execute(
            "SELECT count(*) FILTER (WHERE tool = 'return_delivered_order_items') AS returns,"
            " count(*) FILTER (WHERE tool = 'exchange_delivered_order_items') AS exchanges"
            " FROM retail_events WHERE user_id = %s AND created_at > now() - interval '30 days'",
            (user_id,),
        )
        events_row = self.cur.fetchone() or {}
        return {
            "charged_usd_24h": float(money_row.get("charged_24h", 0)),
            "refunded_usd_24h": float(money_row.get("refunded_24h", 0)),
            "charged_usd_conversation": float(money_row.get("charged_conv", 0)),
            "refunded_usd_conversation": float(money_row.get("refunded_conv", 0)),
            "returns_30d": int(events_row.get("returns", 0)),
            "exchanges_30d": int(events_row.get("exchanges", 0)),
        }

    def state_version(self, *, user_id: str | None = None, order_id: str | None = None) -> int:
        """Return a number that grows with every write to the order (or the user): the last event id."""
        column, value = ("order_id", order_id) if order_id else ("user_id", user_id)
        if value is None:
            return 0
        self.cur.execute(f"SELECT coalesce(max(id), 0) AS v FROM retail_events WHERE {column} = %s", (value,))
        row = self.cur.fetchone()
        return int(row["v"]) if row else 0


#: What a guarded write does in its own transaction besides the change (verify on these reads, record).
WriteHooks = _WriteHooks[CursorReads]
# The store's write requests; a write tags its ledger and event rows with the conversation.
_WRITE_REQUESTS = WriteRequests("retail_write_requests", error=ToolError, tagged=("retail_ledger", "retail_events"))


class RetailBackend:
    """The τ² retail tools over Postgres (see the module docstring for the guarantees).

    Args:
        pool: The application's pool.
        idempotency_ttl: How long (wall clock) an executed key keeps answering ``deduplicated``;
            matches the policy's idempotency ``ttl``.
    """

    def __init__(self, *, pool: ConnectionPool, idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL) -> None:
        self._pool = pool
        self._ttl = idempotency_ttl

    # ------------------------------------------------------------------ dispatch

    def call(self, tool: str, args: Mapping[str, Any] | None, *,
             idempotency_key: str | None = None, hooks: WriteHooks | None = None) -> Any:
        """Validate ``args`` against the tool's schema and run the tool.

        Raises:
            ToolError: On unknown tools, invalid arguments and refused requests.
        """
        model = parse_args(tool, args)
        kwargs = model.model_dump()
        if RETAIL_TOOLS[tool].write:
            kwargs["idempotency_key"] = idempotency_key
            kwargs["hooks"] = hooks
        method: Callable[..., Any] = getattr(self, tool)
        return method(**kwargs)

    # ------------------------------------------------------------------ snapshot reads

    def reads(self) -> AbstractContextManager[CursorReads]:
        """Return a context with :class:`CursorReads` on one snapshot connection."""
        return _reads(self._pool)

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the user document, or None."""
        with self.reads() as r:
            return r.fetch_user(user_id)

    def fetch_order(self, order_id: str) -> dict[str, Any] | None:
        """Return the order document, or None."""
        with self.reads() as r:
            return r.fetch_order(order_id)

    def fetch_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return catalogue rows by item id."""
        with self.reads() as r:
            return r.fetch_items(item_ids)

    def find_users(self, **kwargs: Any) -> list[str]:
        """Return the user ids matching an e-mail or a name and zip (see :meth:`CursorReads.find_users`)."""
        with self.reads() as r:
            return r.find_users(**kwargs)

    def fetch_events(self, *, user_id: str | None = None, order_id: str | None = None) -> list[dict[str, Any]]:
        """Return write events, oldest first."""
        with self.reads() as r:
            return r.fetch_events(user_id=user_id, order_id=order_id)

    def fetch_window(self, *, user_id: str, conversation_id: str | None) -> dict[str, Any]:
        """Return the customer's recent money movements and returns."""
        with self.reads() as r:
            return r.fetch_window(user_id=user_id, conversation_id=conversation_id)

    def state_version(self, *, user_id: str | None = None, order_id: str | None = None) -> int:
        """Return the last event id of the order (or the user)."""
        with self.reads() as r:
            return r.state_version(user_id=user_id, order_id=order_id)

    def reconcile(self, idempotency_key: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """Settle a write whose outcome is unknown: return its stored result, or fence the key off.

        The fence inserts the key as ``fenced``; if the original attempt is still in flight the
        insert waits for it (up to ``wait`` seconds). A commit means the write happened and
        its result is returned; otherwise the fence wins and a late attempt changes nothing.

        Raises:
            ToolError: When the in-flight attempt did not finish within ``wait``.
        """
        return _WRITE_REQUESTS.fence(self._pool, idempotency_key, wait=wait)

    # ------------------------------------------------------------------ read tools

    def find_user_id_by_email(self, *, email: str) -> str:
        """Return the user id of the account with this e-mail.

        Raises:
            ToolError: If no account has it.
        """
        found = self.find_users(email=email)
        if not found:
            raise ToolError("User not found")
        return found[0]

    def find_user_id_by_name_zip(self, *, first_name: str, last_name: str, zip: str) -> str:
        """Return the user id of the account with this name and zip code.

        Raises:
            ToolError: If no account matches.
        """
        found = self.find_users(first_name=first_name, last_name=last_name, zip_code=zip)
        if not found:
            raise ToolError("User not found")
        return found[0]

    def get_user_details(self, *, user_id: str) -> dict[str, Any]:
        """Return the user's profile.

        Raises:
            ToolError: If the user does not exist.
        """
        user = self.fetch_user(user_id)
        if user is None:
            raise ToolError("User not found")
        return user

    def get_order_details(self, *, order_id: str) -> dict[str, Any]:
        """Return the order.

        Raises:
            ToolError: If the order does not exist.
        """
        order = self.fetch_order(order_id)
        if order is None:
            raise ToolError("Order not found")
        return order

    def get_product_details(self, *, product_id: str) -> dict[str, Any]:
        """Return the product with its variants by item id.

        Raises:
            ToolError: If the product does not exist.
        """
        with self.reads() as r:
            r.cur.execute("SELECT product_id, name FROM retail_products WHERE product_id = %s", (product_id,))
            row = r.cur.fetchone()
            if row is None:
                raise ToolError("Product not found")
            r.cur.execute(
                "SELECT item_id, options, available, price FROM retail_items WHERE product_id = %s ORDER BY position",
                (product_id,),
            )
            variants = {v["item_id"]: _variant(v) for v in r.cur.fetchall()}
        return {"name": row["name"], "product_id": row["product_id"], "variants": variants}

    def get_item_details(self, *, item_id: str) -> dict[str, Any]:
        """Return one variant item.

        Raises:
            ToolError: If the item does not exist.
        """
        items = self.fetch_items([item_id])
        if item_id not in items:
            raise ToolError("Item not found")
        return _variant({"item_id": item_id, **items[item_id]})

    def list_all_product_types(self) -> dict[str, str]:
        """Return product names mapped to product ids, sorted by name."""
        with self.reads() as r:
            r.cur.execute("SELECT name, product_id FROM retail_products ORDER BY name")
            return {row["name"]: row["product_id"] for row in r.cur.fetchall()}

    def calculate(self, *, expression: str) -> str:
        """Evaluate simple arithmetic without ``eval`` and return it rounded to 2 decimals.

        Raises:
            ToolError: On other characters or constructs, division by zero or overflow.
        """
        if not expression.strip() or any(c not in _CALC_CHARS for c in expression):
            raise ToolError("Invalid characters in expression")
        try:
            return str(round(_calc(ast.parse(expression, mode="eval").body), 2))
        except ZeroDivisionError as exc:
            raise ToolError("Division by zero") from exc
        except (SyntaxError, OverflowError, RecursionError, ValueError) as exc:
            raise ToolError("Invalid expression") from exc

    def transfer_to_human_agents(self, *, summary: str) -> str:
        """Hand the conversation to a human agent."""
        return "Transfer successful"

    # ------------------------------------------------------------------ write tools

    def cancel_pending_order(
        self, *, order_id: str, reason: str, idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Cancel a pending order and refund what was paid, per payment method, to that method.

        A gift card is credited at once; other methods are refunded in 5 to 7 business days.

        Raises:
            ToolError: On an unknown order, an order that is not ``pending`` or an invalid reason.
        """
        tool = "cancel_pending_order"
        if reason not in CANCEL_REASONS:
            raise ToolError("Invalid reason")

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if order.get("status") != "pending":
                raise ToolError("Non-pending order cannot be cancelled")
            before = _copy(order)
            user_id = str(order["user_id"])
            methods = _methods(cur, user_id, lock=True)
            refunds = net_paid(order)
            entries: list[str] = []
            history = order.setdefault("payment_history", [])
            for method_id, amount in refunds:
                history.append({"transaction_type": "refund", "amount": _num(amount), "payment_method_id": method_id})
                method = methods.get(method_id)
                if method is not None and method["source"] == "gift_card":
                    _set_balance(cur, method_id, money(method["balance"]) + amount)
                entries.append(_ledger(cur, kind="refund", amount=amount, method_id=method_id, user_id=user_id,
                                       order_id=order_id, tool=tool, key=key,
                                       settles=_settles(methods.get(method_id))))
            order["status"] = "cancelled"
            order["cancel_reason"] = reason
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=order_id, before=before, after=order)
            total = sum((a for _, a in refunds), Decimal(0))
            return _result(tool, "cancelled", order, -total, entries)

        return self._write(tool, idempotency_key, body, hooks)

    def modify_pending_order_address(
        self, *, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str,
        idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order.

        Raises:
            ToolError: On an unknown order or one that is not pending.
        """
        tool = "modify_pending_order_address"
        address = _address(address1, address2, city, state, country, zip)

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if "pending" not in str(order.get("status")):
                raise ToolError("Non-pending order cannot be modified")
            before = _copy(order)
            order["address"] = address
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=str(order["user_id"]), order_id=order_id,
                   before=before, after=order)
            return _result(tool, "updated", order, Decimal(0), [])

        return self._write(tool, idempotency_key, body, hooks)

    def modify_pending_order_payment(
        self, *, order_id: str, payment_method_id: str, idempotency_key: str | None = None,
        hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Pay a pending order with another of the owner's methods and refund the original one.

        Raises:
            ToolError: On an unknown order or method, an order that is not pending or has more
                than its one payment, the same method, or a gift card short of the total.
        """
        tool = "modify_pending_order_payment"

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if "pending" not in str(order.get("status")):
                raise ToolError("Non-pending order cannot be modified")
            user_id = str(order["user_id"])
            methods, new = _locked_method(cur, user_id, payment_method_id)
            history = order.setdefault("payment_history", [])
            if len(history) != 1 or history[0].get("transaction_type") != "payment":
                raise ToolError("There should be exactly one payment for a pending order")
            old_id = str(history[0].get("payment_method_id"))
            if old_id == payment_method_id:
                raise ToolError("The new payment method should be different from the current one")
            amount = money(history[0].get("amount"))
            if new["source"] == "gift_card" and money(new["balance"]) < amount:
                raise ToolError("Insufficient gift card balance to pay for the order")
            before = _copy(order)
            history.append({"transaction_type": "payment", "amount": _num(amount),
                            "payment_method_id": payment_method_id})
            history.append({"transaction_type": "refund", "amount": _num(amount), "payment_method_id": old_id})
            if new["source"] == "gift_card":
                _set_balance(cur, payment_method_id, money(new["balance"]) - amount)
            old = methods.get(old_id)
            if old is not None and old["source"] == "gift_card":
                _set_balance(cur, old_id, money(old["balance"]) + amount)
            entries = []
            if amount > 0:
                entries = [
                    _ledger(cur, kind="charge", amount=amount, method_id=payment_method_id, user_id=user_id,
                            order_id=order_id, tool=tool, key=key, settles="immediately"),
                    _ledger(cur, kind="refund", amount=amount, method_id=old_id, user_id=user_id,
                            order_id=order_id, tool=tool, key=key, settles=_settles(old)),
                ]
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=order_id, before=before, after=order)
            return _result(tool, "updated", order, Decimal(0), entries, amount_usd=amount)

        return self._write(tool, idempotency_key, body, hooks)

    def modify_pending_order_items(
        self, *, order_id: str, item_ids: Sequence[str], new_item_ids: Sequence[str], payment_method_id: str,
        idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Change items of a pending order to other options of the same products (once per order).

        The price difference is charged to (or refunded to) ``payment_method_id``; a gift card
        is debited (or credited) at once. The order becomes ``pending (item modified)``.

        Raises:
            ToolError: On an unknown order or method, an order that is not ``pending``, items not
                in the order, new items of another product or out of stock, or a short gift card.
        """
        tool = "modify_pending_order_items"

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if order.get("status") != "pending":
                raise ToolError("Non-pending order cannot be modified")
            changes, diff = _checked_changes(cur, order, item_ids, new_item_ids)
            user_id = str(order["user_id"])
            methods, method = _locked_method(cur, user_id, payment_method_id)
            if method["source"] == "gift_card" and money(method["balance"]) < diff:
                raise ToolError("Insufficient gift card balance to pay for the new item")
            before = _copy(order)
            order.setdefault("payment_history", []).append({
                "transaction_type": "payment" if diff > 0 else "refund", "amount": _num(abs(diff)),
                "payment_method_id": payment_method_id,
            })
            if method["source"] == "gift_card":
                _set_balance(cur, payment_method_id, money(method["balance"]) - diff)
            catalogue = _items(cur, [c.new_item_id for c in changes])
            for change in changes:
                line = order["items"][change.index]
                new = catalogue[change.new_item_id]
                line["item_id"] = change.new_item_id
                line["price"] = _num(money(new["price"]))
                line["options"] = dict(new["options"])
            order["status"] = "pending (item modified)"
            entries = []
            if diff != 0:
                entries.append(_ledger(
                    cur, kind="charge" if diff > 0 else "refund", amount=abs(diff), method_id=payment_method_id,
                    user_id=user_id, order_id=order_id, tool=tool, key=key,
                    settles="immediately" if diff > 0 else _settles(method)))
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=order_id, before=before, after=order)
            return _result(tool, "updated", order, diff, entries)

        return self._write(tool, idempotency_key, body, hooks)

    def modify_user_address(
        self, *, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str,
        idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Change the customer's default address.

        Raises:
            ToolError: On an unknown user.
        """
        tool = "modify_user_address"
        address = _address(address1, address2, city, state, country, zip)

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            cur.execute("SELECT doc FROM retail_users WHERE user_id = %s FOR UPDATE", (user_id,))
            row = cur.fetchone()
            if row is None:
                raise ToolError("User not found")
            doc = dict(row["doc"])
            before = {"address": doc.get("address")}
            doc["address"] = address
            cur.execute("UPDATE retail_users SET doc = %s WHERE user_id = %s", (Jsonb(doc), user_id))
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=None, before=before,
                   after={"address": address})
            user = _user(cur, user_id) or {}
            return {"status": "updated", "tool": tool, "user_id": user_id, "amount_usd": 0.0, "direction": "none",
                    "currency": "USD", "entry_ids": [], "user": user}

        return self._write(tool, idempotency_key, body, hooks)

    def return_delivered_order_items(
        self, *, order_id: str, item_ids: Sequence[str], payment_method_id: str,
        idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Request the return of items of a delivered order; the order becomes ``return requested``.

        The refund (the listed items' prices) is recorded in the ledger to the original
        payment method or a gift card of the owner, settling when the items are received.

        Raises:
            ToolError: On an unknown order or method, an order that is not delivered, items not
                in the order, or a refund method that is neither the original one nor a gift card.
        """
        tool = "return_delivered_order_items"

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if order.get("status") != "delivered":
                raise ToolError("Non-delivered order cannot be returned")
            user_id = str(order["user_id"])
            methods, method = _locked_method(cur, user_id, payment_method_id)
            if method["source"] != "gift_card" and payment_method_id != original_method(order):
                raise ToolError("Payment method should be the original payment method")
            if not items_present(order, item_ids):
                raise ToolError("Some item not found")
            amount = return_amount(order, item_ids)
            before = _copy(order)
            order["status"] = "return requested"
            order["return_items"] = sorted(item_ids)
            order["return_payment_method_id"] = payment_method_id
            entries = []
            if amount > 0:
                entries.append(_ledger(cur, kind="refund", amount=amount, method_id=payment_method_id,
                                       user_id=user_id, order_id=order_id, tool=tool, key=key,
                                       settles="when the items are received"))
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=order_id, before=before, after=order)
            return _result(tool, "return_requested", order, -amount, entries)

        return self._write(tool, idempotency_key, body, hooks)

    def exchange_delivered_order_items(
        self, *, order_id: str, item_ids: Sequence[str], new_item_ids: Sequence[str], payment_method_id: str,
        idempotency_key: str | None = None, hooks: WriteHooks | None = None,
    ) -> dict[str, Any]:
        """Request an exchange of items of a delivered order for other options of the same products.

        The order becomes ``exchange requested``; the price difference is recorded (charge or
        refund to ``payment_method_id``, settling when the items are received).

        Raises:
            ToolError: On an unknown order or method, an order that is not delivered, items not
                in the order, new items of another product or out of stock, or a short gift card.
        """
        tool = "exchange_delivered_order_items"

        def body(cur: Cursor[DictRow], key: str | None) -> dict[str, Any]:
            order = _locked_order(cur, order_id)
            if order.get("status") != "delivered":
                raise ToolError("Non-delivered order cannot be exchanged")
            _, diff = _checked_changes(cur, order, item_ids, new_item_ids)
            user_id = str(order["user_id"])
            methods, method = _locked_method(cur, user_id, payment_method_id)
            if method["source"] == "gift_card" and money(method["balance"]) < diff:
                raise ToolError("Insufficient gift card balance to pay for the price difference")
            before = _copy(order)
            order["status"] = "exchange requested"
            order["exchange_items"] = sorted(item_ids)
            order["exchange_new_items"] = sorted(new_item_ids)
            order["exchange_payment_method_id"] = payment_method_id
            order["exchange_price_difference"] = _num(diff)
            entries = []
            if diff != 0:
                entries.append(_ledger(
                    cur, kind="charge" if diff > 0 else "refund", amount=abs(diff), method_id=payment_method_id,
                    user_id=user_id, order_id=order_id, tool=tool, key=key, settles="when the items are received"))
            _save_order(cur, order)
            _event(cur, tool=tool, key=key, user_id=user_id, order_id=order_id, before=before, after=order)
            return _result(tool, "exchange_requested", order, diff, entries)

        return self._write(tool, idempotency_key, body, hooks)

    # ------------------------------------------------------------------ internals

    def _write(self, tool: str, key: str | None, body: Body, hooks: WriteHooks | None = None) -> dict[str, Any]:
        """Run ``body`` in one transaction, claiming ``key`` first when there is one.

        With ``hooks``, ``hooks.verify`` first locks every row the decision was made on and
        re-checks it on what it now reads (raising rolls everything back), and
        ``hooks.record`` stores the outcome before commit.
        """
        return _WRITE_REQUESTS.write(self._pool, tool, key, body, ttl=self._ttl, hooks=hooks, reads=CursorReads)


# ---------------------------------------------------------------------- money rules shared with facts


def original_method(order: Mapping[str, Any]) -> str:
    """Return the payment method of the order's first payment ("" when there is none)."""
    history = order.get("payment_history") or []
    first = history[0] if history and isinstance(history[0], Mapping) else {}
    return str(first.get("payment_method_id", ""))


def net_paid(order: Mapping[str, Any]) -> list[tuple[str, Decimal]]:
    """Return, per payment method in first-use order, what was paid net of refunds (positive only)."""
    totals: dict[str, Decimal] = {}
    for entry in order.get("payment_history") or []:
        if not isinstance(entry, Mapping):
            continue
        method_id = str(entry.get("payment_method_id", ""))
        amount = money(entry.get("amount", 0))
        sign = 1 if entry.get("transaction_type") == "payment" else -1
        totals[method_id] = totals.get(method_id, Decimal(0)) + sign * amount
    return [(m, a) for m, a in totals.items() if a > 0]


def return_amount(order: Mapping[str, Any], item_ids: Sequence[str]) -> Decimal:
    """Return what the listed items were paid (each listed id takes the next order line with it)."""
    lines = [i for i in order.get("items", []) if isinstance(i, Mapping)]
    used: set[int] = set()
    total = Decimal(0)
    for item_id in item_ids:
        index = next((n for n, line in enumerate(lines) if n not in used and line.get("item_id") == item_id), -1)
        if index >= 0:
            used.add(index)
            total += money(lines[index].get("price", 0))
    return total


def _checked_changes(
    cur: Cursor[DictRow], order: Mapping[str, Any], item_ids: Sequence[str], new_item_ids: Sequence[str],
) -> tuple[list[ItemChange], Decimal]:
    if not items_present(order, item_ids):
        raise ToolError("Some item not found in the order")
    if len(item_ids) != len(new_item_ids):
        raise ToolError("The number of items to be exchanged should match")
    changes = item_changes(order, item_ids, new_item_ids, _items(cur, new_item_ids))
    for change in changes:
        if not change.different:
            raise ToolError("The new item id should be different from the old item id")
        if not (change.new_exists and change.same_product):
            raise ToolError(f"New item {change.new_item_id} is not an option of the same product")
        if not change.available:
            raise ToolError(f"New item {change.new_item_id} not found or available")
    diff = sum((c.new_price - c.old_price for c in changes), Decimal(0))
    return changes, diff


@contextmanager
def _reads(pool: ConnectionPool) -> Iterator[CursorReads]:
    with pool.connection() as conn:
        yield CursorReads(conn.cursor(row_factory=dict_row))


def _copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(doc))


def _address(address1: str, address2: str, city: str, state: str, country: str, zip_code: str) -> dict[str, str]:
    # τ²'s field order, so a stored address reads as the data's do.
    return {"address1": address1, "address2": address2, "city": city, "country": country, "state": state,
            "zip": zip_code}


def _variant(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"item_id": row["item_id"], "options": dict(row["options"]), "available": bool(row["available"]),
            "price": _num(money(row["price"]))}


def _method_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"source": row["source"], "id": row["payment_method_id"], **dict(row["details"] or {})}
    if row["source"] == "gift_card":
        doc["balance"] = _num(money(row["balance"]))
    return doc


def _methods(cur: Cursor[DictRow], user_id: str, *, lock: bool = False) -> dict[str, dict[str, Any]]:
    cur.execute(
        "SELECT payment_method_id, source, balance, details FROM retail_payment_methods WHERE user_id = %s"
        " ORDER BY " + ("payment_method_id FOR UPDATE" if lock else "position"),
        (user_id,),
    )
    return {r["payment_method_id"]: dict(r) for r in cur.fetchall()}


def _locked_method(
    cur: Cursor[DictRow], user_id: str, payment_method_id: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Lock the customer's payment methods; return them and the one named (ToolError if unknown)."""
    methods = _methods(cur, user_id, lock=True)
    method = methods.get(payment_method_id)
    if method is None:
        raise ToolError("Payment method not found")
    return methods, method


def _user(cur: Cursor[DictRow], user_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    cur.execute("SELECT doc FROM retail_users WHERE user_id = %s" + (" FOR UPDATE" if lock else ""), (user_id,))
    row = cur.fetchone()
    if row is None:
        return None
    doc = dict(row["doc"])
    cur.execute(
        "SELECT payment_method_id, source, balance, details FROM retail_payment_methods WHERE user_id = %s"
        " ORDER BY position" + (" FOR UPDATE" if lock else ""),
        (user_id,),
    )
    methods = {r["payment_method_id"]: _method_doc(r) for r in cur.fetchall()}
    ordered = {k: doc[k] for k in ("user_id", "name", "address", "email") if k in doc}
    return {**ordered, "payment_methods": methods, "orders": list(doc.get("orders", []))}


def _order(cur: Cursor[DictRow], order_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    cur.execute("SELECT doc FROM retail_orders WHERE order_id = %s" + (" FOR UPDATE" if lock else ""), (order_id,))
    row = cur.fetchone()
    return None if row is None else dict(row["doc"])


def _locked_order(cur: Cursor[DictRow], order_id: str) -> dict[str, Any]:
    order = _order(cur, order_id, lock=True)
    if order is None:
        raise ToolError("Order not found")
    return order


def _items(cur: Cursor[DictRow], item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not item_ids:
        return {}
    cur.execute(
        "SELECT item_id, product_id, options, available, price FROM retail_items WHERE item_id = ANY(%s)",
        (list(item_ids),),
    )
    return {r["item_id"]: {"product_id": r["product_id"], "options": dict(r["options"]),
                           "available": bool(r["available"]), "price": float(r["price"])}
            for r in cur.fetchall()}


def _save_order(cur: Cursor[DictRow], order: Mapping[str, Any]) -> None:
    cur.execute("UPDATE retail_orders SET doc = %s WHERE order_id = %s", (Jsonb(order), order["order_id"]))


def _set_balance(cur: Cursor[DictRow], method_id: str, balance: Decimal) -> None:
    if balance < 0:
        raise ToolError("Insufficient gift card balance")
    cur.execute("UPDATE retail_payment_methods SET balance = %s WHERE payment_method_id = %s", (balance, method_id))


def _settles(method: Mapping[str, Any] | None) -> str:
    return "immediately" if method is not None and method.get("source") == "gift_card" else "in 5-7 business days"


def _ledger(
    cur: Cursor[DictRow], *, kind: str, amount: Decimal, method_id: str, user_id: str, order_id: str, tool: str,
    key: str | None, settles: str,
) -> str:
    entry_id = ("CHG-" if kind == "charge" else "RFD-") + uuid.uuid4().hex[:12].upper()
    cur.execute(
        "INSERT INTO retail_ledger (entry_id, idempotency_key, user_id, order_id, payment_method_id, kind,"
        " amount_usd, settles, tool) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (entry_id, key, user_id, order_id, method_id, kind, amount, settles, tool),
    )
    return entry_id


def _event(
    cur: Cursor[DictRow], *, tool: str, key: str | None, user_id: str, order_id: str | None,
    before: Mapping[str, Any] | None, after: Mapping[str, Any],
) -> None:
    cur.execute(
        "INSERT INTO retail_events (user_id, order_id, tool, idempotency_key, before, after)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (user_id, order_id, tool, key, None if before is None else Jsonb(before), Jsonb(after)),
    )


def _result(
    tool: str, status: str, order: Mapping[str, Any], signed: Decimal, entries: list[str], *,
    amount_usd: Decimal | None = None,
) -> dict[str, Any]:
    """Return a write's result; ``signed`` > 0 is a charge to the customer, < 0 a refund."""
    direction = "charge" if signed > 0 else "refund" if signed < 0 else "none"
    return {
        "status": status,
        "tool": tool,
        "order_id": order["order_id"],
        "amount_usd": _num(abs(signed) if amount_usd is None else amount_usd),
        "direction": direction if amount_usd is None else "switch",
        "currency": "USD",
        "entry_ids": entries,
        "order": dict(order),
    }


def _calc(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _CALC_BINOPS:
        return _CALC_BINOPS[type(node.op)](_calc(node.left), _calc(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _CALC_UNARY:
        return _CALC_UNARY[type(node.op)](_calc(node.operand))
    raise ValueError("unsupported expression")
