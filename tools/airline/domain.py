"""The airline domain as the graph sees it: tools, facts and execution over Postgres."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from psycopg_pool import ConnectionPool

from tools.airline.backend import AirlineBackend
from tools.airline.errors import ToolError
from tools.airline.facts import compute_facts
from tools.airline.schemas import AIRLINE_TOOLS, ToolSpec, langchain_tools

__all__ = ["AirlineDomain"]


class AirlineDomain:
    """Adapter from :class:`AirlineBackend` to the graph's ``Domain`` protocol."""

    error_type: type[Exception] = ToolError
    # Passenger details are the only arguments that may carry the customer's own PII, each of
    # one type: a placeholder of another type (a date of birth in a name) is refused.
    pii_fields: Mapping[str, str] = MappingProxyType(
        {"first_name": "PERSON", "last_name": "PERSON", "dob": "DATE_OF_BIRTH"}
    )

    def __init__(self, *, backend: AirlineBackend) -> None:
        self.backend = backend

    @classmethod
    def from_pool(cls, *, pool: ConnectionPool) -> AirlineDomain:
        """Build the domain over a pool."""
        return cls(backend=AirlineBackend(pool=pool))

    @property
    def tools(self) -> Mapping[str, ToolSpec]:
        """Return the τ² airline tools by name."""
        return AIRLINE_TOOLS

    def model_tools(self) -> list[dict[str, Any]]:
        """Return the OpenAI tool schemas."""
        return langchain_tools()

    def facts(
        self, tool: str, args: Mapping[str, Any], *, user_id: str | None,
        conversation: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Compute the facts for one call from the database."""
        return compute_facts(self.backend, tool, dict(args), user_id=user_id,
                             conversation=dict(conversation))

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Version the reservation the call changes (or the customer, for bookings and certificates).

        A version, not a content hash: after A->B->A the reservation looks as it did at first,
        but a new A->B must still be a new call.
        """
        reservation_id = args.get("reservation_id")
        if isinstance(reservation_id, str) and reservation_id:
            return f"r:{reservation_id}:{self.backend.state_version(reservation_id=reservation_id)}"
        return f"u:{user_id}:{self.backend.state_version(user_id=user_id)}"

    def execute(self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None) -> Any:
        """Run the tool; ToolError on a refused request."""
        return self.backend.call(tool, args, idempotency_key=idempotency_key)
