"""The interrupt payloads and resume values, typed: what the graph asks and what answers it.

Three kinds of pause, each raised by one ``interrupt()`` and answered by one
``Command(resume={interrupt_id: value})``:

* **confirm** (``guardrail.confirm``, raised in :mod:`nodes.guardrails.steps`): a
  :class:`ConfirmRequest`; the customer answers with a :class:`ConfirmResume`.
* **question** (customer-stated facts, raised in :mod:`nodes.guardrails.stated`): a
  :class:`QuestionRequest`; the customer answers with a :class:`QuestionResume`.
* **review** (``hitl.escalate``, raised in :mod:`graph.reviews`): LangChain's
  ``HumanInTheLoopMiddleware`` request (:class:`HITLRequest`: ``action_requests`` and
  ``review_configs``) plus our extras (:class:`EscalationRequest`); a reviewer answers with
  LangChain's response (:class:`HITLResponse`: ``decisions``) signed by the application
  (:class:`SignedReviewResponse`).

These are the wire format kept in checkpoints: a thread paused by an older release resumes
unchanged, so a key is only ever added (as ``NotRequired``), never renamed. Confirm and
question payloads carry ``type``; a review is LangChain's request, recognised by its
``action_requests`` (:func:`interrupt_kind`).
"""

# No ``from __future__ import annotations`` here: on Python 3.11 a TypedDict only sees
# ``NotRequired`` in real annotations (``__required_keys__`` would list every key).
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Action",
    "ActionRequest",
    "ApproveDecision",
    "ConfirmRequest",
    "ConfirmResume",
    "Decision",
    "DecisionType",
    "EditDecision",
    "EscalationRequest",
    "HITLRequest",
    "HITLResponse",
    "InterruptKind",
    "QuestionChoice",
    "QuestionRequest",
    "QuestionResume",
    "RejectDecision",
    "ReviewConfig",
    "SignedReviewResponse",
    "allowed_decisions",
    "confirm_request",
    "confirm_resume",
    "escalation_request",
    "interrupt_kind",
    "question_resume",
    "reviewed_args",
]

DecisionType = Literal["approve", "edit", "reject"]
InterruptKind = Literal["confirm", "question", "review", "unknown"]


# -- confirm -----------------------------------------------------------------------------
class ConfirmRequest(TypedDict):
    """The confirm gate: the exact call, its code-computed amount and the hash consent binds to."""

    type: Literal["confirm"]
    tool: str
    tool_call_id: str
    #: As the gate may show them (masked, or the model's placeholders).
    args: dict[str, Any]
    #: What the customer reads, in the domain's words (no tool name, JSON or payment id).
    summary: str
    amount_usd: Any
    direction: Any
    #: The policy's ``guardrail.confirm`` message, rendered.
    message: str
    #: The hash of the exact call (:func:`nodes.guardrails.confirm.call_hash`).
    args_hash: str
    #: Why the gate is shown again (a refused answer, changed figures).
    notice: NotRequired[str]


class ConfirmResume(TypedDict):
    """The customer's answer to a confirm gate; consent only with the gate's own hash."""

    action: Literal["confirm", "cancel"]
    args_hash: str | None
    actor: str


def confirm_request(
    *, tool: str, call_id: str, args: dict[str, Any], summary: str, quote: object, message: str, digest: str,
) -> ConfirmRequest:
    """Return a confirm gate's payload; the amount and direction come from the code-computed ``quote``."""
    figures = quote if isinstance(quote, Mapping) else {}
    return {
        "type": "confirm", "tool": tool, "tool_call_id": call_id, "args": args, "summary": summary,
        "amount_usd": figures.get("amount_usd"), "direction": figures.get("direction"),
        "message": message, "args_hash": digest,
    }


def confirm_resume(*, action: Literal["confirm", "cancel"], args_hash: str | None, actor: str) -> ConfirmResume:
    """Return the resume value for a confirm gate."""
    return {"action": action, "args_hash": args_hash, "actor": actor}


# -- question ----------------------------------------------------------------------------
class QuestionChoice(TypedDict):
    """One answer the customer may pick: the value sent, the label shown."""

    value: str
    label: str


class QuestionRequest(TypedDict):
    """A question only the customer can answer (a customer-stated fact)."""

    type: Literal["question"]
    #: ``<tool call id>:<question id>``: what the answer must name.
    id: str
    question: str
    choices: list[QuestionChoice]
    tool: str
    tool_call_id: str
    notice: NotRequired[str]


class QuestionResume(TypedDict):
    """The customer's answer: one of the choice values, for this question."""

    question_id: str
    value: str
    actor: str


def question_resume(*, question_id: str, value: str, actor: str) -> QuestionResume:
    """Return the resume value for a question."""
    return {"question_id": question_id, "value": value, "actor": actor}


# -- review (LangChain's HITL request and response, plus our extras) ---------------------
class Action(TypedDict):
    """A tool call: its name and arguments."""

    name: str
    args: dict[str, Any]


class ActionRequest(Action):
    """An action a reviewer is asked about, with why."""

    description: NotRequired[str]


class ReviewConfig(TypedDict):
    """What a reviewer may decide about one action."""

    action_name: str
    allowed_decisions: list[DecisionType]


class HITLRequest(TypedDict):
    """LangChain's ``HumanInTheLoopMiddleware`` interrupt payload."""

    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


class EscalationRequest(HITLRequest):
    """Our review payload: LangChain's request plus who decides, by when, and about which exact call."""

    assignee: str
    escalation_id: str
    #: ``before`` / ``after`` the tool, or ``input`` (an uncertain customer message).
    phase: str
    tool_call_id: str
    timeout_s: float
    timeout_action: str
    #: The tool's (masked) result, for an after-phase review.
    result: NotRequired[Any]
    #: The hash of the exact call the signed decision must be for.
    call_hash: NotRequired[str]
    notice: NotRequired[str]


class ApproveDecision(TypedDict):
    """Run the call as it is."""

    type: Literal["approve"]
    message: NotRequired[str]


class EditDecision(TypedDict):
    """Run the call with the reviewer's arguments (merged over the call's)."""

    type: Literal["edit"]
    edited_action: Action
    message: NotRequired[str]


class RejectDecision(TypedDict):
    """Do not run the call; ``message`` tells the customer why."""

    type: Literal["reject"]
    message: NotRequired[str]


Decision = ApproveDecision | EditDecision | RejectDecision


class HITLResponse(TypedDict):
    """LangChain's resume value: one decision per action request."""

    decisions: list[Decision]


class SignedReviewResponse(HITLResponse):
    """Our resume value: the decision, who took it, and the application's signature for this case."""

    reviewer: str
    signature: str


def escalation_request(
    *, name: str, args: dict[str, Any], description: str, allowed: Sequence[DecisionType], assignee: str,
    escalation_id: str, phase: str, call_id: str, timeout: float, timeout_action: str,
) -> EscalationRequest:
    """Return a review payload for one action."""
    return {
        "action_requests": [{"name": name, "args": args, "description": description}],
        "review_configs": [{"action_name": name, "allowed_decisions": list(allowed)}],
        "assignee": assignee,
        "escalation_id": escalation_id,
        "phase": phase,
        "tool_call_id": call_id,
        "timeout_s": timeout,
        "timeout_action": timeout_action,
    }


def allowed_decisions(payload: Mapping[str, Any] | None) -> list[str]:
    """Return the decisions a review payload accepts (all three when it does not say)."""
    configs = (payload or {}).get("review_configs") or [{}]
    allowed = configs[0].get("allowed_decisions") if isinstance(configs[0], Mapping) else None
    return [str(a) for a in allowed] if isinstance(allowed, list) else ["approve", "edit", "reject"]


def reviewed_args(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the (masked) arguments a review payload shows for its action ({} when none)."""
    requests = (payload or {}).get("action_requests") or [{}]
    shown = requests[0].get("args") if isinstance(requests[0], Mapping) else None
    return dict(shown) if isinstance(shown, Mapping) else {}


def interrupt_kind(value: object) -> InterruptKind:
    """Return which kind of pause a payload is (``unknown`` for anything else)."""
    if isinstance(value, Mapping):
        if value.get("type") == "confirm":
            return "confirm"
        if value.get("type") == "question":
            return "question"
        if "action_requests" in value:
            return "review"
    return "unknown"
