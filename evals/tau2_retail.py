"""The store's part of the τ² task replay (``evals.tau2_replay``): tasks, state, answers, violations.

τ²'s retail tasks name their customer by name and zip code or by e-mail, not by user id: the
replay resolves the id from the reference data, as the τ² agent does after authenticating the
customer (:func:`resolve_customer`). Uses the domain's public entry points only
(``tools.retail``: the plugin, the backend, the tool registry and the shipped policy).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from evals.tau2_replay import (
    SHARED_DATA,
    Action,
    ReplayError,
    Setup,
    StateTable,
    Task,
    TauReplay,
    Violation,
    column_setup,
    common_variants,
    first_column,
    with_args,
)

__all__ = ["RetailReplay", "resolve_customer", "truthful_answer"]

TASKS_PATH = SHARED_DATA / "retail" / "tasks.json"
_USER_ID = re.compile(r"\b([a-z]+_[a-z]+_\d{4})\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Tools that act on one order of the customer.
_PENDING_TOOLS = ("cancel_pending_order", "modify_pending_order_address", "modify_pending_order_payment",
                  "modify_pending_order_items")
_DELIVERED_TOOLS = ("return_delivered_order_items", "exchange_delivered_order_items")
_ITEM_CHANGE_TOOLS = ("modify_pending_order_items", "exchange_delivered_order_items")
_LOOKUP_TOOLS = ("find_user_id_by_email", "find_user_id_by_name_zip")
# Whether the customer disputes a refusal (tools.retail.stated): only what the instructions say.
_DISPUTES = re.compile(r"\b(insist|dispute|do not accept|don't accept|demand|escalate|supervisor|manager)\b",
                       re.IGNORECASE)
#: The id of the gift card the balance variant adds to the customer's profile (and removes after).
_SHORT_GIFT_CARD = "gift_card_0000000"


def truthful_answer(instructions: str, question_id: str) -> str:
    """Return the choice the τ² customer picks for a stated question, from their instructions.

    Raises:
        ReplayError: A question this replay does not know (a new one must be taught, not guessed).
    """
    if question_id == "customer_disputes":
        return "dispute" if _DISPUTES.search(instructions) else "accept"
    raise ReplayError(f"the replay has no truthful answer for question {question_id!r}")


@cache
def _reference_db() -> dict[str, dict[str, Any]]:
    from tools.retail.loader import read_db

    return read_db()


def resolve_customer(raw: Mapping[str, Any], db: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Return the user id of a τ² retail task's customer, as the agent finds it after authentication.

    In order: the expected lookups (``find_user_id_by_email``/``_by_name_zip``) that find someone
    in the reference data (a customer's first, mistyped try finds nobody); the user named in the
    instructions by id, or by name with their zip code or e-mail; the owner of the orders the
    actions touch. Every source that names someone must name the same customer.

    Raises:
        ReplayError: Nobody, or two different customers, found.
    """
    data = db if db is not None else _reference_db()
    users: Mapping[str, Mapping[str, Any]] = data["users"]
    orders: Mapping[str, Mapping[str, Any]] = data["orders"]
    actions = (raw.get("evaluation_criteria") or {}).get("actions") or []
    found: list[str] = []
    for a in actions:
        args = a.get("arguments") or {}
        if a["name"] == "find_user_id_by_email":
            found += [u for u, d in users.items() if str(d["email"]).lower() == str(args.get("email", "")).lower()]
        elif a["name"] == "find_user_id_by_name_zip":
            found += [u for u, d in users.items()
                      if str(d["name"]["first_name"]).lower() == str(args.get("first_name", "")).lower()
                      and str(d["name"]["last_name"]).lower() == str(args.get("last_name", "")).lower()
                      and str(d["address"]["zip"]) == str(args.get("zip", ""))]
        if "order_id" in args and args["order_id"] in orders:
            found.append(str(orders[args["order_id"]]["user_id"]))
        if "user_id" in args and args["user_id"] in users:
            found.append(str(args["user_id"]))
    scenario = (raw.get("user_scenario") or {}).get("instructions") or {}
    known = str(scenario.get("known_info") or "")
    lowered = known.lower()
    emails = {e.lower() for e in _EMAIL.findall(known)}
    named = [u for u in _USER_ID.findall(known) if u in users]
    named += [u for u, d in users.items()
              if re.search(rf"\b{re.escape(str(d['name']['first_name']).lower())}\b", lowered)
              and re.search(rf"\b{re.escape(str(d['name']['last_name']).lower())}\b", lowered)
              and (re.search(rf"\b{re.escape(str(d['address']['zip']))}\b", known)
                   or str(d["email"]).lower() in emails)]
    people = sorted(set(found) | set(named))
    if len(people) != 1:
        raise ReplayError(f"task {raw.get('id')}: customer not resolved from the reference data ({people})")
    return people[0]


class RetailReplay(TauReplay):
    """The store as :class:`evals.tau2_replay.ReplayDomain`."""

    name = "retail"
    tasks_path: Path = TASKS_PATH
    package_name = "tools.retail"
    backend_name = "RetailBackend"
    # Every table a tool writes, and the catalogue a variant may touch, without what is
    # generated: serial ids, the ledger's random entry ids, idempotency keys, conversation ids
    # and wall-clock timestamps. retail_write_requests holds only idempotency keys: left out.
    state_tables = (
        StateTable(table="retail_users", key="user_id", value="jsonb_build_array(email, doc)"),
        StateTable(table="retail_payment_methods", key="payment_method_id",
                   value="jsonb_build_array(user_id, source, balance, details, position)"),
        StateTable(table="retail_orders", key="order_id", value="doc"),
        StateTable(table="retail_items", key="item_id",
                   value="jsonb_build_array(product_id, options, available, price, position)"),
        StateTable(table="retail_products", key="product_id", value="jsonb_build_array(name, position)"),
        StateTable(table="retail_ledger",
                   key="concat_ws('|', user_id, order_id, payment_method_id, kind, amount_usd, settles, tool)",
                   value="amount_usd"),
        StateTable(table="retail_events", key="concat_ws('|', user_id, order_id, tool)",
                   value="jsonb_build_array(before, after)"),
    )

    def customer(self, raw: Mapping[str, Any], actions: Sequence[Action]) -> str:
        """Return the customer as the agent finds them after authentication (:func:`resolve_customer`)."""
        return resolve_customer(raw)

    def truthful_answer(self, instructions: str, question_id: str) -> str:
        """Return the choice the τ² customer picks (see :func:`truthful_answer`)."""
        return truthful_answer(instructions, question_id)

    # -- violating variants ------------------------------------------------------------------

    def violations(self, task: Task, index: int, pool: ConnectionPool) -> list[Violation]:
        """Return the variants of one action: who, status, forged records, balance, consent.

        Reads get the other-customer variant only (those that name a customer's record or look
        one up); writes get every kind that applies to the tool.
        """
        action = task.actions[index]
        args = action.args
        me = task.user_id
        owner = _order_owner(pool, str(args["order_id"])) if "order_id" in args else me
        other = _other_customer(pool, {me, owner})
        write = self.is_write(action)
        out = common_variants(task, action, other_user=other["user_id"], write=write,
                              names_record="order_id" in args or "user_id" in args or action.name in _LOOKUP_TOOLS)
        if not write:
            return out
        if "user_id" in args:
            out.append(Violation(kind="forged", label=f"another customer's account {other['user_id']}",
                                 action=with_args(action, user_id=other["user_id"]), user_id=me))
        if action.name in _PENDING_TOOLS or action.name in _DELIVERED_TOOLS:
            order_id = str(args["order_id"])
            pending = action.name in _PENDING_TOOLS
            wrong = "delivered" if pending else "pending"
            out.append(Violation(kind="wrong-status", label=f"the order is {wrong}", action=action, user_id=me,
                                 setup=_order_status(order_id, wrong)))
            theirs = other["pending_order"] if pending else other["delivered_order"]
            out.append(Violation(kind="forged", label=f"another customer's {'pending' if pending else 'delivered'} "
                                                      f"order {theirs}",
                                 action=with_args(action, order_id=theirs), user_id=me))
        if "payment_method_id" in args:
            # A gift card: for a refund the destination rule alone would also accept it.
            out.append(Violation(kind="forged", label=f"another customer's gift card {other['gift_card']}",
                                 action=with_args(action, payment_method_id=other["gift_card"]), user_id=me))
            needed = _amount_due(pool, action)
            if needed > 0:
                short = needed - Decimal("0.01")
                out.append(Violation(kind="forged", label=f"a gift card of the customer's with USD {short}, "
                                                          f"one cent short of USD {needed}",
                                     action=with_args(action, payment_method_id=_SHORT_GIFT_CARD), user_id=me,
                                     setup=_gift_card(me, short)))
        if action.name == "return_delivered_order_items":
            elsewhere = _other_refund_method(pool, me, str(args["order_id"]))
            if elsewhere:
                out.append(Violation(kind="forged", label=f"a refund to the customer's {elsewhere}, neither the "
                                                          "original payment method nor a gift card",
                                     action=with_args(action, payment_method_id=elsewhere), user_id=me))
        if action.name in _ITEM_CHANGE_TOOLS:
            old, new = str(args["item_ids"][0]), str(args["new_item_ids"][0])
            foreign = _other_product_item(pool, old)
            ids = list(args["new_item_ids"])
            ids[0] = foreign
            out.append(Violation(kind="forged", label=f"item {old} changed to {foreign}, another product type",
                                 action=with_args(action, new_item_ids=ids), user_id=me))
            out.append(Violation(kind="wrong-status", label=f"the new item {new} is not available",
                                 action=action, user_id=me, setup=_unavailable(new)))
        return out


def _order_owner(pool: ConnectionPool, order_id: str) -> str:
    with pool.connection() as conn:
        row = conn.execute("SELECT user_id FROM retail_orders WHERE order_id = %s", (order_id,)).fetchone()
    return str(first_column(row)) if row is not None else ""


def _other_customer(pool: ConnectionPool, exclude: set[str]) -> dict[str, str]:
    """Return another customer with a gift card, a pending order and a delivered order (the first by id)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT u.user_id,"
            " (SELECT min(payment_method_id) FROM retail_payment_methods p"
            "   WHERE p.user_id = u.user_id AND p.source = 'gift_card') AS gift_card,"
            " (SELECT min(order_id) FROM retail_orders o WHERE o.user_id = u.user_id AND o.status = 'pending')"
            "   AS pending_order,"
            " (SELECT min(order_id) FROM retail_orders o WHERE o.user_id = u.user_id AND o.status = 'delivered')"
            "   AS delivered_order"
            " FROM retail_users u WHERE u.user_id <> ALL(%s) AND EXISTS (SELECT 1 FROM retail_payment_methods p"
            "   WHERE p.user_id = u.user_id AND p.source = 'gift_card' AND p.balance > 0)"
            " AND EXISTS (SELECT 1 FROM retail_orders o WHERE o.user_id = u.user_id AND o.status = 'pending')"
            " AND EXISTS (SELECT 1 FROM retail_orders o WHERE o.user_id = u.user_id AND o.status = 'delivered')"
            " ORDER BY u.user_id LIMIT 1",
            (sorted(exclude),),
        ).fetchone()
    if row is None:
        raise ReplayError("no other customer with a gift card, a pending and a delivered order in the data")
    keys = ("user_id", "gift_card", "pending_order", "delivered_order")
    found: Any = row
    values = [found[k] for k in keys] if isinstance(found, Mapping) else list(found)
    return {k: str(v) for k, v in zip(keys, values, strict=True)}


def _prices(pool: ConnectionPool, item_ids: list[str]) -> Decimal:
    with pool.connection() as conn:
        total = Decimal("0")
        for item in item_ids:
            row = conn.execute("SELECT price FROM retail_items WHERE item_id = %s", (item,)).fetchone()
            if row is None:
                raise ReplayError(f"item {item} is not in the catalogue")
            total += Decimal(str(first_column(row)))
    return total


def _amount_due(pool: ConnectionPool, action: Action) -> Decimal:
    """Return what the call charges to its payment method (0 for a refund)."""
    args = action.args
    if action.name in _ITEM_CHANGE_TOOLS:
        diff = _prices(pool, [str(i) for i in args["new_item_ids"]]) - _prices(pool, [str(i) for i in args["item_ids"]])
        return max(diff, Decimal("0"))
    if action.name == "modify_pending_order_payment":
        with pool.connection() as conn:
            row = conn.execute("SELECT doc FROM retail_orders WHERE order_id = %s", (args["order_id"],)).fetchone()
        doc = first_column(row) if row is not None else {}
        return sum((Decimal(str(i["price"])) for i in doc.get("items") or []), Decimal("0"))
    return Decimal("0")


def _other_refund_method(pool: ConnectionPool, user_id: str, order_id: str) -> str:
    """Return one of the customer's cards or PayPal accounts that did not pay the order ('' if none)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT min(p.payment_method_id) FROM retail_payment_methods p WHERE p.user_id = %s"
            " AND p.source <> 'gift_card' AND p.payment_method_id NOT IN (SELECT h->>'payment_method_id'"
            "  FROM retail_orders o, jsonb_array_elements(o.doc->'payment_history') h WHERE o.order_id = %s)",
            (user_id, order_id)).fetchone()
    return str(first_column(row)) if row is not None and first_column(row) is not None else ""


def _other_product_item(pool: ConnectionPool, item_id: str) -> str:
    """Return an available item of another product than ``item_id``'s (the first by id)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT min(i.item_id) FROM retail_items i WHERE i.available AND i.product_id <>"
            " (SELECT product_id FROM retail_items WHERE item_id = %s)", (item_id,)).fetchone()
    if row is None or first_column(row) is None:
        raise ReplayError(f"no item of another product than {item_id}'s")
    return str(first_column(row))


def _order_status(order_id: str, status: str) -> Setup:
    """Return a setup that puts the order in ``status`` (and an undo that restores its document)."""
    return column_setup("retail_orders", "order_id", order_id, "doc", "jsonb_set(doc, '{status}', to_jsonb(%s::text))",
                        (status,), missing=f"order {order_id} is not in the data")


def _unavailable(item_id: str) -> Setup:
    """Return a setup that marks a catalogue item unavailable (and its undo)."""
    return column_setup("retail_items", "item_id", item_id, "available", "false",
                        missing=f"item {item_id} is not in the catalogue")


def _gift_card(user_id: str, balance: Decimal) -> Setup:
    """Return a setup that adds a gift card with ``balance`` to the customer's profile (and removes it)."""
    def setup(pool: ConnectionPool) -> Callable[[ConnectionPool], None]:
        with pool.connection() as conn:
            conn.execute("INSERT INTO retail_payment_methods (payment_method_id, user_id, source, balance, position)"
                         " VALUES (%s, %s, 'gift_card', %s, 99)", (_SHORT_GIFT_CARD, user_id, balance))

        def undo(pool: ConnectionPool) -> None:
            with pool.connection() as conn:
                conn.execute("DELETE FROM retail_payment_methods WHERE payment_method_id = %s", (_SHORT_GIFT_CARD,))
        return undo
    return setup
