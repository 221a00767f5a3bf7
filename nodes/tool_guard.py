"""``guard_tool_call``: one task per tool call: admission, then the guardrail chain in policy order.

The node admits the call (canonical arguments, a known tool, placeholders resolved, a valid
schema, not already done, the customer's stated facts asked) and hands it to the chain of
:mod:`nodes.guardrails.steps`: post-tool review( pre-tool( idempotency( pre-tool review(
confirm( claim( resilience and the tool )))))). LangGraph re-runs a node from its first line
when it is resumed, so everything before an ``interrupt()`` is a pure read (facts, CEL checks,
the idempotency lookup); side effects (audit rows, the idempotency claim, the tool itself)
come after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from pydantic import ValidationError

from graph.context import AirlockContext
from graph.domain import Domain, StaleDecisionError, describe_validation_error
from graph.identity import refuse_foreign_answers, resolve_identity
from graph.policy import Policy, check_policy_for_tools
from graph.state import INPUT_RISK_KEY, ToolTask, input_risk_fact
from nodes.audit import AuditLog
from nodes.guardrails.canonical import InvalidArgumentsError, canonical_arguments
from nodes.guardrails.chain import ToolCallRequest, ToolOutcome, compose
from nodes.guardrails.confirm import call_hash
from nodes.guardrails.idempotency import IdempotencyStore
from nodes.guardrails.outcomes import OutcomeStore
from nodes.guardrails.resilience import BreakerRegistry
from nodes.guardrails.stated import ask_stated_facts
from nodes.guardrails.steps import (
    REPLAY_TTL,
    ConfirmGate,
    Decider,
    IdempotencyClaim,
    IdempotencyLookup,
    Outcomes,
    PostToolReview,
    PreToolChecks,
    PreToolReview,
    RunTool,
    ScanContent,
    binding,
    scan_content,
)
from nodes.guards.vault import PlaceholderTypeError

__all__ = ["ReviewDecision", "Reviewer", "ToolGuard", "ToolOutcome"]


Redactor = Callable[[Any], Any]
# A write refused by its own transaction is decided again on fresh facts; past this many
# rounds in one node run, the customer is told to try again.
_MAX_REVALIDATIONS = 3


class _Authorisation:
    """One decision (rules, review case, consent bound to a call hash), re-checked inside the write.

    Implements :class:`graph.domain.WriteGuard`: the domain's write transaction locks the
    rows, recomputes the facts and calls :meth:`verify`; any difference from what the chain
    decided, reviewed or confirmed for the request raises :class:`StaleDecisionError` and
    nothing is written.
    """

    def __init__(
        self, *, decider: Decider, request: ToolCallRequest, claim_key: str, claim_owner: str,
        backend_key: str | None, audit: AuditLog, outcomes: OutcomeStore | None, scan: ScanContent | None,
        redact: Redactor | None,
    ) -> None:
        self._decider, self._request = decider, request
        self._claim_key, self._claim_owner, self._backend_key = claim_key, claim_owner, backend_key
        self._audit, self._outcomes, self._scan, self._redact = audit, outcomes, scan, redact
        # Consent or a review binds the exact call; otherwise there is no hash to hold it to.
        self._digest = request.digest if (request.confirmed_by or request.reviewed) else ""
        self.recorded = False
        self.content: dict[str, Any] = {}
        self.scan_decisions: list[dict[str, Any]] = []

    @property
    def thread_id(self) -> str | None:
        """Return the conversation."""
        return self._request.thread_id

    @property
    def user_id(self) -> str | None:
        """Return the authenticated customer."""
        return self._request.user_id

    @property
    def conversation(self) -> Mapping[str, Any]:
        """Return the customer-stated facts."""
        return self._request.conversation

    def verify(self, facts: dict[str, Any], state_token: str) -> None:
        """Refuse the write unless rules, review case, consent and quote are what was decided."""
        r, decider = self._request, self._decider
        facts[INPUT_RISK_KEY] = input_risk_fact(r.conversation)  # as when decided (graph, not domain)
        variables = {"args": r.args, "facts": facts}
        verdict = decider.pre_tool(r.name, variables)
        if (verdict.action, verdict.rule) != (r.verdict.action, r.verdict.rule):
            raise StaleDecisionError(f"policy check {verdict.rule or verdict.action} now applies")
        forced = (verdict.rule, verdict.message) if verdict.action == "escalate" else None
        case = decider.review_case(r.name, r.args, facts, forced)
        if case != r.case:
            raise StaleDecisionError(f"review {case or 'none'} now applies")
        if decider.confirm_needed(r.name, variables) != r.confirm_needed:
            raise StaleDecisionError("confirmation requirement changed")
        bound = binding(state_token, r.thread_id, r.call_id)
        if self._digest and call_hash(r.name, r.args, facts, bound) != self._digest:
            raise StaleDecisionError("the amount or the booking changed")

    def record(self, cursor: Any, result: Mapping[str, Any]) -> None:
        """Store the outcome and its audit event in the write's transaction."""
        r = self._request
        content = {"status": result.get("status", "ok"), **result}
        # What the model and the audit may see: the tool-result guards run here, once, so the
        # stored outcome (read back after a crash) is as safe to show as the live one.
        if self._scan is not None:
            content, self.scan_decisions = self._scan(content, r.thread_id)
        self.content = content
        if self._outcomes is not None:
            self._outcomes.record(
                cursor, thread_id=r.thread_id, call_id=r.call_id, tool=r.name,
                user_id=r.user_id, idempotency_key=self._backend_key,
                result={**content, "_claim_key": self._claim_key, "_owner": self._claim_owner},
            )
        shown = content if self._redact is None else self._redact(content)
        meta = {**r.base, "confirmed_by": r.confirmed_by, "idempotency_key": r.key}
        self._audit.append_on(
            cursor, "tool.executed", actor=r.actor, thread_id=r.thread_id, tool=r.name,
            payload={**{k: v for k, v in meta.items() if v is not None},
                     "action": str(content.get("status", "ok")), "args": dict(r.audit_args), "result": shown},
        )
        self.recorded = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewDecision:
    """A human reviewer's decision on an escalated call."""

    action: Literal["approve", "edit", "reject"]
    reviewer: str
    message: str = ""
    args: dict[str, Any] | None = None
    #: The case's reference (its review id), when the decision came through a recorded case.
    case: str = ""
    #: What the customer is told after an approval, in the policy's words (``approvedMessage``).
    notice: str = ""


class Reviewer(Protocol):
    """Escalation hook: returns None when no escalation applies, else the decision.

    It may call ``interrupt()``; it runs before the tool (``phase="before"``) and after
    it (``phase="after"``, with ``result``). ``result_masked`` says the result already passed
    the tool-result PII guard, so the review's payload need not mask it again.
    """

    def __call__(
        self, *, phase: Literal["before", "after"], tool: str, args: dict[str, Any],
        facts: dict[str, Any], result: dict[str, Any] | None, thread_id: str | None,
        actor: str, call_id: str, forced: tuple[str, str] | None, result_masked: bool = False,
    ) -> ReviewDecision | None:
        """Escalate if a rule says so and return the reviewer's decision."""
        ...

    def case_id(
        self, *, phase: Literal["before", "after"], tool: str, args: dict[str, Any], facts: dict[str, Any],
        forced: tuple[str, str] | None,
    ) -> str | None:
        """Return the id of the case the call would be escalated for, without asking anyone."""
        ...


def _thread_id(config: RunnableConfig) -> str | None:
    return (config.get("configurable") or {}).get("thread_id")


class ToolGuard:
    """The ``guard_tool_call`` node: guardrails around one tool call.

    The node admits the call (canonical, known, placeholders resolved, schema-valid, not
    already done, the customer's stated facts asked), then runs the chain of
    :mod:`nodes.guardrails.steps` in policy order, deciding again on fresh facts when the
    write's own transaction finds the decision stale.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        domain: Domain,
        audit: AuditLog,
        idempotency: IdempotencyStore,
        breakers: BreakerRegistry,
        redact: Redactor = lambda value: value,
        reviewer: Reviewer | None = None,
        scan_result: Callable[[str, str | None], tuple[str, list[dict[str, Any]]]] | None = None,
        resolve: Callable[[Any, str | None], Any] | None = None,
        model_sees_masked_data: bool = False,
        outcomes: OutcomeStore | None = None,
    ) -> None:
        self._domain, self._audit = domain, audit
        # Where each write records its outcome, in its own transaction (None: not recorded).
        self._outcomes = outcomes
        self._idem, self._redact = idempotency, redact
        self._scan = scan_content(scan_result) if scan_result is not None else None
        # Placeholders the model saw (e.g. <DATE_OF_BIRTH_1>) become the customer's real
        # values here, in code, just before validation: the model never handles them.
        self._resolve = resolve
        # When user input and tool results are both PII-masked, nothing the model sends or
        # gets back holds raw PII: audit and gate payloads then use the model's own
        # (placeholder) arguments instead of re-running Presidio on every call.
        self._masked_world = model_sees_masked_data
        check_policy_for_tools(policy, {n: spec.write for n, spec in domain.tools.items()})
        self._decider = Decider(policy=policy, reviewer=reviewer)
        self._answer = Outcomes(audit=audit, redact=redact, masked_world=model_sees_masked_data)
        answer, decider = self._answer, self._decider
        # Policy order; the post-tool review is outermost so it sees every result the tool gave.
        self._chain = compose(
            [
                PostToolReview(reviewer=reviewer, outcomes=answer),
                PreToolChecks(decider=decider, outcomes=answer),
                IdempotencyLookup(policy=policy, domain=domain, store=idempotency, outcomes=answer),
                PreToolReview(decider=decider, reviewer=reviewer, outcomes=answer),
                ConfirmGate(policy=policy, domain=domain, decider=decider, audit=audit, outcomes=answer),
                IdempotencyClaim(domain=domain, store=idempotency, outcomes=answer),
            ],
            RunTool(policy=policy, domain=domain, store=idempotency, breakers=breakers, audit=audit,
                    outcomes=answer, authorise=self._authorise, scan=self._scan),
        )

    # -- the node -------------------------------------------------------------------
    def __call__(
        self, task: ToolTask, config: RunnableConfig, runtime: Runtime[AirlockContext]
    ) -> dict[str, Any]:
        """Guard and run one tool call; return its ToolMessage and decisions."""
        call = task["call"]
        # The call acts for the thread's owner; answers of anyone else are refused (asked again).
        who = resolve_identity(config, runtime.context)
        owner = task.get("owner") or who.user_id
        refuse_foreign_answers(config, who, owner)
        outcome = self.run(
            name=call["name"], raw_args=call.get("args") or {}, call_id=call["id"],
            user_id=owner, actor=who.actor,
            thread_id=_thread_id(config), conversation=task.get("conversation") or {},
        )
        content = json.dumps(outcome.content, default=str)
        message = ToolMessage(
            content=content, tool_call_id=call["id"], name=call["name"],
            status="error" if outcome.status in {"error", "invalid"} else "success",
        )
        return {"messages": [message], "decisions": list(outcome.decisions)}

    def run(
        self, *, name: str, raw_args: Mapping[str, Any], call_id: str, user_id: str | None,
        actor: str, thread_id: str | None, conversation: Mapping[str, Any], depth: int = 0,
    ) -> ToolOutcome:
        """Apply the chain to one call (pure reads until the first interrupt)."""
        base: dict[str, Any] = {"tool": name, "tool_call_id": call_id}

        def invalid(error: str, args: Mapping[str, Any]) -> ToolOutcome:
            return self._answer.finish("invalid", {"status": "invalid", "error": error}, None, tool=name,
                                       thread_id=thread_id, actor=actor, meta=base, args=args)

        spec = self._domain.tools.get(name)
        try:  # canonical arguments before anything reads them (not even the audit)
            raw_args = canonical_arguments(raw_args)
        except InvalidArgumentsError as exc:
            return invalid(f"invalid arguments: {exc.reason}", {})
        if spec is None:
            return invalid(f"unknown tool {name!r}", self._redact(dict(raw_args)))
        shown_args = dict(raw_args)  # what the model sent: placeholders, never vault values
        if self._resolve is not None:
            try:
                raw_args = self._resolve(dict(raw_args), thread_id)
            except PlaceholderTypeError as exc:  # e.g. a date of birth put in a name
                return invalid(f"invalid arguments: {exc}", self._redact(shown_args))
        try:
            args = spec.args_schema.model_validate(dict(raw_args)).model_dump(mode="json")
        except ValidationError as exc:
            return invalid(f"invalid arguments: {describe_validation_error(exc)}", self._redact(shown_args))
        audit_args = shown_args if self._masked_world else self._redact(args)
        if spec.write and self._outcomes is not None:
            # The node is re-run after a crash that followed a committed write: report what the
            # write did (recorded in its own transaction) instead of asking or writing again.
            recorded = self._outcomes.lookup(thread_id, call_id)
            if recorded is not None:
                return self._recovered(name, recorded, thread_id, actor, base, audit_args)
        # What only the customer can state is asked here (an interrupt), never read from the chat.
        conversation = {**conversation, **ask_stated_facts(
            domain=self._domain, audit=self._audit, tool=name, args=args, call_id=call_id,
            user_id=user_id, actor=actor, thread_id=thread_id, conversation=conversation)}

        def again(edited: Mapping[str, Any]) -> ToolOutcome:
            # An edited call passes every guardrail again, as a new call.
            if depth >= 3:
                return self._answer.finish(
                    "error", {"status": "error", "error": "too many edits"}, None, tool=name,
                    thread_id=thread_id, actor=actor, meta=base, args=edited,
                )
            return self.run(
                name=name, raw_args=edited, call_id=f"{call_id}.edit{depth + 1}", user_id=user_id,
                actor=actor, thread_id=thread_id, conversation=conversation, depth=depth + 1,
            )

        notice = ""
        for _round in range(_MAX_REVALIDATIONS):
            # Decided on fresh facts each round: the input guard's risk joins every rule's facts.
            facts = self._domain.facts(name, args, user_id=user_id, conversation=conversation,
                                       conversation_id=thread_id)
            facts[INPUT_RISK_KEY] = input_risk_fact(conversation)
            request = ToolCallRequest(
                name=name, args=args, write=spec.write, call_id=call_id, user_id=user_id, actor=actor,
                thread_id=thread_id, conversation=conversation, audit_args=audit_args, base=base,
                again=again, notice=notice, facts=facts, variables={"args": args, "facts": facts},
            )
            step = self._chain(request)
            if isinstance(step, ToolOutcome):
                return step
            # The write's own transaction refused: the facts changed since the decision.
            notice = (
                "The figures changed since you confirmed, so nothing was done. "
                f"Please check the new details ({step.reason})."
            )
        return self._answer.finish(
            "error", {"status": "error", "error": "The request could not be completed because the "
                      "reservation kept changing. Nothing was changed; please try again."},
            None, tool=name, thread_id=thread_id, actor=actor, meta=base, args=audit_args,
        )

    def _authorise(self, request: ToolCallRequest, backend_key: str | None) -> _Authorisation:
        """Return the write's re-check of what the chain decided for ``request``."""
        r = request
        return _Authorisation(
            decider=self._decider, request=r, claim_key=r.key or "", claim_owner=r.token,
            backend_key=backend_key, audit=self._audit, outcomes=self._outcomes, scan=self._scan,
            redact=None if self._masked_world else self._redact,
        )

    def _recovered(
        self, name: str, recorded: dict[str, Any], thread_id: str | None, actor: str,
        base: dict[str, Any], args: Mapping[str, Any],
    ) -> ToolOutcome:
        claim_key, owner = str(recorded.get("_claim_key", "")), str(recorded.get("_owner", ""))
        content = {k: v for k, v in recorded.items() if not k.startswith("_")}
        if claim_key and owner:
            self._idem.settle(claim_key, owner, result=content, ttl=REPLAY_TTL)
        return self._answer.finish(
            str(content.get("status", "ok")), content, None, tool=name, thread_id=thread_id, actor=actor,
            meta={**base, "recovered": True}, args=args, event="tool.recovered", scanned=True,
        )
