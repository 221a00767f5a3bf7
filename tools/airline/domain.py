"""The airline domain as the graph sees it: tools, facts and execution over Postgres."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from graph.domain import WriteGuard
from graph.domain_base import BackendDomain, DomainParts
from tools.airline.backend import AirlineBackend, CursorReads
from tools.airline.describe import describe_call
from tools.airline.errors import ToolError
from tools.airline.facts import compute_facts, default_facts
from tools.airline.schemas import AIRLINE_TOOLS, langchain_tools
from tools.airline.stated import stated_questions

__all__ = ["AirlineDomain"]


class AirlineDomain(BackendDomain[AirlineBackend, CursorReads]):
    """Adapter from :class:`AirlineBackend` to the graph's ``Domain`` protocol.

    The state token versions the reservation the call changes (or the customer, for bookings
    and certificates).
    """

    parts = DomainParts(
        tools=AIRLINE_TOOLS, model_tools=langchain_tools, compute_facts=compute_facts,
        neutral_facts=default_facts, stated_questions=stated_questions, describe_call=describe_call,
        scope_arg="reservation_id", scope_tag="r",
    )
    backend_type = AirlineBackend
    error_type: type[Exception] = ToolError
    # Passenger details are the only arguments that may carry the customer's own PII, each of
    # one type: a placeholder of another type (a date of birth in a name) is refused.
    pii_fields: Mapping[str, str] = MappingProxyType(
        {"first_name": "PERSON", "last_name": "PERSON", "dob": "DATE_OF_BIRTH"}
    )

    def lock_scope(self, reads: CursorReads, tool: str, args: Mapping[str, Any], guard: WriteGuard) -> None:
        """Lock the reservation and the customer (and what a booking spends) before the write decides."""
        reservation_id = args.get("reservation_id")
        named_user = args.get("user_id")
        reads.lock_scope(
            reservation_id=reservation_id if isinstance(reservation_id, str) else None,
            user_ids=[u for u in (guard.user_id, named_user) if isinstance(u, str)],
            booking=tool == "book_reservation",
        )

    def forget_customer(self, cur: Any, customer_id: str) -> dict[str, int]:
        """Erase the profile fields a booking does not need: address, e-mail, date of birth, saved passengers.

        Kept: the name, payment methods (ids and last four digits only), membership and the
        reservations and payments, which are contract and accounting records with their own
        retention.
        """
        cur.execute(
            "UPDATE airline_users SET doc = doc - 'address' - 'email' - 'dob' "
            "|| jsonb_build_object('saved_passengers', '[]'::jsonb) WHERE user_id = %s",
            (customer_id,),
        )
        return {"airline_users": cur.rowcount}
