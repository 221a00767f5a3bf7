"""The airline domain as the graph sees it: tools, facts and execution over Postgres."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from graph.domain import StatedQuestion, WriteGuard
from tools.airline.backend import AirlineBackend, CursorReads, WriteHooks
from tools.airline.errors import ToolError
from tools.airline.facts import compute_facts
from tools.airline.schemas import AIRLINE_TOOLS, ToolSpec, langchain_tools
from tools.airline.stated import stated_questions

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
        conversation: Mapping[str, Any], conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Compute the facts for one call from the database."""
        return compute_facts(self.backend, tool, dict(args), user_id=user_id,
                             conversation=dict(conversation), conversation_id=conversation_id)

    def stated_questions(self, tool: str) -> Sequence[StatedQuestion]:
        """Return what the customer is asked before ``tool`` (see ``tools.airline.stated``)."""
        return stated_questions(tool)

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Version the reservation the call changes (or the customer, for bookings and certificates).

        A version, not a content hash: after A->B->A the reservation looks as it did at first,
        but a new A->B must still be a new call.
        """
        return _state_token(self.backend, args, user_id)

    def execute(
        self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None,
        guard: WriteGuard | None = None,
    ) -> Any:
        """Run the tool; ToolError on a refused request.

        With a ``guard``, the write's transaction locks the reservation and the customer,
        recomputes the facts and the state token on the locked rows and lets the guard
        verify them before anything changes (see :class:`graph.domain.WriteGuard`).
        """
        hooks = None
        if guard is not None and self.tools[tool].write:
            hooks = WriteHooks(
                verify=lambda reads: self._verify(reads, tool, args, guard),
                record=guard.record, conversation_id=guard.thread_id,
            )
        return self.backend.call(tool, args, idempotency_key=idempotency_key, hooks=hooks)

    def reconcile(self, idempotency_key: str) -> dict[str, Any] | None:
        """Return the stored result of the write made under the key, or None once fenced off."""
        return self.backend.reconcile(idempotency_key)

    def _verify(self, reads: CursorReads, tool: str, args: Mapping[str, Any], guard: WriteGuard) -> None:
        reservation_id = args.get("reservation_id")
        named_user = args.get("user_id")
        reads.lock_scope(
            reservation_id=reservation_id if isinstance(reservation_id, str) else None,
            user_ids=[u for u in (guard.user_id, named_user) if isinstance(u, str)],
            booking=tool == "book_reservation",
        )
        facts = compute_facts(reads, tool, dict(args), user_id=guard.user_id,
                              conversation=dict(guard.conversation), conversation_id=guard.thread_id)
        guard.verify(facts, _state_token(reads, args, guard.user_id))


class _Versioned(Protocol):
    def state_version(self, *, user_id: str | None = None, reservation_id: str | None = None) -> int: ...


def _state_token(source: _Versioned, args: Mapping[str, Any], user_id: str | None) -> str:
    reservation_id = args.get("reservation_id")
    if isinstance(reservation_id, str) and reservation_id:
        return f"r:{reservation_id}:{source.state_version(reservation_id=reservation_id)}"
    return f"u:{user_id}:{source.state_version(user_id=user_id)}"
