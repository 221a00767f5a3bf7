"""The tool-guard chain: one request, composed steps, in policy order.

In the spirit of LangGraph's ``wrap_tool_call(request, execute)`` interceptors, each guardrail
is a small class with one method, :meth:`ToolStep.wrap`: it reads the
:class:`ToolCallRequest`, fills in what it decided, and either answers at once (a denial, a
duplicate, a declined gate) or calls ``call_next`` to let the rest of the chain run and may
look at what came back (the post-tool review does). :func:`compose` folds the steps around
the innermost handler, the tool itself, so the chain reads in the order the policy lists it::

    post-tool review( pre-tool( idempotency( pre-tool review( confirm( claim( run ))))))

Unlike LangChain's request, ours is mutable: LangGraph re-runs the whole node on every resume,
so nothing outlives one pass through the chain, and the write's own transaction re-checks what
the steps decided (``_Authorisation`` in :mod:`nodes.tool_guard`) from the fields they filled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from graph.domain import StaleDecisionError
from graph.policy import IdempotencyGuardrail

__all__ = [
    "Handler",
    "PreVerdict",
    "ToolCallRequest",
    "ToolOutcome",
    "ToolStep",
    "compose",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """What one guarded tool call produced."""

    status: str
    content: dict[str, Any]
    decisions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVerdict:
    """The first pre-tool check that fired (or ``allow`` / ``none``)."""

    action: str
    rule: str = ""
    message: str = ""
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class ToolCallRequest:
    """One validated call on its way through the chain, decided on one set of facts.

    The first group is fixed for the call; ``facts`` and ``variables`` are computed once per
    decision round; the rest is filled in by the steps, in chain order, and read by the later
    steps and by the write's re-check.
    """

    name: str
    args: dict[str, Any]
    write: bool
    call_id: str
    user_id: str | None
    actor: str
    thread_id: str | None
    conversation: Mapping[str, Any]
    #: The arguments as the audit and the gates may show them (masked).
    audit_args: dict[str, Any]
    #: ``{"tool", "tool_call_id"}``: the start of every decision record.
    base: dict[str, Any]
    #: Run an edited call through the whole chain again, as a new call.
    again: Callable[[Mapping[str, Any]], ToolOutcome]
    #: Shown with the confirm gate (why it is asked again).
    notice: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # pre-tool
    verdict: PreVerdict = field(default_factory=lambda: PreVerdict(action="none"))
    forced: tuple[str, str] | None = None
    # idempotency
    idem: IdempotencyGuardrail | None = None
    ttl: float = 0.0
    request_key: str | None = None
    pre_state: str = ""
    key: str | None = None
    token: str = ""
    # escalation before the call
    case: str = ""
    reviewed: bool = False
    # confirm
    confirm_needed: bool = False
    digest: str = ""
    confirmed_by: str | None = None
    #: Set by the step that produced a tool result the post-tool review may look at.
    ran: bool = False

    @property
    def origin(self) -> dict[str, Any]:
        """Return where a stored result came from (this thread's call)."""
        return {"thread_id": self.thread_id, "tool_call_id": self.call_id}


#: What a step hands the request on to: the rest of the chain. A write refused by its own
#: transaction comes back as the :class:`StaleDecisionError` (decided again on fresh facts).
Handler = Callable[[ToolCallRequest], "ToolOutcome | StaleDecisionError"]


class ToolStep(Protocol):
    """One guardrail of the chain."""

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Decide on ``request``: answer now, or call ``call_next`` and return (or amend) its answer."""
        ...


def compose(steps: Sequence[ToolStep], handler: Handler) -> Handler:
    """Return ``handler`` wrapped by ``steps``, the first outermost."""
    chain = handler
    for step in reversed(steps):
        chain = _bind(step, chain)
    return chain


def _bind(step: ToolStep, call_next: Handler) -> Handler:
    def run(request: ToolCallRequest) -> ToolOutcome | StaleDecisionError:
        return step.wrap(request, call_next)

    return run
