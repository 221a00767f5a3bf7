"""A base for domains that adapt one Postgres backend to the engine's ``Domain`` protocol.

A domain package names its pieces once (:class:`DomainParts`: tools, facts, questions,
descriptions, the argument its state token versions) and its backend; :class:`BackendDomain`
does the delegating every such adapter repeats: facts from the backend, the state token, the
guarded write (lock, recompute, verify inside the write's transaction), reconcile and the
customer's contact address. A subclass adds what is its own: which rows a write locks
(:meth:`BackendDomain.lock_scope`), its PII fields and what forgetting a customer erases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from psycopg_pool import ConnectionPool

from graph.domain import StatedQuestion, ToolSpecLike, WriteGuard
from graph.write_fence import WriteHooks

__all__ = ["BackendDomain", "DomainParts", "plain_mailbox"]


class Backend(Protocol):
    """What :class:`BackendDomain` calls on a domain's backend."""

    def call(self, tool: str, args: Mapping[str, Any] | None, *,
             idempotency_key: str | None = None, hooks: Any = None) -> Any:
        """Validate the arguments and run the tool."""
        ...

    def reconcile(self, idempotency_key: str) -> dict[str, Any] | None:
        """Return the stored result of the write under the key, or None once fenced off."""
        ...

    def fetch_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the customer's profile, or None."""
        ...


B = TypeVar("B", bound=Backend)
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class DomainParts:
    """The pieces of a domain that :class:`BackendDomain` delegates to.

    Attributes:
        tools: The tools by name.
        model_tools: Returns the OpenAI tool schemas.
        compute_facts: ``(source, tool, args, *, user_id, conversation, conversation_id)`` ->
            facts, where the source is the backend (a snapshot) or the write's locked reads.
        neutral_facts: Returns the facts with every section present and neutral values.
        stated_questions: What the customer is asked before a tool.
        describe_call: Says in plain words what a call does.
        scope_arg: The argument naming the record a call changes (``reservation_id``,
            ``order_id``): the state token versions it, else the customer.
        scope_tag: The state token's prefix for that record (``r``, ``o``).
    """

    tools: Mapping[str, ToolSpecLike]
    model_tools: Callable[[], list[dict[str, Any]]]
    compute_facts: Callable[..., dict[str, Any]]
    neutral_facts: Callable[[], dict[str, Any]]
    stated_questions: Callable[[str], Sequence[StatedQuestion]]
    describe_call: Callable[[str, Mapping[str, Any], Mapping[str, Any] | None], str]
    scope_arg: str
    scope_tag: str


class BackendDomain(Generic[B, R]):
    """Adapter from a domain backend to the engine's ``Domain`` protocol (``graph.domain``).

    A subclass sets :attr:`parts`, :attr:`backend_type`, ``error_type`` and ``pii_fields``,
    and implements :meth:`lock_scope` (and ``forget_customer`` when it keeps personal data).
    ``R`` is the type of the reads a guarded write verifies on (the backend's cursor reads).
    """

    parts: ClassVar[DomainParts]
    backend_type: ClassVar[Callable[..., Any]]
    error_type: type[Exception]
    pii_fields: Mapping[str, str]

    def __init__(self, *, backend: B) -> None:
        self.backend = backend

    @classmethod
    def from_pool(cls, *, pool: ConnectionPool) -> Self:
        """Build the domain over a pool (the domain's tables must exist)."""
        return cls(backend=cls.backend_type(pool=pool))

    @property
    def tools(self) -> Mapping[str, ToolSpecLike]:
        """Return the domain's tools by name."""
        return self.parts.tools

    def model_tools(self) -> list[dict[str, Any]]:
        """Return the OpenAI tool schemas."""
        return self.parts.model_tools()

    def facts(
        self, tool: str, args: Mapping[str, Any], *, user_id: str | None,
        conversation: Mapping[str, Any], conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Compute the facts for one call from the database."""
        return self.parts.compute_facts(self.backend, tool, dict(args), user_id=user_id,
                                        conversation=dict(conversation), conversation_id=conversation_id)

    def neutral_facts(self) -> dict[str, Any]:
        """Return the facts with every section present and neutral values (their declared shape)."""
        return self.parts.neutral_facts()

    def stated_questions(self, tool: str) -> Sequence[StatedQuestion]:
        """Return what the customer is asked before ``tool``."""
        return self.parts.stated_questions(tool)

    def describe_call(self, tool: str, args: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> str:
        """Say in plain words what a call does."""
        return self.parts.describe_call(tool, args, facts)

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Version the record the call changes (or the customer, when it names none).

        A version, not a content hash: after A->B->A the record looks as it did at first, but a
        new A->B must still be a new call.
        """
        return self._state_token(self.backend, args, user_id)

    def execute(
        self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None,
        guard: WriteGuard | None = None,
    ) -> Any:
        """Run the tool; the domain's error type on a refused request.

        With a ``guard``, the write's transaction locks what :meth:`lock_scope` names,
        recomputes the facts and the state token on the locked rows and lets the guard verify
        them before anything changes (see :class:`graph.domain.WriteGuard`).
        """
        hooks: WriteHooks[R] | None = None
        if guard is not None and self.tools[tool].write:
            hooks = WriteHooks(
                verify=lambda reads: self._verify(reads, tool, args, guard),
                record=guard.record, conversation_id=guard.thread_id,
            )
        return self.backend.call(tool, args, idempotency_key=idempotency_key, hooks=hooks)

    def reconcile(self, idempotency_key: str) -> dict[str, Any] | None:
        """Return the stored result of the write made under the key, or None once fenced off."""
        return self.backend.reconcile(idempotency_key)

    def contact_address(self, customer_id: str) -> str | None:
        """Return the e-mail address of the customer's profile, or None (no such customer, erased, malformed).

        The ``graph.notify.ContactDirectory`` hook: the outbox e-mails a customer only at the
        address their profile holds, never one from the model or the conversation.
        """
        user = self.backend.fetch_user(customer_id)
        return plain_mailbox(user.get("email") if user else None)

    def lock_scope(self, reads: R, tool: str, args: Mapping[str, Any], guard: WriteGuard) -> None:
        """Lock, on the write's reads, every row the decision on ``tool`` depends on."""
        raise NotImplementedError

    def _verify(self, reads: R, tool: str, args: Mapping[str, Any], guard: WriteGuard) -> None:
        self.lock_scope(reads, tool, args, guard)
        facts = self.parts.compute_facts(reads, tool, dict(args), user_id=guard.user_id,
                                         conversation=dict(guard.conversation), conversation_id=guard.thread_id)
        guard.verify(facts, self._state_token(reads, args, guard.user_id))

    def _state_token(self, source: Any, args: Mapping[str, Any], user_id: str | None) -> str:
        scoped = args.get(self.parts.scope_arg)
        if isinstance(scoped, str) and scoped:
            version = source.state_version(**{self.parts.scope_arg: scoped})
            return f"{self.parts.scope_tag}:{scoped}:{version}"
        return f"u:{user_id}:{source.state_version(user_id=user_id)}"


def plain_mailbox(value: object) -> str | None:
    """Return ``value`` as one plain address (``local@host.tld``), or None.

    The outbox puts it in a header: anything with whitespace, a line break, a display name or
    a second address is refused rather than sent.
    """
    if not isinstance(value, str):
        return None
    address = value.strip()
    local, at, host = address.partition("@")
    if not (local and at and "." in host.strip(".")) or "@" in host:
        return None
    if any(c.isspace() or c in '<>,;:"()[]\\' or ord(c) < 32 for c in address):
        return None
    return address
