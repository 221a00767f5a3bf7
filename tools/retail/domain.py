"""The retail domain as the graph sees it: tools, facts and execution over Postgres."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from graph.domain import WriteGuard
from graph.domain_base import BackendDomain, DomainParts
from tools.retail.backend import CursorReads, RetailBackend
from tools.retail.describe import describe_call
from tools.retail.errors import ToolError
from tools.retail.facts import compute_facts, default_facts
from tools.retail.schemas import RETAIL_TOOLS, langchain_tools
from tools.retail.stated import stated_questions

__all__ = ["RetailDomain"]


class RetailDomain(BackendDomain[RetailBackend, CursorReads]):
    """Adapter from :class:`RetailBackend` to the graph's ``Domain`` protocol (``graph.domain``).

    The state token versions the order the call changes (or the customer, for a profile
    change); the tables must exist before :meth:`from_pool` (see ``tools.retail.loader``).
    """

    parts = DomainParts(
        tools=RETAIL_TOOLS, model_tools=langchain_tools, compute_facts=compute_facts,
        neutral_facts=default_facts, stated_questions=stated_questions, describe_call=describe_call,
        scope_arg="order_id", scope_tag="o",
    )
    backend_type = RetailBackend
    error_type: type[Exception] = ToolError
    # Arguments that may carry the customer's own PII, each of one type: the e-mail and name the
    # account is found by, and an address the customer gives. A placeholder of another type
    # (an e-mail in a street line) is refused.
    pii_fields: Mapping[str, str] = MappingProxyType({
        "email": "EMAIL_ADDRESS", "first_name": "PERSON", "last_name": "PERSON",
        "address1": "STREET_ADDRESS", "address2": "STREET_ADDRESS", "zip": "POSTAL_CODE",
    })

    def lock_scope(self, reads: CursorReads, tool: str, args: Mapping[str, Any], guard: WriteGuard) -> None:
        """Lock the order, the customer and their payment methods before the write decides."""
        order_id = args.get("order_id")
        named_user = args.get("user_id")
        reads.lock_scope(
            order_id=order_id if isinstance(order_id, str) else None,
            user_ids=[u for u in (guard.user_id, named_user) if isinstance(u, str)],
        )

    def forget_customer(self, cur: Any, customer_id: str) -> dict[str, int]:
        """Erase the profile fields the store does not need to keep: e-mail and default address.

        The history of default-address changes goes too. Kept: the name, payment methods (ids,
        brand, last four digits, gift card balances) and the orders with their shipping
        addresses and payments (and their write history), which are sales and accounting
        records with their own retention.
        """
        cur.execute(
            "UPDATE retail_users SET email = '', doc = doc - 'address' - 'email' WHERE user_id = %s",
            (customer_id,),
        )
        users = cur.rowcount
        cur.execute(
            "UPDATE retail_events SET before = NULL, after = '{}'::jsonb"
            " WHERE user_id = %s AND tool = 'modify_user_address'",
            (customer_id,),
        )
        return {"retail_users": users, "retail_events": cur.rowcount}
