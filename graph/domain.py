"""The contract between the graph and a tool domain (airline first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from graph.errors import AirlockError

__all__ = [
    "Choice",
    "Domain",
    "StaleDecisionError",
    "StatedQuestion",
    "ToolSpecLike",
    "WriteGuard",
    "describe_validation_error",
]


class StaleDecisionError(AirlockError):
    """The write's own transaction found that the decision behind it no longer holds.

    Raised by :meth:`WriteGuard.verify` inside the write's transaction, so nothing is
    written; the engine then raises a new gate (or review) with the current figures, or
    denies.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WriteGuard(Protocol):
    """The engine's part of a guarded write, run by the domain inside the write's transaction.

    The domain locks the rows the call decides on, recomputes the facts and the state token
    on them, and calls :meth:`verify` before changing anything; after the change it calls
    :meth:`record` on the same cursor, before commit.
    """

    @property
    def thread_id(self) -> str | None:
        """Return the conversation the call comes from."""
        ...

    @property
    def user_id(self) -> str | None:
        """Return the authenticated customer."""
        ...

    @property
    def conversation(self) -> Mapping[str, Any]:
        """Return the customer-stated facts the decision used."""
        ...

    def verify(self, facts: dict[str, Any], state_token: str) -> None:
        """Raise :class:`StaleDecisionError` unless the decision still holds on these facts."""
        ...

    def record(self, cursor: Any, result: Mapping[str, Any]) -> None:
        """Record the outcome (and its audit event) in the write's transaction."""
        ...


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise invalid tool arguments as ``field.path: reason; ...`` (no input values)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors())


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One answer the customer may pick.

    Attributes:
        value: What the button sends (a short code, never shown as the fact's source).
        label: What the customer reads.
        fact: The value the guardrails see when this choice is picked.
    """

    value: str
    label: str
    fact: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StatedQuestion:
    """A fact only the customer can state, asked by the system before a tool's guardrails.

    Attributes:
        id: Stable name of the question (unique per tool).
        fact: The key under ``facts.conversation`` that the answer sets.
        question: The text the customer is asked.
        choices: The only answers accepted (in display order; a typed reply may give the
            number or the exact label).
        when: CEL over ``args`` and ``facts`` (computed with the answers given so far):
            ask only when the rules need the answer. ``"true"`` asks always.
    """

    id: str
    fact: str
    question: str
    choices: tuple[Choice, ...]
    when: str = "true"


class ToolSpecLike(Protocol):
    """What the graph needs to know about one tool."""

    @property
    def name(self) -> str:
        """Return the tool name."""
        ...

    @property
    def description(self) -> str:
        """Return the description the model sees."""
        ...

    @property
    def args_schema(self) -> type[BaseModel]:
        """Return the pydantic model that validates arguments."""
        ...

    @property
    def write(self) -> bool:
        """Return True when the tool changes data or moves money."""
        ...


class Domain(Protocol):
    """A set of tools over a backend, and the facts guardrails are evaluated on."""

    @property
    def tools(self) -> Mapping[str, ToolSpecLike]:
        """Return the tools by name."""
        ...

    def model_tools(self) -> list[dict[str, Any]]:
        """Return OpenAI-style tool schemas to bind to the chat model."""
        ...

    def facts(
        self, tool: str, args: Mapping[str, Any], *, user_id: str | None,
        conversation: Mapping[str, Any], conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Compute, by code, everything a guardrail may rely on for this call (window facts included)."""
        ...

    def stated_questions(self, tool: str) -> Sequence[StatedQuestion]:
        """Return the questions the customer must answer before ``tool``'s guardrails, in order."""
        ...

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Return a digest of the current state this call acts on (e.g. the reservation)."""
        ...

    def execute(
        self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None,
        guard: WriteGuard | None = None,
    ) -> Any:
        """Run the tool against the backend; raise the domain's error type on refusal.

        A write given a ``guard`` re-verifies the decision and records its outcome inside its
        own transaction (see :class:`WriteGuard`); a retry with the same ``idempotency_key``
        returns the stored result instead of writing again.
        """
        ...

    def reconcile(self, idempotency_key: str) -> dict[str, Any] | None:
        """Settle a write whose attempt timed out: its stored result, or None once fenced off.

        After None, a late attempt under that key can no longer change anything.
        """
        ...

    @property
    def pii_fields(self) -> Mapping[str, str]:
        """Return the argument names whose placeholders code may resolve, with each one's PII type."""
        ...

    @property
    def error_type(self) -> type[Exception]:
        """Return the exception a tool raises for a refused request (not retried)."""
        ...
